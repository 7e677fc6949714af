"""The online side of window aggregations: each key's recent events, in SQLite.

An aggregation feature online is its function over the key's events with event time
in (now - window, now], computed exactly when it is read: events that leave the window
as time passes drop out without any write. So the online store keeps events, not
values: per view one table ``ow__{view}`` holding, for every event whose time is within
the view's longest window of "now" (and any later one), its keys, its event time in
epoch microseconds, a digest of the whole row and the aggregated columns.

- ``materialize`` replaces a view's events with the offline history after now - longest;
- ``push`` appends events (an exact duplicate of a stored event, by digest of every
  user column as the offline store compares them, is dropped: the offline store drops
  it too, and a replayed log entry changes nothing);
- both prune events at or before now - longest, which no later read can see.

The primary key (keys..., time, digest) of a WITHOUT ROWID table is the covering index:
a read is one range scan of the key's recent events and one aggregate query with a
FILTER clause per window. Times are whole microseconds, as elsewhere online; a finer
offline time floored to microseconds keeps every comparison with a microsecond "now"
exact (e <= now iff floor(e) <= now; e > now - w iff floor(e) > now - w).

Reads at a "now" earlier than the last prune horizon plus the longest window would miss
pruned events: time is taken to move forward, as it does.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from fsnb import types
from fsnb.aggregation import Aggregation
from fsnb.aggregation_sql import is_nanoseconds, time_int
from fsnb.backends.sqlite_online import decoder
from fsnb.definitions import FeatureView
from fsnb.errors import InvalidData
from fsnb.sqlite_util import connect_sqlite
from fsnb.sqlnames import offline_table, q, qlist

TS, DIGEST = "_fsnb_ts", "_fsnb_digest"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_BATCH = 50_000


def window_table(view_name: str) -> str:
    return q(f"ow__{view_name}")


def _us(window: timedelta) -> int:
    return window // _US


def _time_ns(value: Any, what: str) -> int:
    """An event time (datetime naive=UTC, numpy/pandas timestamp, or int ns) as epoch ns."""
    if isinstance(value, bool):
        msg = f"{what} must be a datetime, not bool"
        raise InvalidData(msg)
    if isinstance(value, int):
        return value
    nanos = getattr(value, "value", None)  # pandas.Timestamp: exact nanoseconds
    if isinstance(nanos, int) and hasattr(value, "to_pydatetime"):
        return int(nanos)
    if hasattr(value, "astype") and hasattr(value, "dtype"):  # numpy.datetime64
        return int(value.astype("datetime64[ns]").astype("int64"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        micros: int = (value - _EPOCH) // _US
        return micros * 1000
    msg = f"{what} must be a datetime, not {type(value).__name__}"
    raise InvalidData(msg)


def _float_key(value: Any) -> Any:
    return None if value is None else float(value) + 0.0  # -0.0 and 0.0 compare equal offline


def _time_key(value: Any) -> Any:
    return None if value is None else _time_ns(value, "time")


def _repr_key(value: Any) -> Any:
    return None if value is None else repr(value)


def _identity(value: Any) -> Any:
    return value


def _canonical(duck_type: str | None) -> Callable[[Any], Any]:
    """How a column's values enter the duplicate digest (as the offline store compares them)."""
    fam = types.family(duck_type) if duck_type else ""
    if (duck_type or "").upper() == "DATE":
        return _repr_key
    if fam == "time":
        return _time_key
    if fam == "float":
        return _float_key
    if fam in ("int", "string", "bool"):
        return _identity
    return _repr_key


def _encoder(duck_type: str | None) -> Callable[[Any], Any]:
    """A column's values as this table keeps them (what online.decoder turns back)."""
    fam = types.family(duck_type) if duck_type else ""
    if (duck_type or "").upper() == "DATE":
        return lambda v: None if v is None else (v.isoformat() if isinstance(v, date) else str(v))
    if fam == "time":
        return lambda v: None if v is None else _time_ns(v, "time") // 1000
    if fam == "float":
        return lambda v: None if v is None else float(v)
    if fam == "bool":
        return lambda v: None if v is None else int(v)
    if fam in ("int", "string"):
        return _identity
    return lambda v: None if v is None else json.dumps(v, default=str, sort_keys=True)


class _RowEncoder:
    """Turns an event (values of every user column, in user_columns order) into a table row:
    keys, time in us, digest of the whole event, aggregated columns."""

    def __init__(self, view: FeatureView, columns: list[str]) -> None:
        self.user_columns = [*view.system_columns, *view.feature_names]
        col_types: dict[str, str | None] = {**(view.entity_types or {}), **view.feature_types}
        stamps = (view.timestamp_field, view.created_timestamp_field)
        self.keys = [self.user_columns.index(k) for k in view.entity_columns]
        self.ts = self.user_columns.index(view.timestamp_field)
        self.canon = [_time_key if c in stamps else _canonical(col_types.get(c)) for c in self.user_columns]
        self.columns = [self.user_columns.index(c) for c in columns]
        self.encoders = [_time_key if c in stamps else _encoder(col_types.get(c)) for c in columns]
        self.stamp_columns = {self.user_columns.index(c) for c in stamps if c}

    def encode(self, values: Sequence[Any], ts_us: int) -> tuple[Any, ...]:
        canon = tuple(f(v) for f, v in zip(self.canon, values, strict=True))
        digest = hashlib.blake2b(repr(canon).encode(), digest_size=16).digest()
        encoded = []
        for i, enc in zip(self.columns, self.encoders, strict=True):
            value = enc(values[i])
            if i in self.stamp_columns and value is not None:
                value //= 1000  # the event/created time as a column: microseconds, like other times
            encoded.append(value)
        return (*(values[i] for i in self.keys), ts_us, digest, *encoded)


class WindowStore:
    """Recent events per key for a store's aggregation views (one SQLite file)."""

    def __init__(self, path: Path | None = None, *, con: sqlite3.Connection | None = None) -> None:
        if con is None:
            if path is None:
                msg = "WindowStore needs a path or a connection"
                raise ValueError(msg)
            con = connect_sqlite(path)
        self.con = con
        self._sql: dict[tuple[Any, ...], str] = {}

    def close(self) -> None:
        self.con.close()

    # -- schema ---------------------------------------------------------------------
    @staticmethod
    def _columns(aggs: Sequence[Aggregation]) -> list[str]:
        return list(dict.fromkeys(a.column for a in aggs if a.column is not None))

    def ensure_table(self, view: FeatureView, aggs: Sequence[Aggregation]) -> None:
        table = window_table(view.name)
        keys = qlist(view.entity_columns)
        cols = self._columns(aggs)
        existing = [r[1] for r in self.con.execute(f"PRAGMA table_info({table})")]
        if not existing:
            extra = "".join(f", {q(c)}" for c in cols)
            self.con.execute(
                f"CREATE TABLE {table} ({keys}, {TS} INTEGER NOT NULL, {DIGEST} BLOB NOT NULL{extra}, "
                f"PRIMARY KEY ({keys}, {TS}, {DIGEST})) WITHOUT ROWID"
            )
            return
        for c in cols:
            if c not in existing:
                self.con.execute(f"ALTER TABLE {table} ADD COLUMN {q(c)}")

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {window_table(name)}")
        self._sql.clear()

    # -- writes ---------------------------------------------------------------------
    def _insert_sql(self, view: FeatureView, cols: list[str]) -> str:
        names = [*view.entity_columns, TS, DIGEST, *cols]
        marks = ", ".join("?" for _ in names)
        return f"INSERT OR IGNORE INTO {window_table(view.name)} ({qlist(names)}) VALUES ({marks})"

    def _prune(self, view: FeatureView, aggs: Sequence[Aggregation], now_us: int) -> None:
        longest = max(_us(a.window) for a in aggs)
        self.con.execute(f"DELETE FROM {window_table(view.name)} WHERE {TS} <= ?", (now_us - longest,))

    def push(self, view: FeatureView, aggs: Sequence[Aggregation], rows: Iterable[Mapping[str, Any]], *, now_us: int,
             transaction: bool = True) -> int:
        """Append events (mappings of every user column of the view); return rows kept.

        Events already out of every window at now_us are not kept; exact duplicates of
        stored events are dropped. transaction=False: inside the caller's transaction.
        """
        self.ensure_table(view, aggs)
        cols = self._columns(aggs)
        longest = max(_us(a.window) for a in aggs)
        encoder = _RowEncoder(view, cols)
        out = []
        for row in rows:
            values = [row.get(c) for c in encoder.user_columns]
            ts_ns = _time_ns(values[encoder.ts], f"'{view.timestamp_field}'")
            if ts_ns // 1000 <= now_us - longest:
                continue
            values[encoder.ts] = ts_ns
            out.append(encoder.encode(values, ts_ns // 1000))
        with self._transaction(own=transaction):
            before = self.con.total_changes
            self.con.executemany(self._insert_sql(view, cols), out)
            kept = self.con.total_changes - before
            self._prune(view, aggs, now_us)
        return kept

    @contextmanager
    def _transaction(self, *, own: bool = True) -> Iterator[None]:
        """One write transaction (own=False: the caller's, already open)."""
        if not own:
            yield
            return
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def materialize(self, con: duckdb.DuckDBPyConnection | None, view: FeatureView, aggs: Sequence[Aggregation],
                    *, now_us: int, source: str | None = None) -> int:
        """Make the view's events exactly the offline events with time > now - longest window.

        con is an open offline-store connection (None: the view has no offline table);
        source names a relation of con holding the view's rows instead of its offline
        table (the Spark engine stages the events it read there).
        """
        self.ensure_table(view, aggs)
        cols = self._columns(aggs)
        longest = max(_us(a.window) for a in aggs)
        encoder = _RowEncoder(view, cols)
        stored: dict[str, str] = {}
        if con is not None and source is not None:
            staged = con.sql(f"SELECT * FROM {q(source)}")
            stored = {str(c): str(t) for c, t in zip(staged.columns, staged.types, strict=True)}
        elif con is not None:
            rows = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [f"fv__{view.name}"]
            ).fetchall()
            stored = {str(c): str(t) for c, t in rows}
        with self._transaction():
            self.con.execute(f"DELETE FROM {window_table(view.name)}")
            kept = 0
            if con is not None and stored:
                ts_type = stored[view.timestamp_field]
                unit = "ns" if is_nanoseconds(ts_type) else "us"
                ts_int = time_int(q(view.timestamp_field), ts_type, unit)
                # Every user column in the encoder's order (NULL when not stored); the event
                # and created times as integer nanoseconds (exact).
                stamps = (view.timestamp_field, view.created_timestamp_field)
                exprs = [
                    "NULL" if c not in stored else time_int(q(c), stored[c], "ns") if c in stamps else q(c)
                    for c in encoder.user_columns
                ]
                bound = (now_us - longest) * (1000 if unit == "ns" else 1)
                cursor = con.execute(
                    f"SELECT {', '.join(exprs)} FROM {offline_table(view.name) if source is None else q(source)} WHERE {ts_int} > ? "
                    f"ORDER BY {qlist(view.entity_columns)}, {ts_int}",  # in primary-key order: appends, not page splits
                    [bound],
                )
                insert = self._insert_sql(view, cols)
                ts_at = encoder.ts
                while batch := cursor.fetchmany(_BATCH):
                    out = [encoder.encode(raw, raw[ts_at] // 1000) for raw in batch]
                    before = self.con.total_changes
                    self.con.executemany(insert, out)
                    kept += self.con.total_changes - before
        return kept

    # -- reads ----------------------------------------------------------------------
    def read_sql(self, view: FeatureView, aggs: Sequence[Aggregation]) -> tuple[str, bool]:
        """The one query for an entity's aggregations, and whether it returns rows
        (stddev needs the values) rather than the aggregates."""
        cache = (view.name, view.entity_columns, tuple(aggs))
        rows = any(a.function == "stddev" for a in aggs)
        sql = self._sql.get(cache)
        if sql is not None:
            return sql, rows
        where = " AND ".join(f"{q(k)} = ?" for k in view.entity_columns)
        table = window_table(view.name)
        if rows:
            cols = qlist(self._columns(aggs))
            sql = f"SELECT {TS}{', ' if cols else ''}{cols} FROM {table} WHERE {where} AND {TS} > ? AND {TS} <= ?"
        else:
            fns = {"count": "count", "sum": "sum", "mean": "avg", "min": "min", "max": "max"}
            exprs = []
            for a in aggs:
                target = q(a.column) if a.column else "*"
                exprs.append(f"{fns[a.function]}({target}) FILTER (WHERE {TS} > ?)")
            sql = f"SELECT {', '.join(exprs)} FROM {table} WHERE {where} AND {TS} > ? AND {TS} <= ?"
        self._sql[cache] = sql
        return sql, rows

    def read(self, view: FeatureView, aggs: Sequence[Aggregation], entity: Mapping[str, Any], *, now_us: int) -> dict[str, Any]:
        """Each aggregation's value for one entity over (now - window, now]."""
        sql, rows = self.read_sql(view, aggs)
        keys = [entity[k] for k in view.entity_columns]
        longest = max(_us(a.window) for a in aggs)
        try:
            if rows:
                found = self.con.execute(sql, [*keys, now_us - longest, now_us]).fetchall()
                return self._from_rows(view, aggs, found, now_us)
            args = [now_us - _us(a.window) for a in aggs]
            values = self.con.execute(sql, [*args, *keys, now_us - longest, now_us]).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return {a.name: (0 if a.function == "count" else None) for a in aggs}
        assert values is not None  # an aggregate query always returns one row
        return {a.name: self._decode(view, a, v) for a, v in zip(aggs, values, strict=True)}

    @staticmethod
    def _decode(view: FeatureView, agg: Aggregation, value: Any) -> Any:
        if value is None or agg.function in ("count", "mean", "stddev"):
            return value
        col_type = view.feature_types.get(agg.column or "") or "DOUBLE"
        if agg.function == "sum":
            return value if types.family(col_type) == "int" else float(value)
        dec = decoder(col_type)
        return dec(value) if dec else value

    def _from_rows(self, view: FeatureView, aggs: Sequence[Aggregation], found: list[tuple[Any, ...]],
                   now_us: int) -> dict[str, Any]:
        cols = self._columns(aggs)
        out: dict[str, Any] = {}
        for a in aggs:
            lo = now_us - _us(a.window)
            inside = [r for r in found if r[0] > lo]
            if a.column is None:
                out[a.name] = len(inside)
                continue
            i = cols.index(a.column) + 1
            values = [r[i] for r in inside if r[i] is not None]
            if a.function == "count":
                out[a.name] = len(values)
            elif not values:
                out[a.name] = None
            elif a.function == "stddev":
                out[a.name] = _stddev([float(v) for v in values])
            elif a.function == "mean":
                out[a.name] = math.fsum(values) / len(values)
            else:
                value = sum(values) if a.function == "sum" else min(values) if a.function == "min" else max(values)
                out[a.name] = self._decode(view, a, value)
        return out


def _stddev(values: list[float]) -> float | None:
    """Sample standard deviation, two-pass (exact enough for values far from zero)."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
