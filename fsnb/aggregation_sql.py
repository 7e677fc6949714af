"""The DuckDB planner for window aggregations (docs/architecture.md).

For a label (k, t) an aggregation's value is its function over k's events with event
time in (t - window, t]. The plan puts the label rows into the event stream and reads
each aggregation as a window function over a RANGE frame ending at the label:

    PARTITION BY keys ORDER BY time RANGE BETWEEN (window - 1) PRECEDING AND CURRENT ROW

Times are integers (epoch microseconds, or nanoseconds when the stored event time has
them), so "window - 1 units preceding" is exactly the open lower end t - window, and
CURRENT ROW in RANGE mode takes every peer, so events at exactly t are in. Label rows
carry NULL in every aggregated column (and in the event marker), so they are skipped
by every aggregate, including the other labels at the same instant.

Cost: one sort of events + labels by (keys, time) shared by every window, then DuckDB's
windowed aggregates (O(n log n) at worst); no per-label scan and no join that multiplies
labels by events. It measured faster than prefix sums read with ASOF at t and t - window
(one ASOF join per distinct window, each sorting the events again), and the values are
DuckDB's own sum/avg/stddev_samp/min/max over exactly the window's events: no prefix
differences, so no cancellation error.

``as_of_ingestion`` adds a second time per event (when it became known: the created
column, else the ingestion time), and "known <= t" cannot be a frame bound. That plan
joins each label to its key's events in the time buckets (of the window's width) that
the window touches - at most two - then filters and aggregates per label: the cost is
labels x the key's events within two windows of t (not the key's whole history).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import duckdb
import pyarrow as pa

from fsnb import types
from fsnb.aggregation import Aggregation, check_stored_columns
from fsnb.definitions import FeatureView
from fsnb.errors import InvalidDefinition
from fsnb.sqlnames import INGESTED_AT, offline_table, q

LABELS = "__fsnb_labels"
ROW = "__fsnb_row"
T = "__fsnb_t"
_TI = "__fsnb_ti"  # integer time (epoch us or ns) of an event or label
_EV = "__fsnb_ev"  # 1 on event rows, NULL on label rows
_KNOWN = "__fsnb_known"  # integer time an event became known (as_of_ingestion)
_BUCKET = "__fsnb_b"


def is_nanoseconds(duck_type: str) -> bool:
    """TIMESTAMP_NS, TIMESTAMPTZ_NS, TIMESTAMP_NS WITH TIME ZONE."""
    t = duck_type.upper()
    return t.startswith("TIMESTAMP") and "NS" in t


def time_int(expr: str, duck_type: str, unit: str) -> str:
    """An integer (epoch microseconds or nanoseconds) for a time expression.

    A nanosecond time read in microseconds is floored, which keeps comparisons with
    whole-microsecond event times exact: e <= t iff e <= floor(t), and e > t - w iff
    e > floor(t) - w for whole-microsecond e and w. The floor is integer arithmetic:
    DuckDB's CAST from nanoseconds to microseconds rounds to the nearest (a label at
    23:59:59.999999999 would see an event at midnight). Naive times are UTC whatever
    the session's TimeZone (read as TIMESTAMP, never cast to TIMESTAMPTZ).
    """
    t = duck_type.upper()
    if is_nanoseconds(t):
        nanos = f"epoch_ns({expr})"
        if unit == "ns":
            return nanos
        return f"(({nanos} - ((({nanos}) % 1000) + 1000) % 1000) // 1000)"
    if t in ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP"):
        micros = f"epoch_us({expr})"
    else:  # DATE, TIMESTAMP_S, TIMESTAMP_MS: exact in microseconds
        aware = "TZ" in t or "TIME ZONE" in t
        micros = f"epoch_us(CAST({expr} AS {'TIMESTAMPTZ' if aware else 'TIMESTAMP'}))"
    return f"({micros} * 1000)" if unit == "ns" else micros


_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?$")


def _safe_type(duck_type: str) -> str:
    """A key type name from a registry file, checked before it is pasted into a CAST."""
    if not isinstance(duck_type, str) or not _TYPE_RE.match(duck_type):
        msg = f"key type {duck_type!r} is not a DuckDB type name; fix the view's entity_types"
        raise InvalidDefinition(msg)
    return duck_type


def window_units(window: timedelta, unit: str) -> int:
    micros = window // timedelta(microseconds=1)
    return micros * 1000 if unit == "ns" else micros


def _sum_cast(agg: Aggregation, column_types: Mapping[str, str]) -> str:
    return agg.output_type(column_types.get(agg.column) if agg.column else None)


def _aggregate_expr(
    agg: Aggregation, column: str, column_types: Mapping[str, str], *, marker: str = _EV, over: str = ""
) -> str:
    """The aggregate over the event rows of a frame (labels carry NULLs)."""
    if agg.column is None:
        return f"count({marker}){over}"
    fn = {"count": "count", "sum": "sum", "mean": "avg", "min": "min", "max": "max", "stddev": "stddev_samp"}[agg.function]
    expr = f"{fn}({column}){over}"
    if agg.function in ("sum", "mean", "stddev"):
        expr = f"CAST({expr} AS {_sum_cast(agg, column_types)})"
    return expr


def aggregate_sql(
    view: FeatureView,
    aggregations: Sequence[Aggregation],
    key_types: Mapping[str, str],
    *,
    column_types: Mapping[str, str],
    event_time_type: str,
    label_time_type: str,
    known_time_type: str | None = None,
    as_of_ingestion: bool = False,
) -> str:
    """SELECT __fsnb_row, <one column per aggregation> for every label row, ordered by row.

    The labels relation (``__fsnb_labels``) has __fsnb_row, __fsnb_t and the view's key
    columns; key_types casts them to the stored keys' types. column_types are the stored
    types of the aggregated columns; *_time_type the stored/label time types.
    """
    if not aggregations:
        msg = f"no aggregations asked of '{view.name}'; pass at least one fsnb.Aggregation"
        raise InvalidDefinition(msg)
    keys = list(view.entity_columns)
    unit = "ns" if is_nanoseconds(event_time_type) or (
        as_of_ingestion and known_time_type is not None and is_nanoseconds(known_time_type)
    ) else "us"
    columns = list(dict.fromkeys(a.column for a in aggregations if a.column is not None))
    # Positional aliases inside the plan: no user name can collide with fsnb's own.
    kal = [f"__fsnb_k{i}" for i in range(len(keys))]
    cal = {c: f"__fsnb_c{i}" for i, c in enumerate(columns)}
    label_keys = ", ".join(f"CAST({q(k)} AS {_safe_type(key_types[k])}) AS {a}" for k, a in zip(keys, kal, strict=True))
    labels = (
        f"SELECT {ROW}, {time_int(T, label_time_type, unit)} AS {_TI}, {label_keys} FROM {LABELS}"
    )
    event_cols = ", ".join(f"{q(c)} AS {cal[c]}" for c in columns)
    event_keys = ", ".join(f"{q(k)} AS {a}" for k, a in zip(keys, kal, strict=True))
    ts = time_int(q(view.timestamp_field), event_time_type, unit)
    if as_of_ingestion:
        known_col = view.created_timestamp_field or INGESTED_AT
        known = time_int(q(known_col), known_time_type or "TIMESTAMPTZ", unit)
        return _as_of_ingestion_sql(
            view, aggregations, labels, event_keys, event_cols, ts, known, kal, cal, column_types, unit
        )
    longest = max(window_units(a.window, unit) for a in aggregations)
    # Events after the last label or a window before the first one cannot be in any frame.
    events = (
        f"SELECT {event_keys}, {ts} AS {_TI}, CAST(NULL AS BIGINT) AS {ROW}, 1 AS {_EV}"
        f"{', ' if columns else ''}{event_cols} FROM {offline_table(view.name)} "
        f"WHERE {ts} <= (SELECT max({_TI}) FROM l) AND {ts} > (SELECT min({_TI}) FROM l) - {longest}"
    )
    # Untyped NULLs take the event column's type in the UNION: no stored type name reaches SQL.
    null_cols = ", ".join(f"NULL AS {cal[c]}" for c in columns)
    label_rows = (
        f"SELECT {', '.join(kal)}, {_TI}, {ROW}, CAST(NULL AS INTEGER) AS {_EV}"
        f"{', ' if columns else ''}{null_cols} FROM l"
    )
    windows: dict[int, str] = {}
    outputs = [ROW]
    for agg in aggregations:
        width = window_units(agg.window, unit)
        name = windows.setdefault(width, f"w{len(windows)}")
        column = cal[agg.column] if agg.column else ""
        outputs.append(f"{_aggregate_expr(agg, column, column_types, over=f' OVER {name}')} AS {q(agg.name)}")
    part = ", ".join(kal)
    frames = ", ".join(
        f"{name} AS (PARTITION BY {part} ORDER BY {_TI} RANGE BETWEEN {width - 1} PRECEDING AND CURRENT ROW)"
        for width, name in windows.items()
    )
    return (
        f"WITH l AS ({labels}), s AS ({events} UNION ALL {label_rows}) "
        f"SELECT {', '.join(outputs)} FROM s WINDOW {frames} QUALIFY {_EV} IS NULL ORDER BY {ROW}"
    )


def _as_of_ingestion_sql(
    view: FeatureView,
    aggregations: Sequence[Aggregation],
    labels: str,
    event_keys: str,
    event_cols: str,
    ts: str,
    known: str,
    kal: list[str],
    cal: dict[str, str],
    column_types: Mapping[str, str],
    unit: str,
) -> str:
    """Per window width w: labels join their key's events in the (at most two) buckets
    of width w that (t - w, t] touches, keep events with time in the window and known
    at t, aggregate per label row. Buckets are time // w (truncating: every bucket is at
    least w wide, so a window of w units spans at most two of them)."""
    ctes = [f"l AS ({labels})"]
    sep = ", " if event_cols else ""
    ctes.append(
        f"e AS (SELECT {event_keys}, {ts} AS {_TI}, {known} AS {_KNOWN}, 1 AS {_EV}{sep}{event_cols} "
        f"FROM {offline_table(view.name)})"
    )
    by_width: dict[int, list[Aggregation]] = {}
    for agg in aggregations:
        by_width.setdefault(window_units(agg.window, unit), []).append(agg)
    joins = []
    outputs = [f"l.{ROW}"]
    by_name: dict[str, str] = {}
    for i, (width, aggs) in enumerate(by_width.items()):
        on = " AND ".join([f"p.{a} = e.{a}" for a in kal] + [f"p.{_BUCKET} = e.{_TI} // {width}"])
        lower = f"({_TI} - {width - 1}) // {width}"
        probes = (
            f"SELECT {ROW}, {_TI}, {', '.join(kal)}, {_TI} // {width} AS {_BUCKET} FROM l UNION ALL "
            f"SELECT {ROW}, {_TI}, {', '.join(kal)}, {lower} AS {_BUCKET} FROM l WHERE {lower} <> {_TI} // {width}"
        )
        exprs = ", ".join(
            f"{_aggregate_expr(a, f'e.{cal[a.column]}' if a.column else '', column_types, marker=f'e.{_EV}')} AS a{j}"
            for j, a in enumerate(aggs)
        )
        ctes.append(
            f"g{i} AS (SELECT p.{ROW}, {exprs} FROM ({probes}) p JOIN e ON {on} "
            f"WHERE e.{_TI} > p.{_TI} - {width} AND e.{_TI} <= p.{_TI} AND e.{_KNOWN} <= p.{_TI} GROUP BY p.{ROW})"
        )
        joins.append(f"LEFT JOIN g{i} ON g{i}.{ROW} = l.{ROW}")
        for j, a in enumerate(aggs):
            value = f"g{i}.a{j}"
            by_name[a.name] = f"{'coalesce(' + value + ', 0)' if a.function == 'count' else value} AS {q(a.name)}"
    outputs += [by_name[a.name] for a in aggregations]  # in the order asked, not by window
    return f"WITH {', '.join(ctes)} SELECT {', '.join(outputs)} FROM l {' '.join(joins)} ORDER BY l.{ROW}"


def aggregate(
    con: duckdb.DuckDBPyConnection,
    labels: pa.Table,
    view: FeatureView,
    aggregations: Sequence[Aggregation],
    key_types: Mapping[str, str],
    *,
    as_of_ingestion: bool = False,
) -> pa.Table:
    """Run the plan on an open offline-store connection (the DuckDB engine's ``aggregate``).

    labels: __fsnb_row (int64 0..n-1), __fsnb_t and the view's key columns. Returns
    __fsnb_row + one column per aggregation, ordered by __fsnb_row.
    """
    stored = _table_types(con, view.name)
    if not stored:
        return _without_events(labels, aggregations, view.feature_types)
    column_types = check_stored_columns(view.name, aggregations, stored)
    label_type = _relation_types(con, labels)[T]
    known = view.created_timestamp_field or INGESTED_AT
    sql = aggregate_sql(
        view, aggregations, key_types, column_types=column_types,
        event_time_type=stored[view.timestamp_field], label_time_type=label_type,
        known_time_type=stored.get(known), as_of_ingestion=as_of_ingestion,
    )
    con.register(LABELS, labels)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.unregister(LABELS)


def _table_types(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [f"fv__{name}"],
    ).fetchall()
    return {str(c): str(t) for c, t in rows}


def _relation_types(con: duckdb.DuckDBPyConnection, table: pa.Table) -> dict[str, str]:
    rel = con.from_arrow(table.slice(0, 0))
    return {name: str(t) for name, t in zip(rel.columns, rel.types, strict=True)}


def _without_events(labels: pa.Table, aggregations: Sequence[Aggregation], feature_types: Mapping[str, Any]) -> pa.Table:
    """A view with no stored events: count 0, every other function null."""
    n = labels.num_rows
    cols: dict[str, Any] = {ROW: pa.array(range(n), pa.int64())}
    for agg in aggregations:
        duck = agg.output_type(feature_types.get(agg.column) if agg.column else None)
        if agg.function == "count":
            cols[agg.name] = pa.array([0] * n, pa.int64())
        else:
            cols[agg.name] = pa.nulls(n, _arrow_type(duck))
    return pa.table(cols)


def _arrow_type(duck_type: str) -> pa.DataType:
    arrow = {"int": pa.int64(), "float": pa.float64(), "string": pa.string(), "bool": pa.bool_(),
             "time": pa.timestamp("us", "UTC")}
    return arrow.get(types.family(duck_type), pa.null())
