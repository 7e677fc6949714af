"""Delta Lake tables of the Spark engine: where they live, their schema, their commits.

The table log is kept with the ``deltalake`` package (delta-rs): Spark needs no Delta
jars. Every fsnb commit records the view's next ``_fsnb_seq`` in its commit info and is
made with no automatic retry, so two writers that started from the same snapshot cannot
both commit: the loser gets ``CommitConflict`` and redoes its write on the new snapshot.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from fsnb.definitions import FeatureView, check_name
from fsnb.errors import SchemaMismatch, StoreError
from fsnb.sqlnames import ENTRY, INGESTED_AT, SEQ

NEXT_SEQ = "fsnb.next_seq"  # commit info key: the view's next _fsnb_seq after this commit
TOKEN = "fsnb.write_token"  # commit info key: the store write this commit is (fsnb.commit)
UTC_US = pa.timestamp("us", tz="UTC")

# DuckDB type names (as the registry holds them) -> Arrow types of the Delta table.
# A closed list: a type read from a store file never reaches Spark or SQL as text.
_SCALARS: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "UTINYINT": pa.int16(),
    "USMALLINT": pa.int32(),
    "UINTEGER": pa.int64(),
    "FLOAT": pa.float32(),
    "REAL": pa.float32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "STRING": pa.string(),
    "TEXT": pa.string(),
    "BLOB": pa.binary(),
    "DATE": pa.date32(),
    "TIMESTAMP": UTC_US,
    "TIMESTAMPTZ": UTC_US,
    "TIMESTAMP WITH TIME ZONE": UTC_US,
    "TIMESTAMP_S": UTC_US,
    "TIMESTAMP_MS": UTC_US,
    "TIMESTAMP_NS": UTC_US,
    "TIMESTAMPTZ_NS": UTC_US,
    "TIMESTAMP_NS WITH TIME ZONE": UTC_US,
}
_DECIMAL = re.compile(r"^DECIMAL\((\d{1,2}),\s*(\d{1,2})\)$")


def arrow_type(duck_type: str, what: str) -> pa.DataType:
    """The Arrow type the Spark engine stores for a DuckDB type name (closed grammar)."""
    t = " ".join(str(duck_type).upper().split())
    if t in _SCALARS:
        return _SCALARS[t]
    match = _DECIMAL.match(t)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if 1 <= precision <= 38 and scale <= precision:
            return pa.decimal128(precision, scale)
    msg = f"{what} has type {duck_type!r}, which the Spark engine cannot store; cast it to a number, string, boolean, date or timestamp"
    raise SchemaMismatch(msg)


def target_schema(view: FeatureView, stored: pa.Schema | None = None) -> pa.Schema:
    """The Delta schema of a view's table: keys, times, features, then fsnb's columns.

    Columns already stored keep their stored type (the data is cast to it); columns
    of the table that this version no longer has stay at the end, so old rows keep them.
    """
    entity_types = view.entity_types or {}
    fields: list[pa.Field] = []
    for k in view.entity_columns:
        fields.append(pa.field(k, arrow_type(entity_types.get(k) or "VARCHAR", f"entity column '{k}'")))
    fields.append(pa.field(view.timestamp_field, UTC_US))
    if view.created_timestamp_field:
        fields.append(pa.field(view.created_timestamp_field, UTC_US))
    for f, t in view.feature_types.items():
        fields.append(pa.field(f, arrow_type(t or "VARCHAR", f"feature '{f}'")))
    fields += [pa.field(SEQ, pa.int64()), pa.field(INGESTED_AT, UTC_US), pa.field(ENTRY, pa.string())]
    if stored is not None:
        by_name = {f.name: f for f in stored}
        fields = [by_name.get(f.name, f) for f in fields]
        wanted = {f.name for f in fields}
        tail = [f for f in stored if f.name not in wanted]
        system = fields[-3:]
        fields = [*fields[:-3], *tail, *system]
    return pa.schema(fields)


@dataclass(frozen=True)
class Warehouse:
    """A directory or URI holding one Delta table per view.

    Spark and delta-rs name some object stores differently (``s3a://`` vs ``s3://``);
    both names of each table are kept here.
    """

    spark_root: str
    delta_root: str
    local: Path | None
    storage_options: Mapping[str, str] | None = None

    @classmethod
    def parse(cls, uri: str | Path, storage_options: Mapping[str, str] | None = None) -> Warehouse:
        text = str(uri)
        if not text:
            msg = "warehouse is empty; give a directory or a URI such as s3://bucket/features"
            raise StoreError(msg)
        parsed = urlparse(text)
        if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and text[1:2] == ":"):
            path = Path(unquote(parsed.path) if parsed.scheme == "file" else text).expanduser().resolve()
            if path.exists() and not path.is_dir():
                msg = f"warehouse {path} is a file; give a directory (fsnb creates it if missing)"
                raise StoreError(msg)
            path.mkdir(parents=True, exist_ok=True)
            return cls(path.as_uri(), str(path), path, storage_options)
        root = text.rstrip("/")
        delta = "s3://" + root[len("s3a://"):] if root.startswith("s3a://") else root
        return cls(root, delta, None, storage_options)

    def spark_uri(self, name: str) -> str:
        return f"{self.spark_root}/{check_name('feature view', name)}"

    def delta_uri(self, name: str) -> str:
        return f"{self.delta_root}/{check_name('feature view', name)}"


def open_table(warehouse: Warehouse, name: str) -> Any | None:
    """The view's Delta table at its latest version, or None when it has none yet."""
    from deltalake import DeltaTable

    uri = warehouse.delta_uri(name)
    options = dict(warehouse.storage_options or {})
    if warehouse.local is not None and not (warehouse.local / name / "_delta_log").is_dir():
        return None
    try:
        if not DeltaTable.is_deltatable(uri, storage_options=options or None):
            return None
        table = DeltaTable(uri, storage_options=options or None)
    except Exception as exc:  # deltalake raises its own errors and OSError subclasses
        msg = f"cannot open the Delta table of '{name}' at {uri}: {_first_line(exc)}"
        raise StoreError(msg) from None
    check_readable(table, uri)
    return table


def check_readable(table: Any, uri: str) -> None:
    """fsnb reads a snapshot's Parquet files directly: refuse features that change what they mean."""
    protocol = table.protocol()
    features = list(protocol.reader_features or [])
    if protocol.min_reader_version > 1 and set(features) - {"timestampNtz"}:
        msg = (
            f"the Delta table at {uri} needs reader features {', '.join(features) or protocol.min_reader_version} "
            "that fsnb's reader does not apply (deletion vectors, column mapping); rewrite it without them"
        )
        raise StoreError(msg)
    if table.metadata().partition_columns:
        msg = f"the Delta table at {uri} is partitioned; fsnb reads unpartitioned view tables only"
        raise StoreError(msg)


def stored_schema(table: Any) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def data_files(table: Any, root: str, *, time_field: str | None = None,
               lo: int | None = None, hi: int | None = None) -> list[str]:
    """The snapshot's data files as URIs under root (Spark's name for the table).

    With time_field, lo and hi (microseconds), only files whose logged min/max of that
    column may overlap [lo, hi]; a file without statistics is always kept.
    """
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    keep = [True] * len(paths)
    low, high = f"min.{time_field}", f"max.{time_field}"
    if time_field and lo is not None and hi is not None and {low, high} <= set(actions.column_names):
        # 1 ms of slack: some writers log timestamp statistics truncated to milliseconds.
        mins = pc.cast(actions.column(low), pa.int64()).to_pylist()
        maxs = pc.cast(actions.column(high), pa.int64()).to_pylist()
        keep = [
            a is None or b is None or (a - 1000 <= hi and b + 1000 >= lo)
            for a, b in zip(mins, maxs, strict=True)
        ]
    return [p if "://" in p else f"{root}/{unquote(p)}" for p, k in zip(paths, keep, strict=True) if k]


def row_count(table: Any) -> int | None:
    """Rows in the snapshot from the log's statistics (None when a file has none)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if "num_records" not in actions.column_names:
        return None if actions.num_rows else 0
    counts = actions.column("num_records")
    if counts.null_count:
        return None
    return int(sum(counts.to_pylist()))


def next_seq(table: Any) -> int | None:
    """The next _fsnb_seq recorded by the newest fsnb commit at or before the loaded version."""
    loaded = table.version()
    for limit in (4, 64):
        for info in table.history(limit):
            if info.get("version", loaded) <= loaded and NEXT_SEQ in info:
                return int(info[NEXT_SEQ])
        if len(table.history(limit)) < limit:
            break
    return None


def last_token(table: Any) -> str | None:
    """The write token of the newest commit that carries one (fsnb.commit's recovery: a
    write is committed exactly when its token is in the log)."""
    for info in table.history(16):
        if TOKEN in info:
            return str(info[TOKEN])
    return None


def commit_properties(next_seq_value: int, entry: str | None = None, token: str | None = None) -> Any:
    from deltalake import CommitProperties

    meta: dict[str, Any] = {NEXT_SEQ: str(int(next_seq_value))}
    if entry is not None:
        meta["fsnb.entry"] = entry
    if token is not None:
        meta[TOKEN] = token
    return CommitProperties(custom_metadata=meta, max_commit_retries=0)


def add_actions(files: Iterable[Mapping[str, Any]]) -> list[Any]:
    """AddActions for Parquet files that Spark wrote under the table root."""
    from deltalake.transaction import AddAction

    now_ms = int(time.time() * 1000)
    out = []
    for f in files:
        stats = {"numRecords": int(f["rows"])}
        if f.get("min") is not None:
            stats["minValues"] = f["min"]
            stats["maxValues"] = f["max"]
        out.append(AddAction(f["path"], int(f["size"]), {}, now_ms, True, json.dumps(stats)))
    return out


def is_conflict(exc: BaseException) -> bool:
    """A commit lost to a concurrent writer (or a table created meanwhile)."""
    from deltalake.exceptions import CommitFailedError

    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return "already exists" in text or ("version" in text and "conflict" in text)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
