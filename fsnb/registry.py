"""The registry: feature view definitions (all versions), data statistics,
training-set records and small facts such as consumer offsets, in one SQLite file in WAL mode.

SQLite rather than DuckDB so that any process (a kernel, the CLI, the JupyterLab
server extension) can read it while another one holds the offline database.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsnb.definitions import FeatureView
from fsnb.errors import StoreError, UnknownFeatureView, closest, one_line
from fsnb.registry_rows import (
    COLUMNS,
    REGISTRY_HINT,
    SCHEMA,
    ViewVersion,
    bad,
    parse_json,
    stats_row,
    training_set_row,
    view_row,
)
from fsnb.sqlite_util import (
    ThreadConnections,
    connect_sqlite,
    damaged,
    is_damage,
    refuse_empty_file,
    sqlite_damage,
)


@dataclass(frozen=True)
class ViewSummary:
    """A view's newest version, how many versions it has, and its mirrored statistics."""

    latest: ViewVersion
    versions: int
    stats: dict[str, Any]
    stats_updated_at: float | None


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
                    self._con.executescript(SCHEMA)
                self._check_file()
            except BaseException:
                self._con.close()
                raise
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise sqlite_damage(path, exc, REGISTRY_HINT) from None
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
        for table, wanted in COLUMNS.items():
            have = {row[1] for row in self._con.execute(f"PRAGMA table_info({table})")}
            if not wanted <= have:
                missing = ", ".join(sorted(wanted - have))
                raise damaged(self.path, f"table {table} lacks {missing}; it is not an fsnb registry", REGISTRY_HINT)

    def _bad(self, what: str, problem: str) -> StoreError:
        return bad(self.path, what, problem)

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
                cache[name] = view_row(self.path, name, ver, d, ts)
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
        return [view_row(self.path, name, v, d, ts) for v, d, ts in rows]

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
                latest = view_row(self.path, name, version, definition, created_at)
                checked = stats_row(self.path, name, stats, stats_at) if stats is not None else {}
            except StoreError:
                continue
            out.append(ViewSummary(latest, int(count), checked, None if stats is None else float(stats_at)))
        return out

    def stats(self, name: str) -> dict[str, Any]:
        row = self._con.execute("SELECT stats, updated_at FROM view_stats WHERE name = ?", (name,)).fetchone()
        return stats_row(self.path, name, row[0], row[1]) if row else {}

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
                out.append(training_set_row(self.path, n, f, d, ts))
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
                training_set_row(self.path, n, f, d, ts)
            except StoreError as exc:
                out[str(n)] = str(exc)
        return out

    # -- small key/value facts (consumer offsets, settings) -----------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._con.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if not row:
            return default
        try:
            if not isinstance(row[0], str):
                msg = "not JSON text"
                raise ValueError(msg)
            return parse_json(row[0])
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
