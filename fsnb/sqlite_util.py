"""SQLite plumbing shared by the registry, the SQLite online store and the SQLite log:
connections in WAL mode, read-only opens that create no file, one connection per
thread, and the one-line errors for a damaged file."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fsnb.errors import StoreError, one_line


def sqlite_uri(path: Path, **params: str) -> str:
    """A ``file:`` URI for SQLite naming exactly path: every character that a URI gives a
    meaning to (``%``, ``?``, ``#``, spaces, ...) is percent-encoded, so a directory called
    ``a#b`` or ``d%2F..`` is that directory, never a fragment, a parameter or another path."""
    absolute = os.path.abspath(os.fspath(path))
    return "file:" + quote(absolute, safe="/") + ("?" + urlencode(params) if params else "")


def readonly_mode(path: Path) -> str:
    """How to open the WAL database at path without creating any file.

    A read-only open of a WAL database that no process has open makes SQLite create
    ``-wal`` and ``-shm`` beside it and leave them there (and fail in a read-only
    directory). Without those files no writer holds the database and every commit is in
    the main file, so ``immutable=1`` reads it without locks and without creating
    anything ("immutable"); when a writer's files are there, ``mode=ro`` reads through
    them and sees its latest commit ("ro"). A reader that used "immutable" and then sees a
    ``-wal`` appear should read again (see ``fsnb.server.describe_store``).
    """
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    for side in (wal, shm):
        if side.is_symlink() or (side.exists() and not side.is_file()):
            # SQLite writes read marks into -shm even on a read-only connection.
            msg = f"{side} is not a regular file (SQLite never makes one); remove it to read {path.name}"
            raise StoreError(msg)
    return "ro" if wal.exists() or shm.exists() else "immutable"


def connect_sqlite(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A SQLite connection in WAL mode that waits (not fails) on a concurrent writer.

    readonly: never creates or changes a file (see readonly_mode); a missing file is an
    error, not a new empty database."""
    if readonly:
        params = {"mode": "ro"} if readonly_mode(path) == "ro" else {"mode": "ro", "immutable": "1"}
        con = sqlite3.connect(sqlite_uri(path, **params), uri=True, timeout=30, check_same_thread=False)
    else:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=30000")
    return con


class ThreadConnections:
    """A SQLite connection per thread behind one connection's interface.

    One sqlite3 connection used by several threads interleaves their statements and
    transactions: a reader sees another thread's uncommitted writes, two BEGINs
    collide, errors come back as "not an error". Here each thread gets its own
    connection on first use (so one store object may be shared by threads), and
    connections of threads that have ended are closed when a new one opens.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._closed = False
        self.get()  # open now: a file that cannot be opened fails the constructor

    def get(self) -> sqlite3.Connection:
        """This thread's connection."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        return con if con is not None else self._new()

    def _new(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                msg = "Cannot operate on a closed database."
                raise sqlite3.ProgrammingError(msg)
            for key, (thread, old) in list(self._open.items()):
                if not thread.is_alive():
                    old.close()
                    del self._open[key]
        con = self._connect()
        with self._lock:
            self._open[id(con)] = (threading.current_thread(), con)
        self._local.con = con
        return con

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        con: sqlite3.Connection = getattr(self._local, "con", None) or self._new()  # get(), inlined: the read path
        return con.execute(sql, params)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> sqlite3.Cursor:
        return self.get().executemany(sql, rows)  # type: ignore[arg-type]

    def executescript(self, sql: str) -> sqlite3.Cursor:
        return self.get().executescript(sql)

    def __getattr__(self, name: str) -> Any:  # anything else a connection has, on this thread's
        return getattr(self.get(), name)

    @property
    def in_transaction(self) -> bool:
        return self.get().in_transaction

    @property
    def total_changes(self) -> int:
        return self.get().total_changes

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _thread, con in self._open.values():
                con.close()
            self._open.clear()


# -- damaged store files ---------------------------------------------------------------
_DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_EMPTY_GRACE_S = 0.5  # a file another process has just created gets its header within microseconds


def damaged(path: Path, detail: str, hint: str) -> StoreError:
    """The one-line error for a store file that exists but cannot be read."""
    return StoreError(f"{path} is damaged ({detail}); {hint}")


def refuse_empty_file(path: Path, hint: str) -> None:
    """A store file that exists with 0 bytes is a truncated copy, not a new store.

    (A missing file is a new store; fsnb writes a header the moment it creates one,
    so a 0-byte file that stays empty for a moment is damage.)
    """
    deadline = time.monotonic() + _EMPTY_GRACE_S
    while True:
        try:
            if path.stat().st_size > 0:
                return
        except FileNotFoundError:
            return
        if time.monotonic() >= deadline:
            raise damaged(path, "the file is empty", hint)
        time.sleep(0.02)


def is_damage(exc: sqlite3.Error) -> bool:
    """True for SQLite's "not a database" and "malformed" errors (not for locks or permissions)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in _DAMAGE_CODES) or any(
        text in str(exc) for text in ("file is not a database", "malformed")
    )


def sqlite_damage(path: Path, exc: sqlite3.Error, hint: str) -> StoreError:
    return damaged(path, one_line(exc), hint)
