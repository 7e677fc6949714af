"""Spark sessions, Spark/Arrow time conversions and shared names of the Spark engine
(docs/architecture.md, "Backend contracts")."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fsnb.backends.delta_log import UTC_US
from fsnb.errors import InvalidData, SchemaMismatch, StoreError

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

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

