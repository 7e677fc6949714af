"""The registry: feature view definitions (all versions), data statistics,
training-set records and small facts such as consumer offsets, in one SQLite file in WAL mode.

SQLite rather than DuckDB so that any process (a kernel, the CLI, the JupyterLab
server extension) can read it while another one holds the offline database.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fsnb.definitions import FeatureView, check_name
from fsnb.errors import StoreError, UnknownFeatureView, closest, one_line

_SCHEMA = """
CREATE TABLE IF NOT EXISTS views (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS view_stats (
    name TEXT PRIMARY KEY,
    stats TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS training_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- An offline write in flight: written before its DuckDB transaction, removed after it.
-- A write that publishes a definition (a new version, or an in-place schema fix) keeps
-- it here, invisible to readers, until the offline store committed its rows.
CREATE TABLE IF NOT EXISTS pending_writes (
    token TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER,
    definition TEXT,
    definition_hash TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ViewVersion:
    view: FeatureView
    version: int
    created_at: float


@dataclass(frozen=True)
class ViewSummary:
    """A view's newest version, how many versions it has, and its mirrored statistics."""

    latest: ViewVersion
    versions: int
    stats: dict[str, Any]
    stats_updated_at: float | None


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
REGISTRY_HINT = "restore it from a backup (it holds the store's definitions), or move the store away to start a new one"
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


def _sqlite_damage(path: Path, exc: sqlite3.Error, hint: str) -> StoreError:
    return damaged(path, one_line(exc), hint)


# What each table must have (a file that lacks them is not an fsnb registry).
_COLUMNS = {
    "views": {"name", "version", "definition", "definition_hash", "created_at"},
    "view_stats": {"name", "stats", "updated_at"},
    "training_sets": {"id", "name", "fingerprint", "detail", "created_at"},
    "kv": {"key", "value"},
}


class Registry:
    """Definitions and metadata of one store."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """readonly: open an existing registry without creating or changing anything
        (what the JupyterLab server extension does beside a kernel that writes it)."""
        self.path = path
        self._local = threading.local()  # each thread's view cache (see _cache)
        refuse_empty_file(path, REGISTRY_HINT)
        try:
            self._con = ThreadConnections(lambda: connect_sqlite(path, readonly=readonly))
            try:
                if not readonly:
                    self._con.executescript(_SCHEMA)
                self._check_file()
            except BaseException:
                self._con.close()
                raise
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise _sqlite_damage(path, exc, REGISTRY_HINT) from None
            raise
        # Watches for commits by any connection (another thread's or process's): its
        # data_version is one number for every thread of the store to compare.
        self._watch = connect_sqlite(path, readonly=readonly)
        self._watch_lock = threading.Lock()
        self._cache_version = -1
        self._cache = {}
        self._broken: dict[str, str] = {}  # view name -> why its rows cannot be read

    # PRAGMA data_version is per connection, and so per thread: so is the cache of
    # newest versions that it keeps fresh.
    @property
    def _cache(self) -> dict[str, ViewVersion]:
        cache: dict[str, ViewVersion] = getattr(self._local, "cache", {})
        return cache

    @_cache.setter
    def _cache(self, value: dict[str, ViewVersion]) -> None:
        self._local.cache = value

    @property
    def _cache_version(self) -> int:
        version: int = getattr(self._local, "version", -1)
        return version

    @_cache_version.setter
    def _cache_version(self, value: int) -> None:
        self._local.version = value

    def _check_file(self) -> None:
        """Refuse a file whose pages are damaged or whose tables are not fsnb's."""
        (result,) = self._con.execute("PRAGMA quick_check(1)").fetchone()
        if result != "ok":
            raise damaged(self.path, f"SQLite's check says: {str(result)[:100]}", REGISTRY_HINT)
        for table, wanted in _COLUMNS.items():
            have = {row[1] for row in self._con.execute(f"PRAGMA table_info({table})")}
            if not wanted <= have:
                missing = ", ".join(sorted(wanted - have))
                raise damaged(self.path, f"table {table} lacks {missing}; it is not an fsnb registry", REGISTRY_HINT)

    def _bad(self, what: str, problem: str) -> StoreError:
        return StoreError(f"{self.path}: {what} is unreadable ({problem}); {REGISTRY_HINT}")

    def _view_row(self, name: object, version: object, definition: object, created_at: object) -> ViewVersion:
        """One row of views, checked field by field (StoreError naming the file otherwise)."""
        what = f"the definition of {name!r:.60} version {version!r:.20}"
        try:
            check_name("feature view", name)  # type: ignore[arg-type]
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                msg = "its version is not a positive integer"
                raise ValueError(msg)
            _timestamp(created_at)
            if not isinstance(definition, str):
                msg = "the definition is not JSON text"
                raise ValueError(msg)
            view = FeatureView.from_dict(_json(definition))
            if view.name != name:
                msg = f"it defines '{view.name}'"
                raise ValueError(msg)
        except (ValueError, TypeError, RecursionError) as exc:
            raise self._bad(what, one_line(exc)) from None
        return ViewVersion(view, version, float(created_at))  # type: ignore[arg-type]

    def close(self) -> None:
        self._con.close()
        self._watch.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the registry at one commit (a read transaction)."""
        self._con.execute("BEGIN")
        try:
            yield
        finally:
            self._con.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con.get()
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # -- definitions ------------------------------------------------------------
    def _refresh(self) -> None:
        # data_version changes when another connection commits: cheap staleness check.
        version = self._con.execute("PRAGMA data_version").fetchone()[0]
        if version == self._cache_version and self._cache:
            return
        rows = self._con.execute(
            "SELECT name, version, definition, created_at FROM views v "
            "WHERE version = (SELECT max(version) FROM views w WHERE w.name = v.name)"
        ).fetchall()
        # One unreadable view must not take the others down: it is set aside (latest()
        # raises for it, broken() lists it) and every other view keeps working.
        cache: dict[str, ViewVersion] = {}
        broken: dict[str, str] = {}
        for name, ver, d, ts in rows:
            try:
                cache[name] = self._view_row(name, ver, d, ts)
            except StoreError as exc:
                broken[str(name)] = str(exc)
        self._cache, self._broken = cache, broken
        self._cache_version = version

    def names(self) -> list[str]:
        """The views that can be read (see broken() for the others)."""
        self._refresh()
        return sorted(self._cache)

    def broken(self) -> dict[str, str]:
        """View name -> the one-line error of each view whose registry rows are unreadable."""
        self._refresh()
        return dict(self._broken)

    def latest(self, name: str) -> ViewVersion:
        self._refresh()
        try:
            return self._cache[name]
        except KeyError:
            if name in self._broken:
                raise StoreError(self._broken[name]) from None
            msg = f"no feature view '{name}'{closest(name, self._cache)}"
            raise UnknownFeatureView(msg) from None

    def has(self, name: str) -> bool:
        """True for every view with rows, readable or not (a broken one is not a free name)."""
        self._refresh()
        return name in self._cache or name in self._broken

    def versions(self, name: str) -> list[ViewVersion]:
        rows = self._con.execute(
            "SELECT version, definition, created_at FROM views WHERE name = ? ORDER BY version", (name,)
        ).fetchall()
        if not rows:
            self.latest(name)  # raises with a suggestion
        return [self._view_row(name, v, d, ts) for v, d, ts in rows]

    def put(self, view: FeatureView, *, in_place_version: int | None = None) -> int:
        """Store view as a new version (or overwrite in_place_version); return its version."""
        definition = json.dumps(view.to_dict(), sort_keys=True)
        with self.transaction() as con:
            if in_place_version is not None:
                con.execute(
                    "UPDATE views SET definition = ?, definition_hash = ? WHERE name = ? AND version = ?",
                    (definition, view.definition_hash(), view.name, in_place_version),
                )
                version = in_place_version
            else:
                (current,) = con.execute(
                    "SELECT coalesce(max(version), 0) FROM views WHERE name = ?", (view.name,)
                ).fetchone()
                version = current + 1
                con.execute(
                    "INSERT INTO views VALUES (?, ?, ?, ?, ?)",
                    (view.name, version, definition, view.definition_hash(), time.time()),
                )
        self._cache_version = -1
        return int(version)

    def delete_version(self, name: str, version: int) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM views WHERE name = ? AND version = ?", (name, version))
        self._cache_version = -1

    def delete_view(self, name: str) -> None:
        with self.transaction() as con:
            for table in ("views", "view_stats"):
                con.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
        self._cache_version = -1

    # -- offline writes in flight (fsnb.commit) ---------------------------------
    def next_version(self, name: str) -> int:
        """The number a new version of name gets (pending ones count)."""
        (current,) = self._con.execute(
            "SELECT max(coalesce((SELECT max(version) FROM views WHERE name = ?), 0), "
            "coalesce((SELECT max(version) FROM pending_writes WHERE name = ?), 0))",
            (name, name),
        ).fetchone()
        return int(current) + 1

    def begin_write(self, token: str, name: str, view: FeatureView | None, version: int | None) -> None:
        """Record an offline write before its transaction; with view, the definition it
        publishes as version once the rows are committed."""
        definition = json.dumps(view.to_dict(), sort_keys=True) if view is not None else None
        digest = view.definition_hash() if view is not None else None
        with self.transaction() as con:
            con.execute(
                "INSERT INTO pending_writes VALUES (?, ?, ?, ?, ?, ?)",
                (token, name, version, definition, digest, time.time()),
            )

    def pending_writes(self) -> list[tuple[str, str, int | None, str | None]]:
        """(token, name, version, definition hash) of every write not finished."""
        rows = self._con.execute(
            "SELECT token, name, version, definition_hash FROM pending_writes ORDER BY created_at"
        ).fetchall()
        return [(str(t), str(n), None if v is None else int(v), h) for t, n, v, h in rows]

    def finish_write(self, token: str, stats: dict[str, Any] | None, *, publish: bool) -> None:
        """After the offline commit: publish the write's definition (if publish), mirror
        its statistics and forget it, in one transaction. Idempotent."""
        with self.transaction() as con:
            row = con.execute(
                "SELECT name, version, definition, definition_hash FROM pending_writes WHERE token = ?", (token,)
            ).fetchone()
            if row is None:
                return
            name, version, definition, digest = row
            if publish and definition is not None:
                updated = con.execute(
                    "UPDATE views SET definition = ?, definition_hash = ? WHERE name = ? AND version = ?",
                    (definition, digest, name, version),
                ).rowcount
                if not updated:
                    con.execute("INSERT INTO views VALUES (?, ?, ?, ?, ?)", (name, version, definition, digest, time.time()))
            if stats is not None:
                self._write_stats(con, name, stats)
            con.execute("DELETE FROM pending_writes WHERE token = ?", (token,))
        self._cache_version = -1

    def discard_write(self, token: str) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM pending_writes WHERE token = ?", (token,))

    # -- statistics and watermarks ---------------------------------------------
    def set_stats(self, name: str, stats: dict[str, Any]) -> None:
        self._write_stats(self._con.get(), name, stats)

    @staticmethod
    def _write_stats(con: sqlite3.Connection, name: str, stats: dict[str, Any]) -> None:
        con.execute(
            "INSERT INTO view_stats VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "stats = excluded.stats, updated_at = excluded.updated_at",
            (name, json.dumps(stats, default=str), time.time()),
        )

    def summaries(self) -> list[ViewSummary]:
        """Every view's newest version with its version count and statistics, by name."""
        rows = self._con.execute(
            "SELECT v.name, v.version, v.definition, v.created_at, "
            "(SELECT count(*) FROM views c WHERE c.name = v.name), s.stats, s.updated_at "
            "FROM views v LEFT JOIN view_stats s ON s.name = v.name "
            "WHERE v.version = (SELECT max(version) FROM views w WHERE w.name = v.name) "
            "ORDER BY v.name"
        ).fetchall()
        out = []
        for name, version, definition, created_at, count, stats, stats_at in rows:
            try:  # an unreadable view is left out here and listed by broken()
                latest = self._view_row(name, version, definition, created_at)
                checked = self._stats_row(name, stats, stats_at) if stats is not None else {}
            except StoreError:
                continue
            out.append(ViewSummary(latest, int(count), checked, None if stats is None else float(stats_at)))
        return out

    def stats(self, name: str) -> dict[str, Any]:
        row = self._con.execute("SELECT stats, updated_at FROM view_stats WHERE name = ?", (name,)).fetchone()
        return self._stats_row(name, row[0], row[1]) if row else {}

    def _stats_row(self, name: str, stats: object, updated_at: object) -> dict[str, Any]:
        """One row of view_stats, checked (counts are non-negative integers, times ISO text)."""
        try:
            _timestamp(updated_at)
            if not isinstance(stats, str):
                msg = "not JSON text"
                raise ValueError(msg)
            value = _json(stats)
            if not isinstance(value, dict):
                msg = "not a JSON object"
                raise ValueError(msg)
            for key in ("rows", "entities"):
                n = value.get(key)
                if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                    msg = f"'{key}' is not a count"
                    raise ValueError(msg)
            for key in ("min_ts", "max_ts", "last_ingested"):
                t = value.get(key)
                if t is not None:
                    if not isinstance(t, str):
                        msg = f"'{key}' is not a time"
                        raise ValueError(msg)
                    datetime.fromisoformat(t)
        except (ValueError, TypeError, RecursionError) as exc:
            raise self._bad(f"the statistics of '{name}'", one_line(exc)) from None
        return value

    # -- training sets ------------------------------------------------------------
    def record_training_set(self, name: str, fingerprint: str, detail: dict[str, Any]) -> None:
        self._con.execute(
            "INSERT INTO training_sets (name, fingerprint, detail, created_at) VALUES (?, ?, ?, ?)",
            (name, fingerprint, json.dumps(detail, default=str), time.time()),
        )

    def training_sets(self) -> list[dict[str, Any]]:
        rows = self._con.execute(
            "SELECT name, fingerprint, detail, created_at FROM training_sets t "
            "WHERE id = (SELECT max(id) FROM training_sets u WHERE u.name = t.name) ORDER BY name"
        ).fetchall()
        out = []
        for n, f, d, ts in rows:
            try:
                out.append(self._training_set_row(n, f, d, ts))
            except StoreError:
                continue  # listed by broken_training_sets(); the readable ones stay usable
        return out

    def broken_training_sets(self) -> dict[str, str]:
        """Training set name -> the one-line error of each record that cannot be read."""
        rows = self._con.execute(
            "SELECT name, fingerprint, detail, created_at FROM training_sets t "
            "WHERE id = (SELECT max(id) FROM training_sets u WHERE u.name = t.name) ORDER BY name"
        ).fetchall()
        out = {}
        for n, f, d, ts in rows:
            try:
                self._training_set_row(n, f, d, ts)
            except StoreError as exc:
                out[str(n)] = str(exc)
        return out

    def _training_set_row(self, name: object, fingerprint: object, detail: object, created_at: object) -> dict[str, Any]:
        try:
            if not isinstance(name, str):
                msg = "its name is not a string"
                raise ValueError(msg)
            if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-f]{8,128}", fingerprint):
                msg = "its fingerprint is not a hex digest"
                raise ValueError(msg)
            _timestamp(created_at)
            if not isinstance(detail, str):
                msg = "its detail is not JSON text"
                raise ValueError(msg)
            value = _json(detail)
            if not isinstance(value, dict):
                msg = "its detail is not a JSON object"
                raise ValueError(msg)
            for key in ("features", "columns"):
                items = value.get(key)
                if items is not None and not (isinstance(items, list) and all(isinstance(i, str) for i in items)):
                    msg = f"'{key}' is not a list of strings"
                    raise ValueError(msg)
            rows = value.get("rows")
            if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
                msg = "'rows' is not a count"
                raise ValueError(msg)
            views = value.get("views")
            if views is not None and not (
                isinstance(views, dict)
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in views.values())
            ):
                msg = "'views' is not a map of view versions"
                raise ValueError(msg)
        except (ValueError, TypeError, RecursionError) as exc:
            raise self._bad(f"the training set {name!r:.60}", one_line(exc)) from None
        reserved = {"name": name, "fingerprint": fingerprint, "created_at": float(created_at)}  # type: ignore[arg-type]
        return {**value, **reserved}

    # -- small key/value facts (consumer offsets, settings) -----------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._con.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if not row:
            return default
        try:
            if not isinstance(row[0], str):
                msg = "not JSON text"
                raise ValueError(msg)
            return _json(row[0])
        except (ValueError, RecursionError) as exc:
            raise self._bad(f"the setting '{key}'", one_line(exc)) from None

    def set(self, key: str, value: Any) -> None:
        self._con.execute(
            "INSERT INTO kv VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def setdefault(self, key: str, value: Any) -> Any:
        """The key's value, storing value first if it has none (atomic across processes)."""
        self._con.execute("INSERT OR IGNORE INTO kv VALUES (?, ?)", (key, json.dumps(value)))
        return self.get(key)

    def delete(self, key: str) -> None:
        self._con.execute("DELETE FROM kv WHERE key = ?", (key,))

    def data_version(self) -> int:
        """Changes whenever any connection (this process or another) commits; the same
        number in every thread (the watching connection never writes)."""
        with self._watch_lock:
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])


def _json(text: str) -> Any:
    """Parse JSON text from a store file: NaN and Infinity are not JSON, so they are refused."""

    def refuse(constant: str) -> None:
        msg = f"{constant} is not a JSON value"
        raise ValueError(msg)

    return json.loads(text, parse_constant=refuse)


def _timestamp(value: object) -> float:
    """A time column (seconds since the epoch) as written by fsnb: a finite, plausible number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"a time stamp is {value!r:.40}, not a number of seconds"
        raise ValueError(msg)
    if not 0 <= value < 1e11:
        msg = f"a time stamp {value!r:.40} is out of range"
        raise ValueError(msg)
    return float(value)
