"""The Spark offline engine: each view's history is a Delta Lake table, every query runs in Spark.

Layout: ``<warehouse>/<view name>/`` is a Delta table (log kept with ``deltalake``, data
files are Parquet with ``TIMESTAMP_MICROS`` times). Spark reads a snapshot's files
directly; Spark writes new files into ``fsnb-<uuid>/`` under the table and one Delta
commit makes them visible, so a write is all or nothing.

The point-in-time join (DESIGN section 2) is one sort per view, never a range join:
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
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fsnb.backends import delta_log
from fsnb.backends.delta_log import UTC_US, Warehouse
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.definitions import FeatureView, check_name
from fsnb.errors import InvalidData, SchemaMismatch, StoreError
from fsnb.selection import ViewSelection
from fsnb.sqlnames import ENTRY, INGESTED_AT, SEQ
from fsnb.timeutil import duration_us
from fsnb.validation import CheckedBatch, check_batch

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import Column, DataFrame, SparkSession

_IDX = "__fsnb_idx"
_VT = "__fsnb_vt"  # visibility time, microseconds since the epoch
_KIND = "__fsnb_kind"  # 0 feature row, 1 label row: at equal times features come first
_RANK = "__fsnb_rank"
_PAY = "__fsnb_pay"
_BEST = "__fsnb_best"
_CHUNK = 50_000
_MAX_SEQ = 1 << 62
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- sessions ----------------------------------------------------------------------
def _spark_modules() -> Any:
    try:
        import deltalake  # noqa: F401
        import pyspark.sql
    except ImportError as exc:
        msg = f"the Spark engine needs pyspark and deltalake ({exc.name} is missing); pip install 'fsnb[spark]'"
        raise StoreError(msg) from None
    return pyspark.sql


def local_session(partitions: int = 4, conf: dict[str, str] | None = None) -> SparkSession:
    """A local SparkSession bound to loopback, in UTC, without UI (what fsnb starts itself)."""
    sql = _spark_modules()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        sql.SparkSession.builder.master("local[2]")
        .appName("fsnb")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # JAVA_GATEWAY_EXITED and friends
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            msg = "the Spark engine needs Java 17 or newer: install it (Debian: apt-get install --no-install-recommends openjdk-17-jre-headless)"
            raise StoreError(msg) from None
        msg = f"cannot start a local SparkSession: {_first_line(exc)}"
        raise StoreError(msg) from None
    spark.sparkContext.setLogLevel("ERROR")
    session: SparkSession = spark
    return session


def _session(spark: SparkSession | None) -> SparkSession:
    if spark is not None:
        return spark
    sql = _spark_modules()
    active = sql.SparkSession.getActiveSession()
    return active if active is not None else local_session()


def col(name: str) -> Column:
    """A column by name, quoted: a dot or backtick in a name never means a path."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def is_spark_frame(value: Any) -> bool:
    try:
        from pyspark.sql import DataFrame
    except ImportError:
        return False
    return isinstance(value, DataFrame)


# -- Arrow-side normalization ------------------------------------------------------------
def arrow_times(column: pa.ChunkedArray | pa.Array, what: str) -> pa.ChunkedArray:
    """A date/time column as timestamp[us, UTC]: naive means UTC, sub-microsecond parts are refused."""
    data = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    t = data.type
    if pa.types.is_date(t):
        return pc.cast(pc.cast(data, pa.timestamp("us")), UTC_US)
    if not pa.types.is_timestamp(t):
        msg = f"{what} is {t}, not a date/time; cast it first"
        raise InvalidData(msg)
    if t.unit == "ns":
        ints = pc.cast(data, pa.int64())
        rest = pc.subtract(ints, pc.multiply(pc.divide(ints, 1000), 1000))
        bad = pc.not_equal(rest, 0)
        if pc.any(bad).as_py():
            first = pc.filter(data, bad)[0]
            msg = (
                f"{what} has times with sub-microsecond parts (e.g. {first}); the Spark engine keeps "
                "microseconds and never rounds: truncate them first (polars: .dt.truncate('1us'))"
            )
            raise InvalidData(msg)
    # A naive time is read as UTC (its value is kept); an aware one keeps its instant.
    return pc.cast(data, pa.timestamp(t.unit, tz="UTC")).cast(UTC_US)


def _arrow_cast(column: pa.ChunkedArray, target: pa.DataType, what: str) -> pa.ChunkedArray:
    if target == UTC_US:
        return arrow_times(column, what)
    if column.type == target:
        return column
    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        if pa.types.is_floating(target) and pa.types.is_integer(column.type):
            return pc.cast(column, target, safe=False)  # what DuckDB's CAST does too
        msg = f"{what} is {column.type} and cannot be stored as {target}: {_first_line(exc)}"
        raise SchemaMismatch(msg) from None


def _to_utc(table: pa.Table) -> pa.Table:
    """Spark's Arrow results carry the session zone: relabel every timestamp as UTC (same instants)."""
    fields = [
        pa.field(f.name, pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table


def _micros(value: datetime) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return (aware - EPOCH) // timedelta(microseconds=1)


def _from_micros(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=int(us))


class SparkOfflineStore:
    """The offline contract (fsnb/backends/contracts.py) on Spark and Delta Lake."""

    def __init__(
        self,
        warehouse: str | os.PathLike[str],
        spark: SparkSession | None = None,
        *,
        storage_options: dict[str, str] | None = None,
        max_attempts: int = 20,
    ) -> None:
        self.warehouse = Warehouse.parse(os.fspath(warehouse), storage_options)
        self._spark = spark
        self.max_attempts = max_attempts

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

    def has_rows(self, name: str) -> bool:
        table = self._table(check_name("feature view", name))
        if table is None:
            return False
        rows = delta_log.row_count(table)
        return rows is None or rows > 0

    def table_columns(self, name: str) -> list[str]:
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
    ) -> int:
        """Append a validated batch (Arrow or a Spark DataFrame) in one Delta commit; rows written.

        A commit lost to a concurrent writer is redone on the new snapshot (dedupe, ordering
        and entry checks included), so writers never interleave inside one write.
        """
        name = check_name("feature view", batch.view.name)
        now = _micros(ingested_at or datetime.now(timezone.utc))
        for attempt in range(self.max_attempts):
            table = self._table(name)
            try:
                return self._write_once(table, batch, replace=replace, entry=entry, now_us=now)
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

    def _write_once(self, table: Any, batch: CheckedBatch, *, replace: bool, entry: str | None, now_us: int) -> int:
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
            return self._append_arrow(table, name, out, schema, base, entry)
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
            props = delta_log.commit_properties(next_seq, entry)
            actions = delta_log.add_actions(files)
            self._commit(table, name, schema, stored_schema, actions, props, replace=replace, base=base)
        except BaseException:
            self._remove(staging)
            raise
        return written

    def _append_arrow(self, table: Any, name: str, out: DataFrame, schema: pa.Schema, base: int, entry: str | None) -> int:
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
            commit_properties=delta_log.commit_properties(int(top) + 1, entry),
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
            part = self._selection(frame, sel, i, as_of_ingestion=as_of_ingestion, with_event_times=with_event_times)
            result = part if result is None else result.join(part, ROW, "inner")
        if result is None:
            result = frame.select(col(ROW))
        result = result.orderBy(col(ROW))
        if spark_in:
            return result
        return _to_utc(result.toArrow())

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


def _batch(rows: Sequence[Any], schema: pa.Schema, times: set[str]) -> pa.RecordBatch:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        if field.name in times:
            arrays.append(pa.array(values, pa.int64()).cast(UTC_US))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
