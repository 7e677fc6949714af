"""The Spark engine's queries: reads, statistics, latest rows per key, and the point-in-time
join, one sort per view, never a range join (docs/architecture.md, "Point-in-time rules";
the plan is described in spark_offline.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fsnb.aggregation import Aggregation
from fsnb.backends import delta_log
from fsnb.backends.delta_log import UTC_US
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.backends.spark_util import (
    _BEST,
    _CHUNK,
    _KIND,
    _PAY,
    _RANK,
    _VT,
    _arrow_cast,
    _batch,
    _from_micros,
    _micros,
    _to_utc,
    arrow_times,
    col,
)
from fsnb.definitions import FeatureView
from fsnb.selection import ViewSelection
from fsnb.sources import is_spark_frame
from fsnb.sqlnames import ENTRY, INGESTED_AT, SEQ
from fsnb.timeutil import duration_us

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


class SparkJoins:
    """Reads, statistics, latest rows and point-in-time joins of SparkOfflineStore (a
    mixin: it reads the store's snapshots)."""

    # The views' histories are Delta tables: connect()'s DuckDB connection only stages results.
    duckdb_tables = False

    # Provided by SparkOfflineStore (declared here for the type checker).
    warehouse: Any

    @property
    def spark(self) -> SparkSession:
        raise NotImplementedError

    def _table(self, name: str) -> Any | None:
        raise NotImplementedError

    def _snapshot(self, table: Any, name: str, *, time_field: str | None = None,
                  lo: int | None = None, hi: int | None = None) -> DataFrame:
        raise NotImplementedError

    @staticmethod
    def _spark_cast(frame: DataFrame, name: str, target: pa.DataType) -> Column:
        raise NotImplementedError

    def point_in_time(
        self,
        labels: Any,
        selections: list[ViewSelection],
        key_types: dict[str, str],
        *,
        as_of_ingestion: bool = False,
        with_event_times: bool = False,
    ) -> Any:
        """__fsnb_row + the selected features of every label row, ordered by __fsnb_row.

        labels: an Arrow table (the result is Arrow) or a Spark DataFrame (the result is a
        Spark DataFrame; nothing is collected) with __fsnb_row, __fsnb_t and the key columns.
        """
        spark_in = is_spark_frame(labels)
        frame = self._labels(labels, key_types)
        result: DataFrame | None = None
        for i, sel in enumerate(selections):
            if sel.view.aggregations:  # Spark labels for a view of window aggregations (spark_agg)
                if with_event_times:
                    msg = "event times of window aggregations come from fsnb.aggregation_views.point_in_time"
                    raise ValueError(msg)
                part = self._aggregated(frame, sel, key_types, as_of_ingestion=as_of_ingestion)
            else:
                part = self._selection(frame, sel, i, as_of_ingestion=as_of_ingestion, with_event_times=with_event_times)
            result = part if result is None else result.join(part, ROW, "inner")
        if result is None:
            result = frame.select(col(ROW))
        result = result.orderBy(col(ROW))
        if spark_in:
            return result
        return _to_utc(result.toArrow())

    def aggregate(
        self,
        labels: Any,
        view: FeatureView,
        aggregations: Sequence[Aggregation],
        key_types: dict[str, str],
        *,
        as_of_ingestion: bool = False,
    ) -> Any:
        """__fsnb_row + one column per aggregation, ordered by __fsnb_row (fsnb/backends/spark_agg.py).

        labels: __fsnb_row, __fsnb_t and the view's keys, as an Arrow table (the result is
        Arrow) or a Spark DataFrame (the result is a Spark DataFrame; nothing is collected).
        """
        from fsnb.backends.spark_agg import aggregate_frame, label_bounds

        spark_in = is_spark_frame(labels)
        frame = self._labels(labels, {k: key_types[k] for k in view.entity_columns})
        bounds = None if spark_in else label_bounds(labels)
        result = aggregate_frame(self, frame, view, aggregations, bounds=bounds, as_of_ingestion=as_of_ingestion)
        result = result.orderBy(col(ROW))
        if spark_in:
            return result
        out = _to_utc(result.toArrow())
        return out.cast(pa.schema([f.with_nullable(True) for f in out.schema]))  # as DuckDB's results

    def _aggregated(self, labels: DataFrame, sel: ViewSelection, key_types: dict[str, str], *, as_of_ingestion: bool) -> DataFrame:
        """__fsnb_row + the selection's aggregations under their output names."""
        found = {a.name: a for a in sel.view.aggregations or ()}
        aggs = [found[f] for f in sel.features]
        narrow = labels.select(col(ROW), col(T), *[col(k) for k in sel.view.entity_columns])
        got = self.aggregate(narrow, sel.view, aggs, {k: key_types[k] for k in sel.view.entity_columns},
                             as_of_ingestion=as_of_ingestion)
        out: DataFrame = got.select(col(ROW), *[col(a.name).alias(n) for a, n in zip(aggs, sel.output_names, strict=True)])
        return out

    def training_frame(
        self,
        labels: DataFrame,
        selections: list[ViewSelection],
        key_types: dict[str, str],
        timestamp_field: str,
        *,
        as_of_ingestion: bool = False,
    ) -> DataFrame:
        """Spark labels in, a Spark training set out: every label row once, in the frame's
        order, its columns unchanged, then the features. labels must be deterministic (it
        is read twice: for the join and for the columns passed through)."""
        from pyspark.sql import functions as F

        keys = list(dict.fromkeys(k for s in selections for k in s.view.entity_columns))
        numbered = labels.withColumn(ROW, F.monotonically_increasing_id())
        narrow = numbered.select(col(ROW), col(timestamp_field).alias(T), *[col(k) for k in keys])
        features = self.point_in_time(narrow, selections, key_types, as_of_ingestion=as_of_ingestion)
        return numbered.join(features, ROW, "left").orderBy(col(ROW)).drop(ROW)

    def _labels(self, labels: Any, key_types: dict[str, str]) -> DataFrame:
        from pyspark.sql.pandas.types import from_arrow_type

        if is_spark_frame(labels):
            frame: DataFrame = labels
            cols = [col(ROW).cast("long").alias(ROW), self._spark_cast(frame, T, UTC_US).alias(T)]
            for k, t in key_types.items():
                target = delta_log.arrow_type(t, f"label column '{k}'")
                cols.append(col(k).cast(from_arrow_type(target, prefer_timestamp_ntz=False)).alias(k))
            return frame.select(*cols)
        table: pa.Table = labels
        arrays = [pc.cast(table.column(ROW), pa.int64()), arrow_times(table.column(T), "the label time")]
        names = [ROW, T]
        for k, t in key_types.items():
            target = delta_log.arrow_type(t, f"label column '{k}'")
            arrays.append(_arrow_cast(table.column(k), target, f"label column '{k}'"))
            names.append(k)
        return self.spark.createDataFrame(pa.Table.from_arrays(arrays, names=names))

    def _selection(self, labels: DataFrame, sel: ViewSelection, i: int, *, as_of_ingestion: bool, with_event_times: bool) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_type

        view = sel.view
        table = self._table(view.name)
        stored = delta_log.stored_schema(table) if table is not None else None
        out_ts = f"__fsnb_ts_{i}"
        if table is None or stored is None or not delta_log.data_files(table, self.warehouse.spark_uri(view.name)):
            nulls = [
                F.lit(None).cast(from_arrow_type(delta_log.arrow_type(view.feature_types.get(f) or "VARCHAR", f"feature '{f}'"), prefer_timestamp_ntz=False)).alias(out)
                for f, out in zip(sel.features, sel.output_names, strict=True)
            ]
            if with_event_times:
                nulls.append(F.lit(None).cast("timestamp").alias(out_ts))
            return labels.select(col(ROW), *nulls)
        rows = self._snapshot(table, view.name)
        keys = list(view.entity_columns)
        ts_us = F.unix_micros(col(view.timestamp_field))
        created = view.created_timestamp_field
        known_us = F.unix_micros(col(created or INGESTED_AT))
        visible = F.greatest(ts_us, known_us) if as_of_ingestion else ts_us
        rank = F.struct(
            ts_us.alias("t"),
            (F.unix_micros(col(created)) if created else F.lit(0).cast("long")).alias("c"),
            col(SEQ).alias("s"),
        )
        present = set(rows.columns)
        payload_fields = [col(view.timestamp_field).alias("ts")]
        for j, f in enumerate(sel.features):
            if f in present:
                payload_fields.append(col(f).alias(f"f{j}"))
            else:  # a feature of a version whose rows were never written
                t = from_arrow_type(delta_log.arrow_type(view.feature_types.get(f) or "VARCHAR", f"feature '{f}'"), prefer_timestamp_ntz=False)
                payload_fields.append(F.lit(None).cast(t).alias(f"f{j}"))
        features = rows.select(
            *[col(k) for k in keys],
            visible.alias(_VT),
            F.lit(0).alias(_KIND),
            F.lit(None).cast("long").alias(ROW),
            rank.alias(_RANK),
            F.struct(*payload_fields).alias(_PAY),
        )
        key_fields = {f.name: f.dataType for f in features.schema.fields}
        side = labels.select(
            *[col(k).cast(key_fields[k]).alias(k) for k in keys],
            F.unix_micros(col(T)).alias(_VT),
            F.lit(1).alias(_KIND),
            col(ROW),
            F.lit(None).cast(key_fields[_RANK]).alias(_RANK),
            F.lit(None).cast(key_fields[_PAY]).alias(_PAY),
        )
        w = (
            Window.partitionBy(*[col(k) for k in keys])
            .orderBy(col(_VT), col(_KIND))
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        best = features.unionByName(side).select(
            col(ROW), col(_VT), col(_KIND), F.max_by(col(_PAY), col(_RANK)).over(w).alias(_BEST)
        ).filter(col(_KIND) == 1)
        micros = duration_us(view.ttl)
        chosen = F.col(f"{_BEST}.ts")
        ok = chosen.isNotNull()
        if micros is not None:
            ok = ok & (F.unix_micros(chosen) >= col(_VT) - F.lit(micros))
        outputs = [F.when(ok, F.col(f"{_BEST}.f{j}")).alias(out) for j, out in enumerate(sel.output_names)]
        if with_event_times:
            outputs.append(F.when(ok, chosen).alias(out_ts))
        return best.select(col(ROW), *outputs)

    def read(self, view: FeatureView, start: datetime | None = None, end: datetime | None = None, *, system: bool = False) -> pa.Table:
        from pyspark.sql import functions as F

        table = self._table(view.name)
        if table is None:
            return pa.table({})
        frame = self._snapshot(table, view.name)
        existing = set(frame.columns)
        cols = [c for c in [*view.system_columns, *view.feature_names] if c in existing]
        if system:
            cols += [INGESTED_AT, SEQ]
        ts = F.unix_micros(col(view.timestamp_field))
        if start is not None:
            frame = frame.filter(ts >= F.lit(_micros(start)))
        if end is not None:
            frame = frame.filter(ts <= F.lit(_micros(end)))
        result = frame.orderBy(col(view.timestamp_field), col(SEQ)).select(*[col(c) for c in cols])
        return _to_utc(result.toArrow())

    def entity_rows(self, view: FeatureView, key: dict[str, Any]) -> pa.Table | None:
        """Every stored row of one entity (key: column -> value), filtered in Spark; None without a table."""
        from pyspark.sql import functions as F

        table = self._table(view.name)
        if table is None:
            return None
        frame = self._snapshot(table, view.name)
        for k, value in key.items():
            frame = frame.filter(col(k) == F.lit(value))
        return _to_utc(frame.toArrow())

    def latest_event_time(self, con: Any, view: FeatureView) -> datetime | None:
        """The newest event time stored for view (None without rows); con is not used."""
        from pyspark.sql import functions as F

        table = self._table(view.name)
        if table is None:
            return None
        top = self._snapshot(table, view.name).agg(F.max(F.unix_micros(col(view.timestamp_field)))).collect()[0][0]
        return _from_micros(top)

    def entry_runs(self, con: Any, name: str, log_id: str, since: int) -> list[tuple[int, int]]:
        """The (first, last) log positions of the entry runs the view's table holds that end
        at or after since (the offline consumer's replay check; con is not used)."""

        table = self._table(name)
        if table is None or ENTRY not in delta_log.stored_schema(table).names:
            return []
        prefix = f"{log_id}:"
        tags = (self._snapshot(table, name).filter(col(ENTRY).startswith(prefix))
                .select(col(ENTRY)).distinct().collect())
        runs = []
        for (tag,) in tags:
            first, _, last = tag[len(prefix):].partition("-")
            if first.isdigit() and last.isdigit() and int(last) >= since:
                runs.append((int(first), int(last)))
        return runs

    def stats(self, view: FeatureView) -> dict[str, Any]:
        from pyspark.sql import functions as F

        table = self._table(view.name)
        if table is None:
            return {"rows": 0, "entities": 0, "min_ts": None, "max_ts": None}
        frame = self._snapshot(table, view.name)
        ts = F.unix_micros(col(view.timestamp_field))
        row = frame.agg(
            F.count(F.lit(1)),
            F.count_distinct(*[col(k) for k in view.entity_columns]),
            F.min(ts),
            F.max(ts),
            F.max(F.unix_micros(col(INGESTED_AT))),
        ).collect()[0]
        lo, hi, last = (_from_micros(v) for v in (row[2], row[3], row[4]))
        return {
            "rows": int(row[0]),
            "entities": int(row[1]),
            "min_ts": lo.isoformat() if lo else None,
            "max_ts": hi.isoformat() if hi else None,
            "last_ingested": last.isoformat() if last else None,
        }

    def latest_per_entity(
        self,
        view: FeatureView,
        columns: list[str],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        since_seq: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Each key's row with the greatest event time in [start, end] (ties: newest created,
        then last ingested), computed in Spark and streamed to the driver one partition at a time."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        table = self._table(view.name)
        if table is None:
            return
        frame = self._snapshot(table, view.name)
        ts = F.unix_micros(col(view.timestamp_field))
        if start is not None:
            frame = frame.filter(ts >= F.lit(_micros(start)))
        if end is not None:
            frame = frame.filter(ts <= F.lit(_micros(end)))
        if since_seq is not None:
            frame = frame.filter(col(SEQ) >= F.lit(int(since_seq)))
        order = [col(view.timestamp_field).desc()]
        if view.created_timestamp_field:
            order.append(col(view.created_timestamp_field).desc())
        order.append(col(SEQ).desc())
        w = Window.partitionBy(*[col(k) for k in view.entity_columns]).orderBy(*order)
        names = list(dict.fromkeys([*view.entity_columns, view.timestamp_field, *columns]))
        fields = {f.name: f for f in delta_log.stored_schema(table)}
        times = {n for n in names if fields[n].type == UTC_US}
        # Times leave Spark as integers: Row objects would turn them into local wall-clock times.
        picked = frame.withColumn("__fsnb_rn", F.row_number().over(w)).filter(col("__fsnb_rn") == 1).select(
            *[(F.unix_micros(col(n)) if n in times else col(n)).alias(n) for n in names]
        )
        schema = pa.schema([fields[n] for n in names])
        chunk: list[Any] = []
        for row in picked.toLocalIterator(prefetchPartitions=True):
            chunk.append(row)
            if len(chunk) == _CHUNK:
                yield _batch(chunk, schema, times)
                chunk = []
        if chunk:
            yield _batch(chunk, schema, times)

    # -- the point-in-time join ------------------------------------------------------------
