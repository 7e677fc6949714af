"""The feature log: an ordered, durable, append-only sequence of pushed batches.

Every ``store.push()`` becomes one entry: the view name, the view version the batch
was validated against, and the batch itself as Arrow IPC bytes (never pickle, so
opening a store cannot run code). Consumers (the online and the offline store) read
entries in order and commit the offset of the last entry they applied.

``SqliteLog`` implements ``fsnb.backends.contracts.FeatureLog`` and is the
embedded default: one SQLite file inside the store directory, WAL with
``synchronous=FULL``, so an append is one fsync'd transaction and survives a crash
of the process (or the machine) the moment ``append`` returns. A Redis Streams
backend fits the same interface (XADD, XRANGE, consumer-group offsets, XTRIM).
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

# LogEntry, the payload format and the consumer locks are shared by every log backend;
# named here too for older imports.
from fsnb.backends.consumer_locks import CONSUMERS, consumer_active, os_consumer_lock
from fsnb.backends.contracts import LogEntry, decode_batch, encode_batch
from fsnb.errors import StoreError, one_line
from fsnb.sqlite_util import ThreadConnections
from fsnb.timeutil import now_us

LOG_FILE = "log.sqlite"
__all__ = ["CONSUMERS", "LOG_FILE", "LogEntry", "SqliteLog", "consumer_active", "decode_batch", "encode_batch", "os_consumer_lock", "read_view_lag", "uncommitted"]
_LOG_HINT = "restore it, or move it away to start a new log (pushes not yet applied are lost)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    view TEXT NOT NULL,
    version INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    appended_us INTEGER NOT NULL,
    format TEXT NOT NULL,
    payload BLOB NOT NULL,
    view_id TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY,
    committed INTEGER NOT NULL,
    updated_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _connect_log(path: Path, *, durable: bool) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA busy_timeout=30000")
    if durable:
        con.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit fsyncs the WAL, so an acknowledged append survives power loss.
        con.execute("PRAGMA synchronous=FULL")
    else:
        con.execute("PRAGMA synchronous=NORMAL")
    return con


class SqliteLog:
    """The embedded log: ``log.sqlite`` in the store directory."""

    reuses_appended = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOG_FILE
        from fsnb.sqlite_util import refuse_empty_file

        refuse_empty_file(self.path, _LOG_HINT)

        # One connection per thread for each of the two (a store object may be shared by threads).
        try:
            con = ThreadConnections(lambda: _connect_log(self.path, durable=True))
            con.executescript(_SCHEMA)
            if "view_id" not in [r[1] for r in con.execute("PRAGMA table_info(entries)")]:
                con.execute("ALTER TABLE entries ADD COLUMN view_id TEXT NOT NULL DEFAULT ''")  # a log from before
        except sqlite3.DatabaseError as exc:
            msg = f"cannot open the feature log {self.path}: {one_line(exc)}; move the file away to start a new log"
            raise StoreError(msg) from None
        self.con = con
        # Offsets and settings go through a second connection without the per-commit
        # fsync: losing a commit to a power cut only means a harmless replay.
        self.meta = ThreadConnections(lambda: _connect_log(self.path, durable=False))
        self.log_id = self._log_id()
        self._locks: dict[str, int] = {}

    def _log_id(self) -> str:
        row = self.con.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
        if row:
            return str(row[0])
        new = uuid.uuid4().hex[:12]
        self.con.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)", (new,))
        return str(self.con.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0])

    def close(self) -> None:
        self.meta.close()
        self.con.close()

    # -- entries ---------------------------------------------------------------------
    def append(self, view: str, version: int, payload: bytes, rows: int, view_id: str = "") -> int:
        # One INSERT in autocommit mode is one transaction; with synchronous=FULL it
        # returns only after the WAL is on disk.
        cur = self.con.execute(
            "INSERT INTO entries (view, version, rows, appended_us, format, payload, view_id) "
            "VALUES (?, ?, ?, ?, 'arrow-ipc', ?, ?)",
            (view, version, rows, now_us(), payload, view_id),
        )
        return int(cur.lastrowid or 0)

    def read_from(self, offset: int, limit: int | None = None) -> list[LogEntry]:
        sql = "SELECT position, view, version, rows, appended_us, payload, view_id FROM entries WHERE position >= ? ORDER BY position"
        params: tuple[int, ...] = (offset,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (offset, limit)
        return [
            LogEntry(int(p), v, int(ver), int(r), int(t), bytes(b), view_id=str(i))
            for p, v, ver, r, t, b, i in self.con.execute(sql, params)
        ]

    def pending(self, after: int) -> list[tuple[int, str, int]]:
        """(offset, view, rows) of entries after ``after`` without their payloads."""
        return [
            (int(p), v, int(r))
            for p, v, r in self.con.execute(
                "SELECT position, view, rows FROM entries WHERE position > ? ORDER BY position", (after,)
            )
        ]

    def end_offset(self) -> int:
        row = self.con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
        return int(row[0]) if row else 0

    def start_offset(self) -> int:
        row = self.con.execute("SELECT min(position) FROM entries").fetchone()
        return int(row[0]) if row and row[0] is not None else self.end_offset() + 1

    def size(self) -> int:
        """Entries currently retained."""
        return int(self.con.execute("SELECT count(*) FROM entries").fetchone()[0])

    def first_offset_since(self, appended_us: int) -> int | None:
        """Offset of the oldest retained entry appended at or after the time (None: none)."""
        row = self.con.execute("SELECT min(position) FROM entries WHERE appended_us >= ?", (appended_us,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def last_appended_us(self, view: str) -> int | None:
        row = self.con.execute("SELECT max(appended_us) FROM entries WHERE view = ?", (view,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    # -- consumers -------------------------------------------------------------------
    def committed(self, consumer: str) -> int:
        row = self.con.execute("SELECT committed FROM consumers WHERE name = ?", (consumer,)).fetchone()
        return int(row[0]) if row else 0

    def commit(self, consumer: str, offset: int) -> None:
        # max(): a commit never moves a consumer backwards, whatever the order of callers.
        self.meta.execute(
            "INSERT INTO consumers VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "committed = max(committed, excluded.committed), updated_us = excluded.updated_us",
            (consumer, offset, now_us()),
        )

    def consumer_lock(self, consumer: str) -> AbstractContextManager[None]:
        """Only one process applies entries for a consumer at a time (see os_consumer_lock)."""
        return os_consumer_lock(self.directory, consumer, self._locks)

    # -- retention -------------------------------------------------------------------
    def truncate_before(self, offset: int) -> int:
        cur = self.meta.execute("DELETE FROM entries WHERE position < ?", (offset,))
        return int(cur.rowcount)

    def get_setting(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_setting(self, key: str, value: str) -> None:
        # Durable like an append: the offline consumer's intent marker must survive a power cut.
        self.con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)
        )


def uncommitted(directory: Path) -> dict[str, int] | None:
    """Entries each consumer has not committed, read without creating anything (None: no log)."""
    path = directory / LOG_FILE
    if not path.exists():
        return None
    from fsnb.sqlite_util import damaged, is_damage, refuse_empty_file

    refuse_empty_file(path, _LOG_HINT)
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
            end = int(row[0]) if row else 0
            done = dict(con.execute("SELECT name, committed FROM consumers").fetchall())
        finally:
            con.close()
    except sqlite3.Error as exc:
        if is_damage(exc):  # a damaged log is news at open, not at the first push
            raise damaged(path, one_line(exc), _LOG_HINT) from None
        return None
    return {c: end - int(done.get(c, 0)) for c in CONSUMERS}


def read_view_lag(path: Path, views: list[str]) -> dict[str, tuple[int, float | None]]:
    """Per view: entries of the log file at path that the slower consumer has not applied
    yet, and when its latest batch applied online was pushed (seconds since the epoch).
    Read in one snapshot, without creating or changing any file (the server endpoint's read)."""
    from fsnb.sqlite_util import connect_sqlite

    if not views or not path.is_file():
        return {}
    con = connect_sqlite(path, readonly=True)
    try:
        con.execute("BEGIN")
        consumers = {n: (c, u) for n, c, u in con.execute("SELECT name, committed, updated_us FROM consumers")}
        online_at, online_commit_us = consumers.get("online", (0, None))
        offline_at = consumers.get("offline", (0, None))[0]
        result: dict[str, tuple[int, float | None]] = {}
        for name in views:
            (lag,) = con.execute(
                "SELECT count(*) FROM entries WHERE view = ? AND position > ?", (name, min(online_at, offline_at))
            ).fetchone()
            (pushed_us,) = con.execute(
                "SELECT max(appended_us) FROM entries WHERE view = ? AND position <= ?", (name, online_at)
            ).fetchone()
            if pushed_us is None and online_at:
                # applied entries may be compacted away: the online consumer's last commit
                # is then the latest time this view's online values can have changed
                pushed_us = online_commit_us
            result[name] = (int(lag), None if pushed_us is None else pushed_us / 1e6)
        con.execute("COMMIT")
    except sqlite3.OperationalError:  # a log that was never written to has no tables yet
        return {}
    finally:
        con.close()
    return result
