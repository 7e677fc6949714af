"""Window aggregations on the Spark engine (docs/architecture.md, "Point-in-time rules":
window aggregations): the values and types of fsnb/aggregation_sql.py, planned in Spark.

For a label (k, t) an aggregation's value is its function over k's events with event
time in (t - window, t]; nulls are skipped; an empty window gives 0 for count, null
otherwise. Times are integer microseconds (Spark's TIMESTAMP precision: label times
with sub-microsecond parts are refused by spark_util.arrow_times, never rounded).

Plan (no as_of_ingestion): the label rows are unioned into the event stream, and each
distinct window width w is one window over

    PARTITION BY keys ORDER BY time RANGE BETWEEN (w - 1) PRECEDING AND CURRENT ROW

"w - 1 preceding" on integer microseconds is exactly the open lower end t - w, and
CURRENT ROW in RANGE mode takes every peer, so events at exactly t are in. Label rows
carry NULL in the event marker and in every aggregated column, so no aggregate sees
them. Cost: one shuffle by key and one sort per width, no join; Spark's sliding frame
re-aggregates its buffer as it moves, so a label row costs its key's events inside
its window (never the key's whole history, never another key's rows).

stddev is Spark's stddev_samp, which updates central moments one value at a time
(Welford): no sum of squares, so it keeps its digits far from zero. It is null with
fewer than two values whatever spark.sql.legacy.statisticalAggregate says.

With as_of_ingestion an event also has to be known at t (created column, else
_fsnb_ingested_at), and "known <= t" cannot be a frame bound: a window ordered by
max(event, known), as the point-in-time join uses, bounds the upper end but not the
lower one (an event known late must leave the frame at its event time + w). So the plan
is an equi-join on (keys, bucket), bucket = time div W for the longest window W (the
bucket idea of aggregation_sql, which joins once per width): a label probes the
buckets of t and of t - W + 1 (at most two, as every bucket is at least W wide),
keeps the events with time in (t - W, t] and known <= t, and aggregates per label
row, each aggregation over the events inside its own window (a CASE in the
aggregate). A label meets only its key's events with time in (t - 2W, t + W]: the
join never multiplies rows by a key's history, and never by other keys' rows. One
join and one group for every width (shuffles dominate Spark's cost); the price is
that a short window's aggregate scans the events of the longest one. A range join (time between t - w and t) would be a nested loop in
Spark; this one is a sort-merge or hash join on equality.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fsnb.aggregation import Aggregation, check_stored_columns
from fsnb.backends import delta_log
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.backends.spark_util import arrow_times, col
from fsnb.definitions import FeatureView
from fsnb.errors import InvalidDefinition
from fsnb.sqlnames import INGESTED_AT
from fsnb.timeutil import duration_us

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_TI = "__fsnb_ti"  # time in microseconds of an event or a label
_EV = "__fsnb_ev"  # 1 on event rows, NULL on label rows
_KNOWN = "__fsnb_known"  # microseconds at which an event became known (as_of_ingestion)
_BUCKET = "__fsnb_b"


def duck_type(arrow: pa.DataType) -> str:
    """A DuckDB type name of the stored column's family (what Aggregation's type rules read)."""
    if pa.types.is_integer(arrow):
        return "BIGINT"
    if pa.types.is_floating(arrow) or pa.types.is_decimal(arrow):
        return "DOUBLE"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "VARCHAR"
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ"
    if pa.types.is_date(arrow):
        return "DATE"
    return str(arrow).upper()


def label_bounds(labels: pa.Table) -> tuple[int, int] | None:
    """The least and greatest label time in microseconds (None without labels)."""
    if labels.num_rows == 0:
        return None
    bounds = pc.min_max(pc.cast(arrow_times(labels.column(T), "the label time"), pa.int64()))
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    return None if lo is None or hi is None else (int(lo), int(hi))


def aggregate_frame(
    engine: Any,
    labels: DataFrame,
    view: FeatureView,
    aggregations: Sequence[Aggregation],
    *,
    bounds: tuple[int, int] | None = None,
    as_of_ingestion: bool = False,
) -> DataFrame:
    """ROW + one column per aggregation (in the order asked) for every label row, unordered.

    engine is the SparkOfflineStore (its snapshots); labels are typed as SparkJoins._labels
    types them; bounds (least, greatest label time in us) prune the files read.
    """
    from pyspark.sql import functions as F

    if not aggregations:
        msg = f"no aggregations asked of '{view.name}'; pass at least one fsnb.Aggregation"
        raise InvalidDefinition(msg)
    table = engine._table(view.name)
    stored = delta_log.stored_schema(table) if table is not None else None
    if stored is None or not delta_log.data_files(table, engine.warehouse.spark_uri(view.name)):
        return labels.select(col(ROW), *[_empty(view, a).alias(a.name) for a in aggregations])
    fields = {f.name: f.type for f in stored}
    check_stored_columns(view.name, aggregations, {a.column: duck_type(fields[a.column]) for a in aggregations
                                                    if a.column is not None and a.column in fields})
    longest = max(duration_us(a.window) for a in aggregations)
    lo = hi = None
    if bounds is not None:  # events a window before the first label or after the last one count nowhere
        lo, hi = bounds[0] - longest + 1, bounds[1]
    rows = engine._snapshot(table, view.name, time_field=view.timestamp_field, lo=lo, hi=hi)
    columns = list(dict.fromkeys(a.column for a in aggregations if a.column is not None))
    cal = {c: f"__fsnb_c{i}" for i, c in enumerate(columns)}  # fsnb's names: no user column starts with __fsnb
    keys = list(view.entity_columns)
    known = view.created_timestamp_field or INGESTED_AT
    events = rows.select(
        *[col(k) for k in keys],
        F.unix_micros(col(view.timestamp_field)).alias(_TI),
        F.unix_micros(col(known)).alias(_KNOWN),
        F.lit(1).alias(_EV),
        *[col(c).alias(cal[c]) for c in columns],
    )
    if lo is not None and hi is not None:
        events = events.filter((col(_TI) >= F.lit(lo)) & (col(_TI) <= F.lit(hi)))
    typed = {f.name: f.dataType for f in events.schema.fields}
    sums = {a.name: _sum_type(a, fields) for a in aggregations}
    side = labels.select(
        col(ROW), *[col(k).cast(typed[k]).alias(k) for k in keys], F.unix_micros(col(T)).alias(_TI)
    )
    if as_of_ingestion:
        return _as_of_ingestion(side, events, keys, aggregations, cal, sums)
    stream = events.drop(_KNOWN).withColumn(ROW, F.lit(None).cast("long")).unionByName(
        side.select(
            *[col(k) for k in keys], col(_TI), F.lit(None).cast(typed[_EV]).alias(_EV),
            *[F.lit(None).cast(typed[cal[c]]).alias(cal[c]) for c in columns], col(ROW),
        )
    )
    from pyspark.sql import Window

    outputs = [col(ROW)]
    for agg in aggregations:
        width = duration_us(agg.window)
        spec = Window.partitionBy(*[col(k) for k in keys]).orderBy(col(_TI)).rangeBetween(-(width - 1), 0)
        column = col(cal[agg.column]) if agg.column else None
        outputs.append(_expr(agg, column, col(_EV), sums[agg.name], _over(spec)).alias(agg.name))
    # One sort serves every width: Spark evaluates the frames of one partitioning and order together.
    result: DataFrame = stream.select(*outputs, col(_EV)).filter(col(_EV).isNull()).drop(_EV)
    return result


def _over(spec: Any) -> Callable[[Column], Column]:
    def windowed(e: Column) -> Column:
        return e.over(spec)

    return windowed


def _as_of_ingestion(
    side: DataFrame, events: DataFrame, keys: list[str], aggregations: Sequence[Aggregation],
    cal: dict[str, str], sums: dict[str, str | None],
) -> DataFrame:
    """One join for every width: each label joins its key's events in the buckets (time
    div W, W the longest window) of t and t - W + 1, keeps those in (t - W, t] known at
    t, and aggregates per label row, each aggregation over the events in its own window."""
    from pyspark.sql import functions as F

    ekeys = [f"__fsnb_ek{i}" for i in range(len(keys))]
    eti = "__fsnb_eti"
    width = max(duration_us(a.window) for a in aggregations)
    # `div` truncates toward zero: buckets are monotone in time and at least W wide.
    probes = side.select(
        col(ROW), col(_TI), *[col(k) for k in keys],
        F.explode(F.array_distinct(F.array(F.expr(f"{_TI} div {width}"), F.expr(f"({_TI} - {width - 1}) div {width}")))).alias(_BUCKET),
    )
    near = events.select(
        *[col(k).alias(e) for k, e in zip(keys, ekeys, strict=True)],
        col(_TI).alias(eti), F.expr(f"{_TI} div {width}").alias("__fsnb_eb"), col(_KNOWN), col(_EV),
        *[col(c) for c in cal.values()],
    )
    on = [col(k) == col(e) for k, e in zip(keys, ekeys, strict=True)] + [col(_BUCKET) == col("__fsnb_eb")]
    hits = probes.join(near, on=on, how="inner").filter(
        (col(eti) > col(_TI) - F.lit(width)) & (col(eti) <= col(_TI)) & (col(_KNOWN) <= col(_TI))
    )
    exprs = []
    for j, agg in enumerate(aggregations):
        inside = col(eti) > col(_TI) - F.lit(duration_us(agg.window))
        column = F.when(inside, col(cal[agg.column])) if agg.column else None
        exprs.append(_expr(agg, column, F.when(inside, col(_EV)), sums[agg.name], lambda e: e).alias(f"__fsnb_a{j}"))
    found = side.select(col(ROW)).join(hits.groupBy(col(ROW)).agg(*exprs), ROW, "left")
    return found.select(col(ROW), *[
        (F.coalesce(col(f"__fsnb_a{j}"), F.lit(0).cast("long")) if a.function == "count" else col(f"__fsnb_a{j}")).alias(a.name)
        for j, a in enumerate(aggregations)
    ])


def _sum_type(agg: Aggregation, fields: dict[str, pa.DataType]) -> str | None:
    """The Spark type sum/mean/stddev are cast to (aggregation_sql's _sum_cast), else None."""
    if agg.function not in ("sum", "mean", "stddev") or agg.column is None:
        return None
    return "long" if agg.output_type(duck_type(fields[agg.column])) == "BIGINT" else "double"


def _expr(agg: Aggregation, column: Column | None, marker: Column, cast: str | None,
          over: Callable[[Column], Column]) -> Column:
    """The aggregate over the event rows of a frame or a group (labels carry NULLs)."""
    from pyspark.sql import functions as F

    if column is None:
        return over(F.count(marker))
    fn = agg.function
    if fn == "count":
        return over(F.count(column))
    if fn == "min":
        return over(F.min(column))
    if fn == "max":
        return over(F.max(column))
    assert cast is not None
    if fn == "sum":
        return over(F.sum(column)).cast(cast)
    if fn == "mean":
        return over(F.avg(column)).cast(cast)
    return F.when(over(F.count(column)) > F.lit(1), over(F.stddev_samp(column)).cast(cast))


def _empty(view: FeatureView, agg: Aggregation) -> Column:
    """A view without events: count 0, every other function null (of the column's type)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    if agg.function == "count":
        return F.lit(0).cast("long")
    if agg.function in ("mean", "stddev"):
        return F.lit(None).cast("double")
    column = agg.column or ""
    times = (view.timestamp_field, view.created_timestamp_field)
    duck = "TIMESTAMPTZ" if column in times else view.feature_types.get(column) or (view.entity_types or {}).get(column)
    arrow = delta_log.arrow_type(duck or "VARCHAR", f"column '{agg.column}'")
    if agg.function == "sum":
        return F.lit(None).cast("long" if agg.output_type(duck_type(arrow)) == "BIGINT" else "double")
    return F.lit(None).cast(from_arrow_type(arrow, prefer_timestamp_ntz=False))
