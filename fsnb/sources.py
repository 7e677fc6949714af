"""Turn whatever a user hands fsnb (DataFrames, Arrow, files, SQL) into one Arrow table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from fsnb.errors import InvalidData, QueryError, one_line

_FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".csv.gz", ".json", ".jsonl", ".ndjson")


def looks_like_path(text: str) -> bool:
    stripped = text.strip()
    if "\n" in stripped or (" " in stripped and not os.path.exists(stripped)):
        return False
    return stripped.lower().endswith(_FILE_SUFFIXES) or os.path.isfile(stripped)


def _read_file(path: str) -> pa.Table:
    p = Path(path).expanduser()
    if not p.exists():
        msg = f"file not found: {path}; check the path (relative paths start at {os.getcwd()})"
        raise InvalidData(msg)
    if p.is_dir():
        msg = f"{path} is a directory; pass one Parquet/CSV/JSON file, or SQL such as SELECT * FROM '{path}/*.parquet'"
        raise InvalidData(msg)
    lower = p.name.lower()
    con = duckdb.connect()
    try:
        if lower.endswith((".parquet", ".pq")):
            rel = con.read_parquet(str(p))
        elif lower.endswith((".json", ".jsonl", ".ndjson")):
            rel = con.read_json(str(p))
        else:
            rel = con.read_csv(str(p))
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        msg = f"cannot read {path}: {one_line(exc)}"
        raise InvalidData(msg) from None
    finally:
        con.close()


def _duckdb_error(exc: duckdb.Error) -> QueryError:
    """DuckDB's message on one line, and whole (with its caret line) as the detail."""
    return QueryError(f"DuckDB: {one_line(exc)}", detail=str(exc))


def check_one_query(sql: str) -> str:
    """sql if it is exactly one query (SELECT, WITH, FROM, VALUES, ...), as DuckDB's own
    parser reads it; anything else (two statements, CREATE, COPY, SET, ...) is refused,
    so data SQL never changes a database or silently keeps only its last statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise _duckdb_error(exc) from None
    if not statements:
        msg = "the SQL holds no query; write one, e.g. SELECT * FROM events"
        raise QueryError(msg)
    if len(statements) > 1:
        msg = f"the SQL holds {len(statements)} statements; give exactly one query (SELECT, WITH, FROM or VALUES)"
        raise QueryError(msg)
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        msg = f"the SQL is a {kind.name} statement, not a query; give one SELECT, WITH, FROM or VALUES query"
        raise QueryError(msg)
    return sql


def run_sql(sql: str, namespace: Mapping[str, Any] | None = None) -> pa.Table:
    """Run one DuckDB query in a private in-memory database, seeing the DataFrames in namespace."""
    check_one_query(sql)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        for name, value in (namespace or {}).items():
            table = _tabular_or_none(value)
            if table is not None and name.isidentifier():
                con.register(name, table)
        try:
            rel = con.sql(sql)
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
        if rel is None:
            msg = "the SQL ran but returned no rows; a feature view needs a SELECT"
            raise QueryError(msg)
        try:
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
    finally:
        con.close()


def _tabular_or_none(value: Any) -> Any:
    """Return an object DuckDB can scan (Arrow/polars/pandas), or None."""
    module = type(value).__module__.split(".")[0]
    if isinstance(value, pa.Table | pa.RecordBatch):
        return value
    if module == "polars" and type(value).__name__ == "DataFrame":
        return value.to_arrow()
    if module == "polars" and type(value).__name__ == "LazyFrame":
        return value.collect().to_arrow()
    if module == "pandas" and type(value).__name__ == "DataFrame":
        return value
    return None


def to_arrow(data: Any, namespace: Mapping[str, Any] | None = None) -> pa.Table:
    """Normalize data: polars/pandas DataFrame, Arrow table, file path, or DuckDB SQL, or a
    Spark DataFrame (collected to this process through Arrow: a Spark store's register and
    ingest keep one in Spark instead, fsnb.offline_engine).

    A column name given twice is refused (which copy is meant cannot be known).
    """
    table = _to_arrow(data, namespace)
    _refuse_duplicate_columns(table.column_names)
    return table


def is_spark_frame(value: Any) -> bool:
    """A pyspark DataFrame (False, without importing pyspark, when nothing has loaded it:
    then no value can be one)."""
    import sys

    frame = getattr(sys.modules.get("pyspark.sql"), "DataFrame", None)
    return frame is not None and isinstance(value, frame)


def _refuse_duplicate_columns(names: Any) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            msg = f"the data has a column named {str(name)!r} more than once; rename or drop the extra copy"
            raise InvalidData(msg)
        seen.add(name)


def _to_arrow(data: Any, namespace: Mapping[str, Any] | None) -> pa.Table:
    if data is None:
        msg = "no data given; pass a DataFrame, an Arrow table, a Parquet/CSV path or a DuckDB SQL string"
        raise InvalidData(msg)
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if is_spark_frame(data):
        return data.toArrow()
    if isinstance(data, os.PathLike):
        return _read_file(os.fspath(data))
    if isinstance(data, str):
        if looks_like_path(data):
            return _read_file(data)
        return run_sql(data, namespace)
    module = type(data).__module__.split(".")[0]
    try:
        if module == "polars":
            if type(data).__name__ == "LazyFrame":
                data = data.collect()
            return data.to_arrow()
        if module == "pandas" and type(data).__name__ == "DataFrame":
            return _pandas_to_arrow(data)
        if isinstance(data, (Mapping, list)):
            import polars as pl

            return pl.DataFrame(data).to_arrow()
    except Exception as exc:
        if not _is_data_error(exc):
            raise
        msg = f"cannot turn the {type(data).__name__} into a table: {one_line(exc)}"
        raise InvalidData(msg) from None
    msg = f"cannot use a {type(data).__name__} as data; pass a DataFrame, an Arrow table, a file path or SQL"
    raise InvalidData(msg)


def _is_data_error(exc: Exception) -> bool:
    """An Arrow or polars error about the user's data (polars is looked up, not imported)."""
    import sys

    polars_errors = getattr(sys.modules.get("polars.exceptions"), "PolarsError", None)
    return isinstance(exc, pa.ArrowException) or (isinstance(polars_errors, type) and isinstance(exc, polars_errors))


def _pandas_to_arrow(frame: Any) -> pa.Table:
    import pandas as pd

    _refuse_duplicate_columns(frame.columns)
    frame = frame.copy(deep=False)
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object and len(s) and _is_datetime_objects(s):
            # Mixed naive/aware datetimes: naive means UTC, aware is converted to UTC.
            frame[col] = pd.to_datetime(
                [_as_utc(v) for v in s], utc=True
            )
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        msg = f"cannot convert the pandas DataFrame: {exc}"
        raise InvalidData(msg) from None


def _is_datetime_objects(series: Any) -> bool:
    from datetime import datetime

    sample = series.dropna().head(50)
    return len(sample) > 0 and all(isinstance(v, datetime) for v in sample)


def _as_utc(value: Any) -> Any:
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    return value
