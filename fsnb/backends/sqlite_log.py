"""The feature log: an ordered, durable, append-only sequence of pushed batches.

Every ``store.push()`` becomes one entry: the view name, the view version the batch
was validated against, and the batch itself as Arrow IPC bytes (never pickle, so
opening a store cannot run code). Consumers (the online and the offline store) read
entries in order and commit the offset of the last entry they applied.

``FeatureLog`` is the interface the streaming code relies on; ``SqliteLog`` is the
embedded default: one SQLite file inside the store directory, WAL with
``synchronous=FULL``, so an append is one fsync'd transaction and survives a crash
of the process (or the machine) the moment ``append`` returns. A Redis Streams
backend fits the same interface (XADD, XRANGE, consumer-group offsets, XTRIM).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from fsnb.errors import StoreError, one_line
from fsnb.sqlite_util import ThreadConnections
from fsnb.timeutil import now_us

LOG_FILE = "log.sqlite"
CONSUMERS = ("online", "offline")
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


@dataclass(frozen=True)
class LogEntry:
    """One appended batch. ``offset`` starts at 1 and is never reused, even after truncation."""

    offset: int
    view: str
    version: int
    rows: int
    appended_us: int
    payload: bytes
    decoded: pa.Table | None = field(default=None, compare=False, repr=False)  # set by the appender
    # The identity of the view the entry was pushed to: it survives new versions but
    # not deletion, so entries of a deleted view never reach one created under its name.
    # "" for entries written before fsnb recorded it (applied to the current view).
    view_id: str = ""

    def table(self) -> pa.Table:
        return self.decoded if self.decoded is not None else decode_batch(self.payload)


class FeatureLog(Protocol):
    """What a log backend provides. Offsets are positive integers in append order."""

    log_id: str  # unique per log: offline rows are tagged "<log_id>:<first>-<last>"

    def append(self, view: str, version: int, payload: bytes, rows: int, view_id: str = "") -> int:
        """Durably add one entry and return its offset (only once it is durable)."""
        ...

    def read_from(self, offset: int, limit: int | None = None) -> list[LogEntry]:
        """Entries with offset >= ``offset``, oldest first (at most ``limit``)."""
        ...

    def end_offset(self) -> int:
        """Offset of the last entry ever appended (0 for an empty log)."""
        ...

    def start_offset(self) -> int:
        """Offset of the oldest retained entry (end_offset() + 1 when none is retained)."""
        ...

    def committed(self, consumer: str) -> int:
        """Offset of the last entry the consumer applied and committed (0 = none)."""
        ...

    def commit(self, consumer: str, offset: int) -> None: ...

    def truncate_before(self, offset: int) -> int:
        """Drop entries with offset < ``offset``; return how many were dropped."""
        ...

    def pending(self, after: int) -> list[tuple[int, str, int]]:
        """(offset, view, rows) of the entries after ``after``, without their payloads."""
        ...

    def size(self) -> int:
        """Entries currently retained."""
        ...

    def first_offset_since(self, appended_us: int) -> int | None: ...

    def last_appended_us(self, view: str) -> int | None: ...

    def get_setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...

    def consumer_lock(self, consumer: str) -> AbstractContextManager[None]:
        """Held while a consumer applies and commits (one applier per consumer)."""
        ...

    def close(self) -> None: ...


def encode_batch(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes: typed, language-neutral, and nothing executes on read."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def decode_batch(payload: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        return reader.read_all()


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


@contextmanager
def os_consumer_lock(directory: Path, consumer: str, held: dict[str, int]) -> Iterator[None]:
    """An OS file lock ``log.<consumer>.lock`` in the store directory, released by the
    kernel when the holder dies (even by SIGKILL). Re-entrant within one process through
    ``held`` (a push inside a producer session already holds the offline lock)."""
    with _GUARD:
        in_process = _THREAD_LOCKS.setdefault((str(directory), consumer), threading.RLock())
    with in_process:  # threads of this process take turns; the holding thread re-enters
        if consumer in held:
            yield
            return
        fd = os.open(directory / f"log.{consumer}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held[consumer] = fd
            try:
                yield
            finally:
                del held[consumer]
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


_GUARD = threading.Lock()
_THREAD_LOCKS: dict[tuple[str, str], threading.RLock] = {}


def consumer_active(directory: Path, consumer: str) -> bool:
    """Is some process applying (or holding a producer session for) this consumer right now?"""
    path = directory / f"log.{consumer}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


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
