"""One commit across two databases: the registry (SQLite) and the offline store (DuckDB).

A write that publishes a definition (``register(view, data)`` with a changed view, the
schema fix of a first ``ingest``) must show the new version exactly when its rows are
there, and the statistics must describe the rows that are there. The protocol:

1. While holding the offline database (only one process can), the write is recorded
   in the registry's ``pending_writes`` with the definition it publishes. Readers of
   the registry (the server endpoint, ``fsnb list``) never look there.
2. The DuckDB transaction writes the rows, the statistics and the write's token into
   the offline meta table. Its COMMIT is the commit point.
3. The registry then publishes the definition, mirrors the statistics and forgets the
   pending write, in one SQLite transaction.

A writer killed between 1 and 3 leaves a pending write. Whoever opens the offline
database next holds its lock, so the writer is dead: the token in the meta table says
whether the rows were committed, and the pending write is finished (step 3) or
dropped. A failure in step 3 (a full disk) is a warning, not an error: the data was
written; the pending write stays and is finished at the next open or write.
"""

from __future__ import annotations

import sqlite3
import warnings
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from fsnb.backends.duckdb_offline import OfflineStore
    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.definitions import FeatureView
    from fsnb.registry import Registry


class RegistryBehind(UserWarning):
    """Rows were committed, but the registry could not record it yet (repaired at the next open)."""


# Tokens of the writes this process has in flight: another FeatureStore object of the
# same process shares DuckDB's database instance (no file lock between them), so
# holding the database does not make these a dead writer's.
_LIVE: set[str] = set()

# What a failing registry write after the commit point raises: a full or read-only disk.
_AFTER_COMMIT_ERRORS = (OSError, sqlite3.OperationalError, sqlite3.DatabaseError)


class RegistryJournal:
    """The offline store's Journal (fsnb.backends.contracts.Journal), kept in the registry."""

    def __init__(self, registry: Registry, offline: OfflineStore | SparkOfflineStore) -> None:
        self.registry = registry
        self.offline = offline
        self.behind = True  # unfinished writes may exist: check before the next write

    def recover(self, con: duckdb.DuckDBPyConnection) -> None:
        """Finish or drop the writes a dead writer left (the caller holds the offline lock)."""
        try:
            self._recover(con)
        except _AFTER_COMMIT_ERRORS as exc:
            # Reading still works; the next write retries (and fails if it still cannot).
            _warn(f"fsnb: cannot finish an earlier write in {self.registry.path}: {_one_line(exc)}; retried at the next write")

    def _recover(self, con: duckdb.DuckDBPyConnection) -> None:
        for token, name, _version, _digest in self.registry.pending_writes():
            if token in _LIVE:
                continue
            if self.offline.committed_write(con, name) == token:
                stats = self.offline.committed_stats(con, name)
                self.registry.finish_write(token, stats, publish=True)
                if stats is None and self.registry.has(name):  # an engine that counts after its commit (Spark)
                    self.registry.set_stats(name, self.offline.stats(self.registry.latest(name).view))
            else:
                self.registry.discard_write(token)
        self.behind = False

    def begin(self, con: duckdb.DuckDBPyConnection, token: str, view: FeatureView, version: int | None, publish: bool) -> None:
        if publish and version is None:
            msg = "a write that publishes a definition needs its version number"
            raise ValueError(msg)
        try:
            if self.behind:
                self._recover(con)  # strictly: a new write must not hide an unfinished one
            self.registry.begin_write(token, view.name, view if publish else None, version)
        except _AFTER_COMMIT_ERRORS as exc:
            from fsnb.errors import StoreError

            msg = f"nothing written to '{view.name}': the registry {self.registry.path} cannot record the write ({_one_line(exc)}); free disk space and retry"
            raise StoreError(msg) from None
        _LIVE.add(token)

    def abort(self, token: str) -> None:
        _LIVE.discard(token)
        self.registry.discard_write(token)

    def committed(self, token: str, view: FeatureView, stats: dict[str, Any], publish: bool) -> None:
        _LIVE.discard(token)
        try:
            self.registry.finish_write(token, stats, publish=publish)
        except _AFTER_COMMIT_ERRORS as exc:
            self.behind = True
            _warn(
                f"fsnb: the rows of '{view.name}' are stored, but the registry {self.registry.path} could not "
                f"record it ({_one_line(exc)}); it is brought up to date when the store is next used"
            )


def _one_line(exc: BaseException) -> str:
    from fsnb.errors import one_line

    return one_line(exc)


def _warn(msg: str) -> None:
    warnings.warn(msg, RegistryBehind, stacklevel=4)


def mirror_stats(registry: Registry, offline: OfflineStore | SparkOfflineStore, view: FeatureView) -> dict[str, Any]:
    """Mirror into the registry the statistics the offline store committed (counted once
    for stores written before they were kept)."""
    with offline.connect() as con:
        stats = offline.committed_stats(con, view.name)
    if stats is None:
        stats = offline.stats(view)
    registry.set_stats(view.name, stats)
    return stats
