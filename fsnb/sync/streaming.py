"""The streaming path: push -> durable log -> online and offline consumers.

``push`` validates a batch against the view (trying older versions too, so a producer
still sending the previous schema keeps working), appends it to the feature log as
one fsync'd entry, then lets both consumers apply what they have not committed.
Each consumer applies entries in log order and commits its offset afterwards, so a
crash anywhere leaves work that ``sync`` replays (at-least-once). Replays are
harmless because:

- online writes keep the newest (event time, created time, sequence), the sequence
  being derived from the log offset, so an old or repeated entry never wins;
- offline writes are tagged with the entries they came from
  (``<log id>:<first>-<last>``); the offline table itself tells which entries it
  already holds, and ``OfflineStore.write`` refuses a repeated tag.

Everything a consumer would refuse is refused by validation before the append
(``fsnb.validation``). Should an entry still fail to apply (a store written by an
older fsnb, a bug), it does not hold up the log: the consumer applies the entries
one by one, and an entry that fails while the entries after it apply is *set aside*:
recorded with its reason (``set_aside(store)``, the ``set_aside`` column of
``store.freshness()``), announced with an ``EntrySetAside`` warning, and passed over.
A failure that the entries after it share (the store itself unreachable) sets nothing
aside: the consumer stops there and retries at the next push or ``sync()``.

Each entry carries its view's identity (``view_id``: kept across versions, new after
``delete_feature_view``); consumers drop entries of a deleted incarnation, so an old
unapplied push never reaches a new view of the same name.

Nothing here depends on the log backend beyond ``fsnb.backends.sqlite_log.FeatureLog``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from fsnb import aggregation_views
from fsnb.backends.duckdb_pit import latest_per_entity_sql
from fsnb.backends.sqlite_log import (
    CONSUMERS,
    FeatureLog,
    LogEntry,
    SqliteLog,
    consumer_active,
    encode_batch,
    uncommitted,
)
from fsnb.backends.sqlite_online import NAN_TEXT, encode_key_sql, encode_sql, epoch_us_sql
from fsnb.definitions import FeatureView
from fsnb.errors import (
    FsnbError,
    InvalidData,
    InvalidDefinition,
    SchemaMismatch,
    StoreBusy,
    StoreError,
    one_line,
)
from fsnb.sources import to_arrow
from fsnb.sqlnames import ENTRY, offline_table, q
from fsnb.timeutil import now_us
from fsnb.validation import CheckedBatch, check_batch

if TYPE_CHECKING:
    from fsnb.store import FeatureStore

ONLINE, OFFLINE = CONSUMERS
# Online sequence of row i of entry n: (n << 32) + i. Later log positions win ties on
# (event time, created time), as they do offline where rows are numbered in apply order.
_SEQ_SHIFT = 32
_APPLY_CHUNK = 64  # entries read from the log at a time by a consumer
_COMPACT_EVERY = 16  # appends between automatic retention passes
_STATS_EVERY = 5.0  # seconds between full statistics recounts of a pushed view
_INTENT = "applying.offline"  # set while the offline consumer writes, cleared at its commit


class UncommittedLog(UserWarning):
    """The store's feature log holds entries a consumer has not applied yet."""


class EntrySetAside(UserWarning):
    """A log entry failed to apply to one store and was passed over (see set_aside())."""


_SET_ASIDE = "set_aside"  # log setting: JSON list of the entries consumers passed over
_ID_KEY = "view_id:"  # registry kv: the identity of each view (see view_id())
_DELETED_KEY = "deleted_view_id:"  # registry kv: identities of deleted views, with their name


def view_id(store: FeatureStore, name: str, *, create: bool = False) -> str | None:
    """The view's identity: fixed at its first push, kept across versions, dropped by
    delete_feature_view (so a view created later under the name gets a new one)."""
    key = _ID_KEY + name
    if create:
        return str(store.registry.setdefault(key, uuid.uuid4().hex[:16]))
    value = store.registry.get(key)
    return None if value is None else str(value)


def forget_view(store: FeatureStore, name: str) -> None:
    """Called by delete_feature_view: entries still in the log for the view become orphans."""
    identity = view_id(store, name)
    if identity is not None:
        store.registry.set(_DELETED_KEY + identity, name)
        store.registry.delete(_ID_KEY + name)


def _deleted(store: FeatureStore, identity: str) -> bool:
    return store.registry.get(_DELETED_KEY + identity) is not None


def set_aside(store: FeatureStore) -> list[dict[str, Any]]:
    """The entries a consumer passed over: consumer, offset, view, rows, error."""
    raw = log_of(store).get_setting(_SET_ASIDE)
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _record_set_aside(store: FeatureStore, consumer: str, entry: LogEntry, exc: BaseException) -> None:
    reason = one_line(exc)
    records = set_aside(store)
    records.append({"consumer": consumer, "offset": entry.offset, "view": entry.view, "rows": entry.rows, "error": reason})
    log_of(store).set_setting(_SET_ASIDE, json.dumps(records[-1000:]))
    msg = (
        f"fsnb: log entry {entry.offset} ('{entry.view}', {entry.rows} rows) could not be applied to the "
        f"{consumer} store and was set aside ({reason}); the other entries were applied"
    )
    warnings.warn(msg, EntrySetAside, stacklevel=4)


# -- per-store state ------------------------------------------------------------------
def log_of(store: FeatureStore) -> FeatureLog:
    """The store's feature log (opened once by its parts)."""
    return store.parts.log


def _scratch(store: FeatureStore) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for validating and encoding batches (the offline file stays closed)."""
    return store.parts.caches.scratch()


def _crash_point(name: str) -> None:
    """Fault injection for the crash tests: FSNB_CRASH_AT=<name> kills the process here."""
    if os.environ.get("FSNB_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def announce_uncommitted(store: FeatureStore) -> None:
    """Called when a store opens: say so if a previous process left entries unapplied."""
    if store.config.log not in (None, "sqlite"):
        log = log_of(store)
        end = log.end_offset()
        lag: dict[str, int] | None = {c: end - log.committed(c) for c in CONSUMERS}
    else:
        lag = uncommitted(store.path)
    if not lag:
        return
    # Entries a live process is applying right now (or a producer session will) are no news.
    lag = {c: n for c, n in lag.items() if n and not consumer_active(store.path, c)}
    if not lag:
        return
    parts = [f"{n} {'entry' if n == 1 else 'entries'} not applied to the {c} store" for c, n in lag.items() if n]
    msg = (
        f"fsnb: the feature log of {store.path} has {' and '.join(parts)} "
        "(a pushing process stopped early); run store.sync() to apply them"
    )
    warnings.warn(msg, UncommittedLog, stacklevel=3)


# -- push ---------------------------------------------------------------------------
def push(store: FeatureStore, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
    """Validate, append durably, apply to both stores; return the entry's log offset."""
    latest = store.registry.latest(name)
    if latest.view.sync != "stream":
        msg = (
            f"feature view '{name}' is kept in sync by materialization; register it with "
            f"sync='stream' (or %%feature_view --stream) to push to it, or use store.ingest('{name}', data)"
        )
        raise InvalidDefinition(msg)
    table = to_arrow(data, namespace)
    version, checked = _match_version(store, name, table)
    view = checked.view
    if version == latest.version and view.to_dict() != latest.view.to_dict():
        # First data of a view registered without a schema: fix its types in place.
        store.registry.put(view, in_place_version=version)
    columns = [*view.system_columns, *view.feature_names]
    batch = checked.table.select(columns)
    log = log_of(store)
    payload = encode_batch(batch)
    identity = view_id(store, name, create=True) or ""
    offset = log.append(name, version, payload, batch.num_rows, identity)
    _crash_point("after_append")
    session = store.parts.caches.producer
    # The entry just appended need not be read back and decoded for the online consumer.
    just_appended = LogEntry(offset, name, version, batch.num_rows, now_us(), payload, batch, identity)
    apply_pending(store, ONLINE, just_appended)
    compact_now = offset % _COMPACT_EVERY == 0
    if session is None:
        try:
            apply_pending(store, OFFLINE)
        except StoreBusy as exc:
            # The entry is durable and online already: report the lag, do not fail the push.
            msg = f"entry {offset} is durable and online, but not yet offline: {exc}; it is applied at the next push or store.sync()"
            warnings.warn(msg, UncommittedLog, stacklevel=3)
    elif log.end_offset() - log.committed(OFFLINE) >= session.offline_every:
        compact_now = bool(apply_pending(store, OFFLINE)) or compact_now  # after each group
    if compact_now:
        compact(store)
    return offset


def _match_version(store: FeatureStore, name: str, table: pa.Table) -> tuple[int, CheckedBatch]:
    """The newest version of the view the batch fits; nothing matching is an error."""
    versions = list(reversed(store.registry.versions(name)))
    errors: list[tuple[int, FsnbError]] = []
    for vv in versions:
        try:
            return vv.version, _check(store, vv.view, table)
        except SchemaMismatch as exc:
            errors.append((vv.version, exc))
    if len(errors) == 1:
        raise errors[0][1]
    reasons = "; ".join(f"version {v}: {str(e).split('; ')[0]}" for v, e in errors)
    msg = f"the batch matches no version of '{name}' ({reasons}); nothing was appended"
    raise SchemaMismatch(msg)


def _check(store: FeatureStore, view: FeatureView, table: pa.Table) -> CheckedBatch:
    """check_batch, remembering what depends only on the schema: a producer sends the
    same schema over and over, and only emptiness and null keys/times depend on the rows."""
    memo: dict[tuple[str, Any], Any] = store.parts.caches.checked
    key = (view.definition_hash(), table.schema)
    known = memo.get(key)
    if known is not None and table.num_rows and not any(table.column(c).null_count for c in view.system_columns):
        return CheckedBatch(table, known.view, known.column_types)
    checked = check_batch(_scratch(store), view, table)
    if len(memo) > 64:
        memo.clear()
    memo[key] = checked
    return checked


# -- consumers ----------------------------------------------------------------------
def apply_pending(store: FeatureStore, consumer: str, just_appended: LogEntry | None = None) -> int:
    """Apply every entry the consumer has not committed, in order; return how many.

    just_appended: the entry this process has just appended, used instead of reading
    it back when it is exactly the next one (the embedded log only: a Redis consumer
    must read through its group so that the group knows what it was given).
    """
    log = log_of(store)
    if not isinstance(log, SqliteLog):
        just_appended = None
    applied = 0
    with log.consumer_lock(consumer):
        while True:
            start = log.committed(consumer) + 1
            if just_appended is not None and just_appended.offset == start:
                entries = [just_appended]
            else:
                entries = log.read_from(start, _APPLY_CHUNK)
            just_appended = None
            if not entries:
                break
            done, error = _apply_chunk(store, consumer, entries)
            if done is not None:
                log.commit(consumer, done)
                if consumer == OFFLINE:
                    log.set_setting(_INTENT, "")
                applied += sum(1 for e in entries if e.offset <= done)
            if error is not None:
                raise error
            if len(entries) < _APPLY_CHUNK:
                break
    return applied


def _apply_chunk(
    store: FeatureStore, consumer: str, entries: Sequence[LogEntry]
) -> tuple[int | None, BaseException | None]:
    """Apply entries; return the offset to commit (None: nothing) and the error to raise.

    All at once first (the normal case, one transaction). If that fails, one by one:
    an entry that fails while a later one applies is set aside (the failure is its
    own); failures with no success after them are not (the store may be what fails),
    so the consumer commits up to the last entry handled and reports the error.
    """
    try:
        apply_entries(store, consumer, entries)
        return entries[-1].offset, None
    except StoreBusy as exc:
        return None, exc
    except Exception as exc:
        if len(entries) == 1:
            return None, _consumer_error(consumer, entries[0], exc)
    done: int | None = None
    failed: list[tuple[LogEntry, Exception]] = []
    for entry in entries:
        try:
            apply_entries(store, consumer, [entry])
        except StoreBusy as exc:
            return done, exc
        except Exception as exc:
            failed.append((entry, exc))
            continue
        for bad, reason in failed:
            _record_set_aside(store, consumer, bad, reason)
        failed.clear()
        done = entry.offset
    if failed:
        return done, _consumer_error(consumer, *failed[0])
    return done, None


def _consumer_error(consumer: str, entry: LogEntry, exc: Exception) -> Exception:
    if isinstance(exc, StoreError):
        return exc
    msg = (
        f"the {consumer} store could not apply log entry {entry.offset} ('{entry.view}'): {one_line(exc)}; "
        "the entry is durable and is retried at the next push or store.sync() "
        "(set aside if the entries after it apply)"
    )
    error = StoreError(msg)
    error.__cause__ = exc
    return error


def apply_entries(store: FeatureStore, consumer: str, entries: Sequence[LogEntry]) -> None:
    """Apply entries to one store without committing (callers commit; replays are harmless)."""
    if consumer == ONLINE:
        _apply_online(store, entries)
    elif consumer == OFFLINE:
        _apply_offline(store, entries)
    else:
        msg = f"unknown consumer {consumer!r}; use 'online' or 'offline'"
        raise InvalidDefinition(msg)


class _Views:
    """Each entry's version and the view it is applied under (latest plus older features)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self._cache: dict[tuple[str, int], tuple[FeatureView, dict[str, str | None]] | None] = {}

        self._dead: dict[str, bool] = {}

    def get(self, name: str, version: int, identity: str = "") -> tuple[FeatureView, dict[str, str | None]] | None:
        """(view to apply under, the type of each of its features, None where not known yet);
        None when the entry's view was deleted (identity: the entry's view_id)."""
        if identity:
            if identity not in self._dead:
                self._dead[identity] = _deleted(self.store, identity)
            if self._dead[identity]:
                return None  # pushed to a view since deleted: a new view of the name is another view
        key = (name, version)
        if key not in self._cache:
            self._cache[key] = self._load(name, version)
        return self._cache[key]

    def _load(self, name: str, version: int) -> tuple[FeatureView, dict[str, str | None]] | None:
        if not self.store.registry.has(name):
            return None  # the view was deleted after the push: its entries have nowhere to go
        versions = {v.version: v.view for v in self.store.registry.versions(name)}
        latest = versions[max(versions)]
        own = versions.get(version, latest)
        feats = dict(own.feature_types)
        for f, t in latest.feature_types.items():
            feats.setdefault(f, t)
        target = replace(
            latest,
            features={f: t for f, t in feats.items() if t} if all(feats.values()) else list(feats),
            entity_types=latest.entity_types or own.entity_types,
        )
        return target, feats


def _apply_online(store: FeatureStore, entries: Sequence[LogEntry]) -> None:
    views = _Views(store)
    online = store.online
    con = _scratch(store)
    online.begin()
    try:
        for entry in entries:
            found = views.get(entry.view, entry.version, entry.view_id)
            if found is None or not found[0].online:
                continue
            table = entry.table()
            target = _typed(store, *found, table)
            if target.aggregations:  # hook: fsnb.aggregation_views (events into the online windows)
                aggregation_views.push_online(online, target, table)
                continue
            rows = _online_rows(con, target, table, entry.offset)
            online.ensure_table(target)
            online.write_rows(target, rows)
        _crash_point("mid_online_apply")
        online.commit()
    except BaseException:
        online.rollback()
        raise
    store._readers.clear()
    _crash_point("after_online_apply")


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


def _apply_offline(store: FeatureStore, entries: Sequence[LogEntry]) -> None:
    views = _Views(store)
    log = log_of(store)
    touched: dict[str, list[tuple[int, pa.Table]]] = {}  # view -> (rows written, table) per write
    offsets = [e.offset for e in entries]
    # Normally entries continue where the last commit left off and nothing needs
    # checking. A previous applier that died between writing and committing left its
    # intent; a replay or an out-of-order delivery starts at or before the commit: then
    # ask the offline tables which entries they already hold.
    check = (
        bool(log.get_setting(_INTENT))
        or offsets[0] <= log.committed(OFFLINE)
        or any(b <= a for a, b in itertools.pairwise(offsets))
    )
    log.set_setting(_INTENT, str(max(offsets)))
    with store.offline.connect() as con:
        held: dict[str, list[tuple[int, int]]] = {}
        group: list[tuple[LogEntry, pa.Table]] = []

        def flush() -> None:
            if not group:
                return
            first, last = group[0][0].offset, group[-1][0].offset
            found = views.get(group[0][0].view, group[0][0].version, group[0][0].view_id)
            assert found is not None
            target = _typed(store, *found, group[0][1])
            tables = [_conform(t, target) for _, t in group]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            # The tag names a run of adjacent log positions, all of this view: it says
            # exactly which entries the rows came from.
            written = store.offline.write(CheckedBatch(table, target, {}), entry=f"{log.log_id}:{first}-{last}")
            touched.setdefault(target.name, []).append((written, table.select([target.timestamp_field])))
            group.clear()
            _crash_point("mid_offline_apply")

        for entry in entries:
            found = views.get(entry.view, entry.version, entry.view_id)
            if found is None:
                continue
            if check:
                if entry.view not in held:
                    held[entry.view] = _offline_runs(store, con, entry.view, log.log_id, min(offsets))
                if any(a <= entry.offset <= b for a, b in held[entry.view]):
                    continue  # already written (before a crash, or by an earlier delivery)
            table = entry.table()
            if group:
                prev, prev_table = group[-1]
                adjacent = entry.offset == prev.offset + 1
                same = (entry.view, entry.version) == (prev.view, prev.version) and table.schema == prev_table.schema
                if not (adjacent and same):
                    flush()
            group.append((entry, table))
        flush()
        # Each write above committed its statistics and mirrored them to the registry.
        session = store.parts.caches.producer
        if session is not None:
            session.stale.update(touched)
    _crash_point("after_offline_apply")


def _typed(store: FeatureStore, view: FeatureView, hints: dict[str, str | None], table: pa.Table) -> FeatureView:
    """The view with key and feature types (taken from the entry if the registry lacks them)."""
    if view.schema_known:
        return view
    present = set(table.column_names)
    known = {f: t for f, t in hints.items() if t is not None}
    probe = replace(view, features=[f for f in view.feature_names if f in present])
    inferred = _check(store, probe, table).view
    # A feature without a type that this entry lacks never had a value anywhere (the first
    # push carrying it fixes its type): leave it out rather than guess a column type.
    features = {
        f: known.get(f) or inferred.feature_types.get(f) or "VARCHAR"
        for f in view.feature_names
        if f in known or f in present
    }
    return replace(view, features=features, entity_types=view.entity_types or inferred.entity_types)


def _conform(table: pa.Table, view: FeatureView) -> pa.Table:
    """Add the features a later version introduced (null for entries written before it)."""
    n = table.num_rows
    for f in view.feature_names:
        if f not in table.column_names:
            table = table.append_column(f, pa.nulls(n))
    return table.select([*view.system_columns, *view.feature_names])


def _offline_runs(
    store: FeatureStore, con: duckdb.DuckDBPyConnection, name: str, log_id: str, since: int
) -> list[tuple[int, int]]:
    """The (first, last) log positions of the runs the view's offline table holds, ending at or after since."""
    if not store.offline.table_exists(con, name):
        return []
    if ENTRY not in store.offline.table_columns(con, name):
        return []
    rows = con.execute(
        f"SELECT DISTINCT CAST(split_part(r, '-', 1) AS BIGINT), CAST(split_part(r, '-', 2) AS BIGINT) "
        f"FROM (SELECT substr({q(ENTRY)}, ?) AS r FROM {offline_table(name)} WHERE starts_with({q(ENTRY)}, ?)) "
        f"WHERE CAST(split_part(r, '-', 2) AS BIGINT) >= ?",
        [len(log_id) + 2, f"{log_id}:", since],
    ).fetchall()
    return [(int(a), int(b)) for a, b in rows]


# -- producer sessions ----------------------------------------------------------------
@dataclass
class _Producer:
    offline_every: int
    stale: set[str] = field(default_factory=set)  # views whose statistics to refresh at the end


@contextmanager
def producer(store: FeatureStore, *, offline_every: int = 64) -> Iterator[None]:
    """Push many batches fast: keep the offline store open and apply to it in groups.

    Inside the block every push is still durable and online at once when it returns;
    the offline store trails by at most ``offline_every`` entries and has everything
    when the block ends (or at ``store.sync()``).
    """
    if offline_every < 1:
        msg = f"offline_every must be at least 1 (got {offline_every})"
        raise InvalidData(msg)
    if store.parts.caches.producer is not None:
        msg = "a producer session is already open on this store; nest pushes inside it instead"
        raise InvalidDefinition(msg)
    session = _Producer(offline_every)
    store.parts.caches.producer = session
    try:
        # The offline consumer's lock first, then the offline database: the order every
        # pusher uses, so a concurrent pusher waits for the session instead of deadlocking.
        with log_of(store).consumer_lock(OFFLINE), store.offline.connect():
            try:
                yield
            finally:
                apply_pending(store, OFFLINE)
                for name in session.stale:
                    if store.registry.has(name):
                        store._refresh_stats(store.registry.latest(name).view)
                compact(store)
    finally:
        store.parts.caches.producer = None



# -- sync and retention ---------------------------------------------------------------
def sync(store: FeatureStore) -> dict[str, int]:
    """Apply what each consumer has not committed, then drop entries both have."""
    online = apply_pending(store, ONLINE)
    offline = apply_pending(store, OFFLINE)
    truncated = compact(store)
    for view in store.list_feature_views():
        if view.sync == "stream" and view.schema_known:
            store._refresh_stats(view)  # exact counts, entities included
    log = log_of(store)
    return {"online": online, "offline": offline, "end_offset": log.end_offset(), "truncated": truncated}


def set_retention(store: FeatureStore, *, keep_entries: int = 0, keep_seconds: float = 0.0) -> None:
    """How much of the consumed log to keep (the offline store is the history).

    Entries every consumer committed are dropped unless they are among the last
    ``keep_entries`` or younger than ``keep_seconds``. Unconsumed entries are never dropped.
    """
    if keep_entries < 0 or keep_seconds < 0:
        msg = "keep_entries and keep_seconds must not be negative"
        raise InvalidData(msg)
    log_of(store).set_setting("retention", json.dumps({"keep_entries": int(keep_entries), "keep_seconds": float(keep_seconds)}))


def retention(store: FeatureStore) -> dict[str, float]:
    raw = log_of(store).get_setting("retention")
    return json.loads(raw) if raw else {"keep_entries": 0, "keep_seconds": 0.0}


def compact(store: FeatureStore) -> int:
    """Drop log entries both consumers committed, within the retention settings."""
    log = log_of(store)
    policy = retention(store)
    cut = min(log.committed(c) for c in CONSUMERS) + 1
    cut = min(cut, log.end_offset() - int(policy["keep_entries"]) + 1)
    if policy["keep_seconds"]:
        cutoff = now_us() - int(policy["keep_seconds"] * 1_000_000)
        young = log.first_offset_since(cutoff)
        if young is not None:
            cut = min(cut, young)
    if cut <= log.start_offset():
        return 0
    return log.truncate_before(cut)


# -- freshness and skew ---------------------------------------------------------------
def _from_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, timezone.utc)


def _online_rows_now(store: FeatureStore, view: FeatureView) -> list[tuple[Any, ...]]:
    """Every online row of the view as (keys..., ts_us, features...), through the online
    store's own interface (SQLite or Redis); features it lacks a column for are None."""
    columns = store.online.columns(view.name)
    if not columns:
        return []
    present = [f for f in view.feature_names if f in columns]
    if len(present) == len(view.feature_names):
        return store.online.dump(view)
    rows = store.online.dump(replace(view, features=present or None))
    nkeys = len(view.entity_columns) + 1
    where = {f: i for i, f in enumerate(present)}
    return [
        (*r[:nkeys], *(r[nkeys + where[f]] if f in where else None for f in view.feature_names)) for r in rows
    ]


def _online_latest_us(store: FeatureStore, view: FeatureView) -> int | None:
    latest = getattr(store.online, "latest_event_us", None)
    if latest is not None:
        return latest(view.name)  # type: ignore[no-any-return]
    ts = [r[len(view.entity_columns)] for r in _online_rows_now(store, view)]
    return max(ts) if ts else None


def freshness(store: FeatureStore) -> pl.DataFrame:
    """Per view: newest event time offline and online, log end, each consumer's offset
    and lag, and how many of its entries a consumer set aside (see set_aside())."""
    log = log_of(store)
    passed_over: dict[str, int] = {}
    for record in set_aside(store):
        passed_over[str(record.get("view"))] = passed_over.get(str(record.get("view")), 0) + 1
    end = log.end_offset()
    committed = {c: log.committed(c) for c in CONSUMERS}
    lag_by_view: dict[str, dict[str, int]] = {}
    for consumer, done in committed.items():
        for _, pending_view, _rows in log.pending(done):
            lag_by_view.setdefault(pending_view, {ONLINE: 0, OFFLINE: 0})[consumer] += 1
    views = store.list_feature_views()
    offline_latest: dict[str, datetime | None] = {}
    with store.offline.connect() as con:
        for view in views:
            if store.offline.table_exists(con, view.name):
                (value,) = con.execute(f"SELECT max({q(view.timestamp_field)}) FROM {offline_table(view.name)}").fetchall()[0]
                offline_latest[view.name] = value
    records = []
    for view in views:
        online_latest = _from_us(_online_latest_us(store, view)) if view.online else None
        lag = lag_by_view.get(view.name, {ONLINE: 0, OFFLINE: 0})
        records.append(
            {
                "view": view.name,
                "sync": view.sync,
                "offline_latest": offline_latest.get(view.name),
                "online_latest": online_latest,
                "last_push": _from_us(log.last_appended_us(view.name)),
                "log_end": end,
                "online_offset": committed[ONLINE],
                "offline_offset": committed[OFFLINE],
                "online_lag": lag[ONLINE] if view.online else None,
                "offline_lag": lag[OFFLINE],
                "set_aside": passed_over.get(view.name, 0),
            }
        )
    schema: dict[str, Any] = {
        "view": pl.String,
        "sync": pl.String,
        "offline_latest": pl.Datetime("us", "UTC"),
        "online_latest": pl.Datetime("us", "UTC"),
        "last_push": pl.Datetime("us", "UTC"),
        "log_end": pl.Int64,
        "online_offset": pl.Int64,
        "offline_offset": pl.Int64,
        "online_lag": pl.Int64,
        "offline_lag": pl.Int64,
        "set_aside": pl.Int64,
    }
    return pl.DataFrame(records, schema=schema)


@dataclass
class SkewReport:
    """Online vectors compared with the offline point-in-time value at ``as_of``."""

    view: str
    as_of: datetime
    keys: int  # keys compared (online or offline)
    mismatches: int
    details: pl.DataFrame  # one row per mismatching key: keys, kind, online/offline event time

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def __repr__(self) -> str:
        kinds = ""
        if self.mismatches:
            counts = self.details.group_by("kind").len().sort("kind").rows()
            kinds = " (" + ", ".join(f"{k}: {n}" for k, n in counts) + ")"
        return f"<SkewReport {self.view}: {self.mismatches} mismatches in {self.keys} keys{kinds}>"


def check_skew(store: FeatureStore, name: str) -> SkewReport:
    """Compare every online vector with the offline value a training set would get now.

    Per key: the offline row with the greatest event time not after now (ties as the
    point-in-time join breaks them) against the stored online row, event time and every
    feature, both encoded as the online store holds them. TTL is left out on purpose:
    it hides old values on both sides alike, so comparing the stored rows is stricter.
    """
    view = store.registry.latest(name).view
    if not view.online:
        msg = f"feature view '{name}' is offline-only; it has no online values to compare"
        raise InvalidDefinition(msg)
    if view.aggregations:  # hook: fsnb.aggregation_views
        return aggregation_views.check_skew(store.offline, store.online, view)  # type: ignore[no-any-return]
    as_of = datetime.now(timezone.utc)
    keys = list(view.entity_columns)
    feats = list(view.feature_names)
    offline: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    if view.schema_known:
        feature_types = view.feature_types
        with store.offline.connect() as con:
            if store.offline.table_exists(con, name):
                existing = store.offline.table_columns(con, name)
                ts_us = epoch_us_sql(q(view.timestamp_field), existing[view.timestamp_field])
                select = ", ".join(
                    [
                        *(encode_key_sql(k, (view.entity_types or {}).get(k)) for k in keys),
                        ts_us,
                        *(encode_sql(f, feature_types.get(f) or "VARCHAR", nan=True) for f in feats),
                    ]
                )
                present = [f for f in feats if f in existing]
                inner = latest_per_entity_sql(
                    view,
                    [*present, *([view.created_timestamp_field] if view.created_timestamp_field else [])],
                    where=f"{q(view.timestamp_field)} <= ?",
                )
                if len(present) < len(feats):
                    select = ", ".join(
                        [*(encode_key_sql(k, (view.entity_types or {}).get(k)) for k in keys), ts_us]
                        + [encode_sql(f, feature_types.get(f) or "VARCHAR", nan=True) if f in present else "NULL" for f in feats]
                    )
                for row in con.execute(f"SELECT {select} FROM ({inner})", [as_of]).fetchall():
                    offline[tuple(row[: len(keys)])] = tuple(row[len(keys) :])
    online = {tuple(row[: len(keys)]): tuple(row[len(keys) :]) for row in _online_rows_now(store, view)}
    details: list[dict[str, Any]] = []
    for key in dict.fromkeys([*offline, *online]):
        on, off = online.get(key), offline.get(key)
        if on == off:
            continue
        if on is None:
            kind = "missing online"
        elif off is None:
            kind = "missing offline"
        elif on[0] != off[0]:
            kind = "event time"
        else:
            kind = "value"
        details.append(
            {
                **dict(zip(keys, key, strict=True)),
                "kind": kind,
                "online_event_time": _from_us(on[0]) if on else None,
                "offline_event_time": _from_us(off[0]) if off else None,
            }
        )
    empty = {**dict.fromkeys(keys, pl.String), "kind": pl.String}
    frame = pl.DataFrame(details) if details else pl.DataFrame(schema=empty)
    return SkewReport(name, as_of, len({*offline, *online}), len(details), frame)

