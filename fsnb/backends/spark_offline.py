"""The Spark offline engine: each view's history is a Delta Lake table, every query runs in Spark.

Layout: ``<warehouse>/<view name>/`` is a Delta table (log kept with ``deltalake``, data
files are Parquet with ``TIMESTAMP_MICROS`` times). Spark reads a snapshot's files
directly; Spark writes new files into ``fsnb-<uuid>/`` under the table and one Delta
commit makes them visible, so a write is all or nothing.

The point-in-time join (docs/architecture.md, "Point-in-time rules") is one sort per view, never a range join:
label rows and feature rows of a view are unioned, partitioned by the entity key and
sorted by a *visibility time*; a running ``max_by`` over ``ROWS UNBOUNDED PRECEDING``
carries to each label row the best row visible at its time, ranked by (event time,
created time, ingestion order). The visibility time of a feature row is its event time,
and with ``as_of_ingestion`` the later of its event time and the time it became known
(created, else ingested): a row is eligible for a label at t exactly when both are <= t,
that is when max(event, known) <= t, so the same plan serves both modes. The TTL is a
check on the one winner (any other eligible row is older still).

Spark keeps microseconds: input with sub-microsecond parts is refused (never rounded).
"""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fsnb.backends import delta_log
from fsnb.backends.delta_log import UTC_US, Warehouse
from fsnb.backends.duckdb_offline import OfflineStore
from fsnb.definitions import FeatureView, check_name
from fsnb.errors import InvalidData, StoreError
from fsnb.sqlnames import ENTRY, INGESTED_AT, SEQ
from fsnb.validation import CheckedBatch, check_batch

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import Column, DataFrame, SparkSession

from fsnb.backends.spark_pit import SparkJoins
from fsnb.backends.spark_stage import SparkStaging
from fsnb.backends.spark_util import (
    _IDX,
    _MAX_SEQ,
    _arrow_cast,
    _micros,
    _session,
    _to_utc,
    arrow_times,
    col,
)
from fsnb.sources import is_spark_frame


class SparkOfflineStore(SparkJoins, SparkStaging):
    """The offline contract (fsnb/backends/contracts.py) on Spark and Delta Lake."""

    def __init__(
        self,
        warehouse: str | os.PathLike[str],
        spark: SparkSession | None = None,
        *,
        storage_options: dict[str, str] | None = None,
        max_attempts: int = 20,
        duck: OfflineStore | None = None,
    ) -> None:
        self.warehouse = Warehouse.parse(os.fspath(warehouse), storage_options)
        self._spark = spark
        self.max_attempts = max_attempts
        # In a store, its offline.duckdb: the write lock (one writer per store, as on the
        # DuckDB engine), the label typing and the place results one row per entity are
        # staged. On its own (tests, benchmarks): an in-memory DuckDB, nothing on disk.
        self.duck = duck if duck is not None else OfflineStore(Path(":memory:"))

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = _session(None)
        return self._spark

    def __repr__(self) -> str:
        return f"SparkOfflineStore({self.warehouse.spark_root!r})"

    # -- snapshots ----------------------------------------------------------------------
    def _table(self, name: str) -> Any | None:
        return delta_log.open_table(self.warehouse, name)

    def _snapshot(self, table: Any, name: str, *, time_field: str | None = None,
                  lo: int | None = None, hi: int | None = None) -> DataFrame:
        """The table's rows at the loaded version (only files that may hold event times in
        [lo, hi] when those are given)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = from_arrow_schema(delta_log.stored_schema(table), prefer_timestamp_ntz=False)
        files = delta_log.data_files(table, self.warehouse.spark_uri(name), time_field=time_field, lo=lo, hi=hi)
        if not files:
            return self.spark.createDataFrame([], schema)
        return self.spark.read.schema(schema).parquet(*files)

    # -- what a store asks of its engine ---------------------------------------------------
    @contextmanager
    def connect(self, *, timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """The store's DuckDB connection, held like the DuckDB engine's: one writer per
        store, and the place the callers' one-row-per-entity SQL runs."""
        with self.duck.connect(timeout=timeout) as con:
            yield con

    def label_types(self, labels: pa.Table) -> dict[str, str]:
        return self.duck.label_types(labels)

    def row_count(self, name: str) -> int:
        """Rows in the view's table now (from the Delta log when it knows, else one count)."""
        table = self._table(check_name("feature view", name))
        if table is None:
            return 0
        rows = delta_log.row_count(table)
        return int(rows) if rows is not None else int(self._snapshot(table, name).count())

    def stored_schema(self, name: str) -> pa.Schema | None:
        table = self._table(check_name("feature view", name))
        return None if table is None else delta_log.stored_schema(table)

    def committed_write(self, con: Any, name: str) -> str | None:
        """The token of the view's last committed write (fsnb.commit), from the Delta log."""
        table = self._table(check_name("feature view", name))
        return None if table is None else delta_log.last_token(table)

    def committed_stats(self, con: Any, name: str) -> dict[str, Any] | None:
        return None  # counted after the commit (Spark reads the table's files once)

    def has_rows(self, name: str) -> bool:
        table = self._table(check_name("feature view", name))
        if table is None:
            return False
        rows = delta_log.row_count(table)
        return rows is None or rows > 0

    def stored_columns(self, name: str) -> list[str]:
        """The columns of the view's Delta table ([] without one)."""
        table = self._table(name)
        return [] if table is None else delta_log.stored_schema(table).names

    # -- writes -------------------------------------------------------------------------
    def check_frame(self, con: duckdb.DuckDBPyConnection, view: FeatureView, frame: DataFrame) -> CheckedBatch:
        """Validate a Spark DataFrame as check_batch validates Arrow: types from a one-row
        sample, then one Spark job counting null keys and times over all rows."""
        from pyspark.sql import functions as F

        batch = check_batch(con, view, frame.limit(1).toArrow())
        cond = None
        for c in view.system_columns:
            cond = col(c).isNull() if cond is None else cond | col(c).isNull()
        if cond is not None:
            nulls = frame.filter(cond).agg(F.count(F.lit(1))).collect()[0][0]
            if nulls:
                msg = f"{nulls} row(s) have a null entity key or timestamp; drop or fill them before ingesting into '{view.name}'"
                raise InvalidData(msg)
        return CheckedBatch(frame, batch.view, batch.column_types)

    def write(
        self,
        batch: CheckedBatch,
        *,
        replace: bool = False,
        entry: str | None = None,
        ingested_at: datetime | None = None,
        token: str | None = None,
    ) -> int:
        """Append a validated batch (Arrow or a Spark DataFrame) in one Delta commit; rows written.

        token names the write in the commit's metadata (the store's journal, fsnb.commit,
        asks the Delta log for it after a crash).

        A commit lost to a concurrent writer is redone on the new snapshot (dedupe, ordering
        and entry checks included), so writers never interleave inside one write.
        """
        name = check_name("feature view", batch.view.name)
        now = _micros(ingested_at or datetime.now(timezone.utc))
        for attempt in range(self.max_attempts):
            table = self._table(name)
            try:
                return self._write_once(table, batch, replace=replace, entry=entry, now_us=now, token=token)
            except Exception as exc:
                if not delta_log.is_conflict(exc):
                    raise
                if attempt == self.max_attempts - 1:
                    msg = f"'{name}' changed under {self.max_attempts} attempts to write it (concurrent writers); try again"
                    raise StoreError(msg) from None
                time.sleep(min(0.05 * 2**attempt, 1.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _incoming(self, batch: CheckedBatch, schema: pa.Schema, user_cols: list[str]) -> DataFrame:
        from pyspark.sql import functions as F

        if is_spark_frame(batch.table):
            frame: DataFrame = batch.table
            cols = [
                self._spark_cast(frame, c, schema.field(c).type).alias(c) for c in user_cols
            ]
            return frame.select(*cols, F.monotonically_increasing_id().alias(_IDX))
        table = batch.table
        arrays = [_arrow_cast(table.column(c), schema.field(c).type, f"column '{c}'") for c in user_cols]
        arrays.append(pa.chunked_array([np.arange(table.num_rows, dtype=np.int64)]))
        arrow = pa.Table.from_arrays(arrays, names=[*user_cols, _IDX])
        return self.spark.createDataFrame(arrow)

    @staticmethod
    def _spark_cast(frame: DataFrame, name: str, target: pa.DataType) -> Column:
        from pyspark.sql import functions as F
        from pyspark.sql import types as st
        from pyspark.sql.pandas.types import from_arrow_type

        source = frame.schema[name].dataType
        if target == UTC_US:
            if isinstance(source, st.TimestampType):
                return col(name)
            if isinstance(source, st.TimestampNTZType):  # naive means UTC, whatever the session zone
                quoted = "`" + name.replace("`", "``") + "`"
                return F.timestamp_micros(
                    F.expr(f"timestampdiff(MICROSECOND, TIMESTAMP_NTZ'1970-01-01 00:00:00', {quoted})")
                )
            if isinstance(source, st.DateType):
                return F.timestamp_micros(F.unix_date(col(name)).cast("long") * F.lit(86_400_000_000))
            msg = f"column '{name}' is {source.simpleString()}, not a date/time; cast it first"
            raise InvalidData(msg)
        return col(name).cast(from_arrow_type(target, prefer_timestamp_ntz=False))

    @staticmethod
    def _time_span(batch: CheckedBatch, time_field: str) -> tuple[int, int] | None:
        """The batch's event times as (min, max) microseconds, for Arrow input (on the driver)."""
        if is_spark_frame(batch.table) or batch.table.num_rows == 0:
            return None
        times = arrow_times(batch.table.column(time_field), f"column '{time_field}'")
        bounds = pc.min_max(pc.cast(times, pa.int64()))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        return None if lo is None or hi is None else (int(lo), int(hi))

    def _base_seq(self, table: Any, stored: DataFrame) -> int:
        from pyspark.sql import functions as F

        recorded = delta_log.next_seq(table)
        if recorded is not None:
            return recorded
        top = stored.agg(F.max(col(SEQ))).collect()[0][0]  # a table fsnb did not write last
        return 0 if top is None else int(top) + 1

    def _write_once(self, table: Any, batch: CheckedBatch, *, replace: bool, entry: str | None, now_us: int,
                    token: str | None = None) -> int:
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        view = batch.view
        name = view.name
        stored_schema = delta_log.stored_schema(table) if table is not None else None
        schema = delta_log.target_schema(view, stored_schema)
        user_cols = [*view.system_columns, *view.feature_names]
        spark_types = {f.name: f.dataType for f in from_arrow_schema(schema, prefer_timestamp_ntz=False)}
        stored = candidates = None
        incoming = self._incoming(batch, schema, user_cols)
        if table is not None:
            def aligned(raw: DataFrame) -> DataFrame:
                have = set(raw.columns)  # rows stored before a version added a column read it as null
                return raw.select(
                    *[col(f.name) if f.name in have else F.lit(None).cast(spark_types[f.name]).alias(f.name) for f in schema]
                )

            stored = aligned(self._snapshot(table, name))
            candidates = stored
            span = self._time_span(batch, view.timestamp_field)
            if span is not None and not replace:
                # Only rows in the batch's event-time span can be duplicates of it: a small
                # append reads the files whose logged min/max overlap it, not the history.
                candidates = aligned(self._snapshot(table, name, time_field=view.timestamp_field, lo=span[0], hi=span[1]))
        if entry is not None and stored is not None and stored.filter(col(ENTRY) == F.lit(entry)).limit(1).count():
            return 0  # a replay of a log entry already applied
        base = self._base_seq(table, stored) if stored is not None else 0
        # Exact duplicates within the batch: the first occurrence stays (its place decides ties).
        fresh = incoming.groupBy(*[col(c) for c in user_cols]).agg(F.min(col(_IDX)).alias(_IDX))
        same = None
        if stored is not None:
            for c in user_cols:
                eq = F.col("n.`" + c.replace("`", "``") + "`").eqNullSafe(F.col("e.`" + c.replace("`", "``") + "`"))
                same = eq if same is None else same & eq
            assert candidates is not None
            new = fresh.alias("n").join(candidates.select(*user_cols).alias("e"), on=same, how="left_anti")
        else:
            new = fresh
        extra = {f.name: f.type for f in schema if f.name not in user_cols and f.name not in (SEQ, INGESTED_AT, ENTRY)}
        out = new.select(
            *[col(c) for c in user_cols],
            *[F.lit(None).cast(spark_types[c]).alias(c) for c in extra],
            (F.lit(base) + col(_IDX)).alias(SEQ),
            F.timestamp_micros(F.lit(now_us)).alias(INGESTED_AT),
            F.lit(entry).cast("string").alias(ENTRY),
        ).select(*[col(f.name) for f in schema])
        if not is_spark_frame(batch.table) and not replace:
            # Arrow in: the new rows come back to the driver (they came from it) and
            # deltalake writes them and commits, schema change included, in one commit.
            return self._append_arrow(table, name, out, schema, base, entry, token)
        if replace and stored is not None and same is not None:
            kept = stored.alias("e").join(fresh.alias("n"), on=same, how="left_semi")
            out = kept.select(*[col(f.name) for f in schema]).unionByName(out)
        if not is_spark_frame(batch.table) and batch.table.num_rows < 1_000_000:
            out = out.coalesce(1)  # a small batch is one file, not one per shuffle partition
        staging_name = f"fsnb-{uuid.uuid4().hex}"
        staging = f"{self.warehouse.spark_uri(name)}/{staging_name}"
        try:
            files, written, top = self._write_files(out, staging, staging_name, base)
            if written == 0 and not replace:
                self._remove(staging)
                return 0
            next_seq = max(base, top + 1)
            if next_seq >= _MAX_SEQ:
                msg = f"'{name}' ran out of ingestion sequence numbers; copy it to a new view"
                raise StoreError(msg)
            props = delta_log.commit_properties(next_seq, entry, token)
            actions = delta_log.add_actions(files)
            self._commit(table, name, schema, stored_schema, actions, props, replace=replace, base=base)
        except BaseException:
            self._remove(staging)
            raise
        return written

    def _append_arrow(self, table: Any, name: str, out: DataFrame, schema: pa.Schema, base: int, entry: str | None,
                      token: str | None = None) -> int:
        from deltalake import write_deltalake

        rows = _to_utc(out.toArrow()).cast(schema)
        if rows.num_rows == 0:
            return 0
        top = pc.max(rows.column(SEQ)).as_py()
        write_deltalake(
            table if table is not None else self.warehouse.delta_uri(name),
            rows,
            # A new table is created, never appended to: two first writers both saw no table
            # and numbered their rows from 0, so the second must lose and redo its write.
            mode="append" if table is not None else "error",
            schema_mode="merge" if table is not None else None,
            commit_properties=delta_log.commit_properties(int(top) + 1, entry, token),
            storage_options=None if table is not None else dict(self.warehouse.storage_options or {}) or None,
        )
        return int(rows.num_rows)

    def _write_files(self, out: DataFrame, staging: str, staging_name: str, base: int) -> tuple[list[dict[str, Any]], int, int]:
        """Spark's executors write out as Parquet (TIMESTAMP_MICROS); one more job reads back
        each file's row count and size for the commit."""
        from pyspark.sql import functions as F

        # Delta readers expect INT64 microseconds, not Spark's default INT96. Set on the
        # session and left so (restoring it would race with another thread's write).
        key = "spark.sql.parquet.outputTimestampType"
        if self.spark.conf.get(key, None) != "TIMESTAMP_MICROS":
            self.spark.conf.set(key, "TIMESTAMP_MICROS")
        out.write.mode("error").parquet(staging)
        written_back = self.spark.read.schema(out.schema).parquet(staging)
        rows = (
            written_back.select(F.col("_metadata.file_path").alias("p"), F.col("_metadata.file_size").alias("z"), col(SEQ))
            .groupBy("p", "z")
            .agg(
                F.count(F.lit(1)).alias("n"),
                F.sum(F.when(col(SEQ) >= F.lit(base), 1).otherwise(0)).alias("w"),
                F.max(col(SEQ)).alias("top"),
            )
            .collect()
        )
        files = [{"path": f"{staging_name}/{r['p'].rsplit('/', 1)[-1]}", "size": r["z"], "rows": r["n"]} for r in rows if r["n"]]
        written = sum(int(r["w"]) for r in rows)
        top = max((int(r["top"]) for r in rows if r["w"]), default=base - 1)
        return files, written, top

    def _commit(self, table: Any, name: str, schema: pa.Schema, stored_schema: pa.Schema | None,
                actions: list[Any], props: Any, *, replace: bool, base: int) -> None:
        from deltalake import Field, Schema
        from deltalake.transaction import create_table_with_add_actions

        if table is None:
            create_table_with_add_actions(
                self.warehouse.delta_uri(name), Schema.from_arrow(schema), actions, mode="error",
                commit_properties=props, storage_options=dict(self.warehouse.storage_options or {}) or None,
            )
            return
        assert stored_schema is not None
        added = [f for f in schema if f.name not in stored_schema.names]
        if added:
            # A version that adds a feature: the table gains nullable columns (one metadata
            # commit, made like every other with no automatic retry), then the data commit.
            table.alter.add_columns(
                [Field.from_arrow(f) for f in added], commit_properties=delta_log.commit_properties(base)
            )
        table.create_write_transaction(actions, "overwrite" if replace else "append", schema, commit_properties=props)

    def _remove(self, uri: str) -> None:
        """Best-effort removal of a staging directory (an orphan is invisible to every reader)."""
        if self.warehouse.local is not None:
            from urllib.parse import unquote, urlparse

            shutil.rmtree(unquote(urlparse(uri).path), ignore_errors=True)
            return
        try:
            jvm: Any = self.spark._jvm
            path = jvm.org.apache.hadoop.fs.Path(uri)
            path.getFileSystem(self.spark._jsc.hadoopConfiguration()).delete(path, True)
        except Exception:  # cleanup only: VACUUM removes what is left
            pass

    def drop(self, name: str) -> None:
        check_name("feature view", name)
        if self.warehouse.local is not None:
            path = self.warehouse.local / name
            if not path.exists():
                return
            grave = self.warehouse.local / f".{name}.dropped-{uuid.uuid4().hex[:8]}"
            path.rename(grave)  # atomic: the table is gone at once, then its files go
            shutil.rmtree(grave, ignore_errors=True)
            return
        self._remove(self.warehouse.spark_uri(name))

    # -- reads --------------------------------------------------------------------------
