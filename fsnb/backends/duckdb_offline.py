"""The offline store: every feature row ever ingested, in one DuckDB database file.

DuckDB lets one process at a time open a database file for writing, so fsnb opens
it per operation and closes it right after: a kernel, the CLI and an exported
pipeline can take turns on one store. A process that finds it held waits (with a
deadline) instead of failing at once.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from fsnb import aggregation_sql
from fsnb.backends.contracts import Journal
from fsnb.backends.duckdb_pit import (
    LABELS,
    latest_per_entity_filter,
    latest_per_entity_sql,
    point_in_time_sql,
)
from fsnb.backends.duckdb_write import Written as Written  # re-exported: what write() returns
from fsnb.backends.duckdb_write import stats_dict, write_batch
from fsnb.definitions import FeatureView
from fsnb.errors import StoreBusy, StoreError, one_line
from fsnb.sqlnames import (
    ENTRY,
    EVENT_TIME_TYPE,
    INGESTED_AT,
    OFFLINE_META,
    SEQ,
    keys_table,
    offline_table,
    q,
    qlist,
)
from fsnb.validation import CheckedBatch, arrow_duck_types

if TYPE_CHECKING:
    from fsnb.aggregation import Aggregation
    from fsnb.selection import ViewSelection

_META = OFFLINE_META
# Columns the meta table gained after its first release (added to older stores on open):
# the registry version and definition hash last committed with data, the token of the
# last committed write (fsnb.commit), and the view's statistics, kept in each write's
# transaction (rows NULL: not yet counted, an older store).
_META_COLUMNS = {
    "version": "BIGINT",
    "definition_hash": "VARCHAR",
    "write_token": "VARCHAR",
    "rows": "BIGINT",
    "entities": "BIGINT",
    "min_ts": "TIMESTAMPTZ",
    "max_ts": "TIMESTAMPTZ",
    "last_ingested": "TIMESTAMPTZ",
}
# How DuckDB says a database file is damaged (rather than held, missing or not permitted).
_DAMAGE = re.compile(r"not a valid DuckDB database|Could not read|corrupt|checksum|truncat", re.IGNORECASE)
# DuckDB 2 refuses new work on a connection with an unfinished result, so every
# query here is read with fetchall(), never fetchone().




class OfflineStore:
    duckdb_tables = True  # each view's history is the table fv__<view> of connect()'s connection

    def __init__(self, path: Path, *, lock_timeout: float = 60.0, journal: Journal | None = None) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.journal = journal
        self._con: duckdb.DuckDBPyConnection | None = None
        self._known_columns: dict[str, set[str]] = {}
        self._thread_lock = threading.RLock()

    # -- connections ------------------------------------------------------------
    @contextmanager
    def connect(self, *, timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the database (waiting for another process to let go), yield, close.

        Nested uses in one thread share one connection so a caller can compose
        operations; other threads of the process wait their turn (a DuckDB connection
        serves one call at a time, and concurrent writers would conflict anyway).
        """
        with self._thread_lock:
            if self._con is not None:
                yield self._con
                return
            con = self._open(self.lock_timeout if timeout is None else timeout)
            self._con = con
            try:
                if self.journal is not None:
                    # This process holds the file now: a write still in flight is a dead writer's.
                    self.journal.recover(con)
                yield con
            except duckdb.IOException as exc:
                # A damaged file can open and fail on its first read of a lost block.
                if str(self.path) in str(exc) and _DAMAGE.search(str(exc)):
                    raise _damaged(self.path, one_line(exc)) from None
                raise
            finally:
                self._con = None
                con.close()

    def _open(self, lock_timeout: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + lock_timeout
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except (duckdb.SerializationException, duckdb.InternalException, duckdb.InvalidInputException) as exc:
                raise _damaged(self.path, one_line(exc)) from None
            except duckdb.IOException as exc:
                text = str(exc)
                if _DAMAGE.search(text):
                    raise _damaged(self.path, one_line(exc)) from None
                if not re.search(r"\block", text, re.IGNORECASE):  # "lock", not "block"
                    msg = f"cannot open the offline store {self.path}: {text.splitlines()[0]}"
                    raise StoreError(msg) from None
                if time.monotonic() >= deadline:
                    holder = _lock_holder(text)
                    msg = (
                        f"the offline store {self.path} is held by another process{holder} for more than "
                        f"{lock_timeout:g}s; wait for it to finish or close that notebook's kernel"
                    )
                    raise StoreBusy(msg) from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.25)
        try:
            # Naive timestamps mean UTC: casts to TIMESTAMPTZ must not depend on the machine's zone.
            con.execute("SET TimeZone = 'UTC'")
            # DuckDB's own progress bar prints to stdout, in the middle of notebook output.
            con.execute("SET enable_progress_bar = false")
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} (name VARCHAR PRIMARY KEY, next_seq BIGINT NOT NULL, has_ties BOOLEAN NOT NULL)"
            )
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [_META]
            ).fetchall()}
            for column, kind in _META_COLUMNS.items():
                if column not in have:
                    con.execute(f"ALTER TABLE {_META} ADD COLUMN {q(column)} {kind}")
        except duckdb.Error as exc:
            con.close()
            raise _damaged(self.path, one_line(exc)) from None
        return con

    # -- schema ----------------------------------------------------------------
    @staticmethod
    def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
        row = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [f"fv__{name}"]
        ).fetchall()[0]
        return bool(row and row[0])

    @staticmethod
    def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [f"fv__{name}"],
        ).fetchall()
        return {c: t for c, t in rows}

    def ensure_table(self, con: duckdb.DuckDBPyConnection, view: FeatureView) -> None:
        """Create the view's table, or add columns that a new version introduced."""
        entity_types = view.entity_types or {}
        wanted: dict[str, str] = {c: entity_types[c] for c in view.entity_columns}
        # Event and created times keep nanoseconds, so they compare exactly (docs/architecture.md, "Point-in-time rules").
        wanted[view.timestamp_field] = EVENT_TIME_TYPE
        if view.created_timestamp_field:
            wanted[view.created_timestamp_field] = EVENT_TIME_TYPE
        for f, t in view.feature_types.items():
            wanted[f] = t or "VARCHAR"
        table = offline_table(view.name)
        if self._known_columns.get(view.name, set()) >= wanted.keys():
            return  # created or checked earlier by this process: no catalog query per write
        if not self.table_exists(con, view.name):
            cols = ", ".join(f"{q(c)} {t}" for c, t in wanted.items())
            con.execute(
                f"CREATE TABLE {table} ({cols}, {q(SEQ)} BIGINT NOT NULL, {q(INGESTED_AT)} TIMESTAMPTZ NOT NULL, {q(ENTRY)} VARCHAR)"
            )
            con.execute(f"INSERT OR IGNORE INTO {_META} (name, next_seq, has_ties) VALUES (?, 0, false)", [view.name])
            self._known_columns[view.name] = set(wanted)
            return
        existing = self.table_columns(con, view.name)
        for c, t in wanted.items():
            if c not in existing:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {q(c)} {t}")
            elif t == EVENT_TIME_TYPE and existing[c] != t:
                _upgrade_time_column(con, view.name, c)
        con.execute(f"INSERT OR IGNORE INTO {_META} (name, next_seq, has_ties) VALUES (?, 0, false)", [view.name])
        self._known_columns[view.name] = set(existing) | set(wanted)

    def stage_latest(self, con: duckdb.DuckDBPyConnection, view: FeatureView, *,
                     start: datetime | None = None, end: datetime | None = None) -> None:
        """Nothing to stage: the view's table is in this database (the Spark engine's stages it)."""

    def stage_entity(self, con: duckdb.DuckDBPyConnection, view: FeatureView, key: Mapping[str, Any]) -> None:
        """Nothing to stage (as stage_latest)."""

    def forget_columns(self, name: str) -> None:
        """Forget what this process knows of the view's columns (a write rolled back)."""
        self._known_columns.pop(name, None)

    def drop(self, name: str) -> None:
        self._known_columns.pop(name, None)
        with self.connect() as con:
            con.execute(f"DROP TABLE IF EXISTS {offline_table(name)}")
            con.execute(f"DROP TABLE IF EXISTS {keys_table(name)}")
            con.execute(f"DELETE FROM {_META} WHERE name = ?", [name])

    # -- writes ----------------------------------------------------------------
    def write(
        self,
        batch: CheckedBatch,
        *,
        replace: bool = False,
        entry: str | None = None,
        ingested_at: datetime | None = None,
        version: int | None = None,
        publish: bool = False,
    ) -> int:
        """Append a validated batch in one transaction; return the rows written.

        Exact duplicates (within the batch or of stored rows) are dropped. With
        replace=True the view's rows become exactly the batch's (rows already stored
        keep their ingestion time). With entry set, a replay of the same log entry
        writes nothing. The view's statistics change in the same transaction.

        publish=True: batch.view is a definition the registry shows (as ``version``)
        only once these rows are committed; the journal makes the two commit together
        (fsnb.commit). Returns after the commit
        point even if mirroring to the registry failed (that is a warning).
        """
        return write_batch(
            self, batch, replace=replace, entry=entry, ingested_at=ingested_at, version=version, publish=publish
        )

    def committed_stats(self, con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any] | None:
        """The statistics the last committed write recorded (None: not counted yet)."""
        found = con.execute(
            f"SELECT rows, entities, min_ts, max_ts, last_ingested FROM {_META} WHERE name = ?", [name]
        ).fetchall()
        if not found or found[0][0] is None:
            return None
        return stats_dict(*found[0])

    def committed_write(self, con: duckdb.DuckDBPyConnection, name: str) -> str | None:
        """The token of the view's last committed write (fsnb.commit)."""
        found = con.execute(f"SELECT write_token FROM {_META} WHERE name = ?", [name]).fetchall()
        return str(found[0][0]) if found and found[0][0] is not None else None

    @staticmethod
    def has_rows(con: duckdb.DuckDBPyConnection, name: str) -> bool:
        """Whether the view's offline table holds any row (asked of the table, not of a count)."""
        if not OfflineStore.table_exists(con, name):
            return False
        return bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {offline_table(name)})").fetchall()[0][0])

    # -- reads -----------------------------------------------------------------
    def meta(self, con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, bool]:
        rows = con.execute(f"SELECT next_seq, has_ties FROM {_META} WHERE name = ?", [name]).fetchall()
        row = rows[0] if rows else None
        return (int(row[0]), bool(row[1])) if row else (0, False)


    def read(self, view: FeatureView, start: Any = None, end: Any = None, *, system: bool = False) -> pa.Table:
        with self.connect() as con:
            if not self.table_exists(con, view.name):
                return pa.table({})
            existing = self.table_columns(con, view.name)
            cols = [c for c in [*view.system_columns, *view.feature_names] if c in existing]
            if system:
                cols += [INGESTED_AT, SEQ]
            where, params = [], []
            # start/end: integer nanoseconds since the epoch (UTC), compared exactly.
            if start is not None:
                where.append(f"{q(view.timestamp_field)} >= CAST(make_timestamp_ns(?) AS TIMESTAMPTZ_NS)")
                params.append(start)
            if end is not None:
                where.append(f"{q(view.timestamp_field)} <= CAST(make_timestamp_ns(?) AS TIMESTAMPTZ_NS)")
                params.append(end)
            sql = f"SELECT {qlist(cols)} FROM {offline_table(view.name)}"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += f" ORDER BY {q(view.timestamp_field)}, {q(SEQ)}"
            return con.sql(sql, params=params).to_arrow_table()

    @staticmethod
    def entry_runs(con: duckdb.DuckDBPyConnection, name: str, log_id: str, since: int) -> list[tuple[int, int]]:
        """The (first, last) log positions of the entry runs the view's table holds that end
        at or after since (written with ``entry='<log id>:<first>-<last>'``)."""
        if not OfflineStore.table_exists(con, name) or ENTRY not in OfflineStore.table_columns(con, name):
            return []
        rows = con.execute(
            f"SELECT DISTINCT CAST(split_part(r, '-', 1) AS BIGINT), CAST(split_part(r, '-', 2) AS BIGINT) "
            f"FROM (SELECT substr({q(ENTRY)}, ?) AS r FROM {offline_table(name)} WHERE starts_with({q(ENTRY)}, ?)) "
            f"WHERE CAST(split_part(r, '-', 2) AS BIGINT) >= ?",
            [len(log_id) + 2, f"{log_id}:", since],
        ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    @staticmethod
    def latest_event_time(con: duckdb.DuckDBPyConnection, view: FeatureView) -> datetime | None:
        """The greatest event time the view's table holds (None: no table or no rows)."""
        if not OfflineStore.table_exists(con, view.name):
            return None
        (value,) = con.execute(f"SELECT max({q(view.timestamp_field)}) FROM {offline_table(view.name)}").fetchall()[0]
        return value  # type: ignore[no-any-return]

    @staticmethod
    def latest_per_entity(
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        columns: list[str],
        *,
        start: Any = None,
        end: Any = None,
        since_seq: int | None = None,
        after: Any = None,
        select: list[str] | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """Each key's row with the greatest event time in [start, end] (ties: newest
        created, last ingested), as a cursor to fetch from; since_seq/after: only rows
        ingested since that sequence or with event time after ``after``. select: the
        output expressions over those rows (default: keys, event time and columns)."""
        where, params = latest_per_entity_filter(view, start=start, end=end, since_seq=since_seq, after=after)
        inner = latest_per_entity_sql(view, columns, where=where)
        if select is None:
            return con.execute(inner, params)
        return con.execute(f"SELECT {', '.join(select)} FROM ({inner})", params)

    def stats(self, view: FeatureView) -> dict[str, Any]:
        """A full recount of the view's statistics (what the incremental ones must equal)."""
        with self.connect() as con:
            if not self.table_exists(con, view.name):
                return {"rows": 0, "entities": 0, "min_ts": None, "max_ts": None}
            keys = qlist(view.entity_columns)
            ts = q(view.timestamp_field)
            rows, entities, lo, hi, last = con.execute(
                f"SELECT count(*), count(DISTINCT ({keys})), min({ts}), max({ts}), max({q(INGESTED_AT)}) "
                f"FROM {offline_table(view.name)}"
            ).fetchall()[0]
        return {
            "rows": int(rows),
            "entities": int(entities),
            "min_ts": lo.isoformat() if lo else None,
            "max_ts": hi.isoformat() if hi else None,
            "last_ingested": last.isoformat() if last else None,
        }


    # -- point-in-time retrieval (the SQL: fsnb/backends/duckdb_pit.py) ---------------
    def label_types(self, labels: pa.Table) -> dict[str, str]:
        """Each label column's DuckDB type (in parse_type's spelling)."""
        with self.connect() as con:
            return arrow_duck_types(con, labels)

    def point_in_time(
        self,
        labels: pa.Table,
        selections: list[ViewSelection],
        key_types: dict[str, str],
        *,
        as_of_ingestion: bool = False,
        with_event_times: bool = False,
    ) -> pa.Table:
        """Per label row (columns __fsnb_row, __fsnb_t, keys), the selected features, in
        row order (docs/architecture.md, "Point-in-time rules"). Sets each selection's
        has_table / has_ties from the store."""
        with self.connect() as con:
            for sel in selections:
                sel.has_table = self.table_exists(con, sel.view.name)
                if sel.has_table:
                    _, sel.has_ties = self.meta(con, sel.view.name)
            sql = point_in_time_sql(selections, key_types, as_of_ingestion=as_of_ingestion, with_event_times=with_event_times)
            con.register(LABELS, labels)
            try:
                return con.sql(sql).to_arrow_table()
            finally:
                con.unregister(LABELS)

    def aggregate(self, labels: pa.Table, view: FeatureView, aggregations: Sequence[Aggregation],
                  key_types: dict[str, str], *, as_of_ingestion: bool = False) -> pa.Table:
        """__fsnb_row + one column per aggregation, ordered by __fsnb_row (fsnb/aggregation_sql.py)."""
        with self.connect() as con:
            return aggregation_sql.aggregate(con, labels, view, aggregations, key_types, as_of_ingestion=as_of_ingestion)


def _upgrade_time_column(con: duckdb.DuckDBPyConnection, name: str, column: str) -> None:
    """A store written before times kept nanoseconds: widen the column (once, in the
    caller's transaction), so nanosecond data is stored exactly."""
    try:
        con.execute(f"ALTER TABLE {offline_table(name)} ALTER COLUMN {q(column)} TYPE {EVENT_TIME_TYPE}")
    except duckdb.Error:
        msg = (
            f"view '{name}' holds '{column}' values outside 1677-09-22..2262-04-11, which nanosecond times "
            f"cannot hold; delete those rows (or the view) before ingesting more"
        )
        raise StoreError(msg) from None


def _damaged(path: Path, detail: str) -> StoreError:
    return StoreError(
        f"{path} is damaged ({detail}); restore it from a backup, or move it away "
        "to start an empty offline store (its feature history is then lost)"
    )


def _lock_holder(text: str) -> str:
    import re

    match = re.search(r"PID (\d+)", text)
    if match and int(match.group(1)) != os.getpid():
        return f" (PID {match.group(1)})"
    return ""
