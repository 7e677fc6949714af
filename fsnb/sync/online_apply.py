"""The online consumer: apply log entries to the online store (SQLite or Redis).

Rows are encoded as materialization encodes them, with the sequence of row i of entry
n being (n << 32) + i, so later log positions win ties on (event time, created time),
as they do offline where rows are numbered in apply order; the online store keeps the
newest (event time, created time, sequence), so a replay never wins
(docs/architecture.md, "Streaming").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fsnb import aggregation_views
from fsnb.backends.sqlite_online import NAN_TEXT, encode_key_sql, encode_sql, epoch_us_sql
from fsnb.definitions import FeatureView
from fsnb.sqlnames import q
from fsnb.sync.log_state import crash_point
from fsnb.sync.views import EntryViews, typed

if TYPE_CHECKING:
    from fsnb.backends.sqlite_log import LogEntry
    from fsnb.parts import StoreParts

_SEQ_SHIFT = 32


def apply_online(parts: StoreParts, entries: Sequence[LogEntry]) -> None:
    """Write the entries to the online store in one transaction (the caller commits the offset)."""
    views = EntryViews(parts.registry)
    online = parts.online
    con = parts.caches.scratch()
    online.begin()
    try:
        for entry in entries:
            found = views.get(entry.view, entry.version, entry.view_id)
            if found is None or not found[0].online:
                continue
            table = entry.table()
            target = typed(parts.caches, *found, table)
            if target.aggregations:  # hook: fsnb.aggregation_views (events into the online windows)
                aggregation_views.push_online(online, target, table)
                continue
            rows = _online_rows(con, target, table, entry.offset)
            online.ensure_table(target)
            online.write_rows(target, rows)
        crash_point("mid_online_apply")
        online.commit()
    except BaseException:
        online.rollback()
        raise
    parts.caches.forget_readers()
    crash_point("after_online_apply")


def _online_rows(con: duckdb.DuckDBPyConnection, view: FeatureView, table: pa.Table, offset: int) -> list[tuple[Any, ...]]:
    """Rows (keys..., ts_us, created_us, seq, features...) encoded as materialization does."""
    fast = _online_rows_plain(view, table, offset)
    if fast is not None:
        return fast
    entity_types = view.entity_types or {}
    feature_types = view.feature_types
    inner = [f"CAST({q(k)} AS {entity_types.get(k) or 'VARCHAR'}) AS {q(k)}" for k in view.entity_columns]
    inner.append(f"CAST({q(view.timestamp_field)} AS TIMESTAMPTZ_NS) AS {q(view.timestamp_field)}")
    if view.created_timestamp_field:
        inner.append(f"CAST({q(view.created_timestamp_field)} AS TIMESTAMPTZ_NS) AS {q(view.created_timestamp_field)}")
    present = set(table.column_names)
    for f in view.feature_names:
        t = feature_types.get(f) or "VARCHAR"
        inner.append(f"CAST({q(f) if f in present else 'NULL'} AS {t}) AS {q(f)}")
    inner.append("__fsnb_idx")
    created = (
        f"coalesce({epoch_us_sql(q(view.created_timestamp_field), 'TIMESTAMPTZ_NS')}, 0)"
        if view.created_timestamp_field
        else "0"
    )
    outer = [
        *(encode_key_sql(k, entity_types.get(k)) for k in view.entity_columns),
        epoch_us_sql(q(view.timestamp_field), "TIMESTAMPTZ_NS"),
        created,
        "CAST(? AS BIGINT) + __fsnb_idx",
        *(encode_sql(f, feature_types.get(f) or "VARCHAR", nan=True) for f in view.feature_names),
    ]
    arrow = table.append_column("__fsnb_idx", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    con.register("__fsnb_push", arrow)
    try:
        sql = f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM __fsnb_push) ORDER BY __fsnb_idx"
        return con.execute(sql, [offset << _SEQ_SHIFT]).fetchall()
    finally:
        con.unregister("__fsnb_push")


_PLAIN = {
    "BIGINT": pa.types.is_integer,
    "INTEGER": pa.types.is_integer,
    "HUGEINT": pa.types.is_integer,
    "DOUBLE": pa.types.is_float64,
    "FLOAT": pa.types.is_float32,
    "VARCHAR": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "BOOLEAN": pa.types.is_boolean,
}


def _micros(column: pa.ChunkedArray) -> list[Any] | None:
    t = column.type
    if not pa.types.is_timestamp(t) or t.unit == "ns":
        return None  # dates and nanoseconds: let DuckDB convert them exactly as offline does
    return column.cast(pa.timestamp("us", t.tz)).cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]


def _online_rows_plain(view: FeatureView, table: pa.Table, offset: int) -> list[tuple[Any, ...]] | None:
    """The same rows without DuckDB when every column is a plain number, string or bool
    whose Python value is already what SQLite stores (the common case, and the fast one)."""
    columns: list[Any] = []
    entity_types = view.entity_types or {}
    for k in view.entity_columns:
        check = _PLAIN.get((entity_types.get(k) or "").upper())
        if check is None or not check(table.column(k).type):
            return None
        columns.append(table.column(k).to_pylist())
    ts = _micros(table.column(view.timestamp_field))
    if ts is None:
        return None
    columns.append(ts)
    n = table.num_rows
    if view.created_timestamp_field:
        created = _micros(table.column(view.created_timestamp_field))
        if created is None:
            return None
        columns.append([0 if c is None else c for c in created])
    else:
        columns.append([0] * n)
    base = offset << _SEQ_SHIFT
    columns.append(range(base, base + n))
    present = set(table.column_names)
    for f, t in view.feature_types.items():
        if f not in present:
            columns.append([None] * n)
            continue
        check = _PLAIN.get((t or "").upper())
        column = table.column(f)
        if check is None or not check(column.type):
            return None
        values = column.to_pylist()
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            values = [NAN_TEXT if v != v else v for v in values]  # NaN is a value (SQLite would store NULL)
        columns.append(values)
    return list(zip(*columns, strict=True))

