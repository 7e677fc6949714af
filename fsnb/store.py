"""FeatureStore: the public face of fsnb. A thin facade over the store's parts
(fsnb.parts): each method checks its arguments (fsnb.arguments) and makes one call into
the module that does the work (docs/architecture.md, "Where each thing lives")."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from fsnb import arguments, retrieval, serving, training, writes
from fsnb.backends.duckdb_offline import OfflineStore
from fsnb.config import DEFAULT_STORE, StoreConfig, store_path
from fsnb.definitions import FeatureView
from fsnb.errors import FsnbError, InvalidDefinition
from fsnb.parts import open_parts
from fsnb.registry import Registry
from fsnb.selection import FeatureSelection, resolve
from fsnb.sources import is_spark_frame
from fsnb.training import TrainingSet
from fsnb.writes import Registration

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from fsnb.backends.contracts import OnlineBackend
    from fsnb.leakage import LeakageReport
    from fsnb.registry_rows import ViewVersion
    from fsnb.sync.monitor import SkewReport

__all__ = ["DEFAULT_PATH", "FeatureSelection", "FeatureStore", "Registration", "TrainingSet"]

DEFAULT_PATH = DEFAULT_STORE


class FeatureStore:
    """A feature store in one directory: registry, offline DuckDB, online SQLite."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = DEFAULT_PATH,
        *,
        online: str | None = None,
        log: str | None = None,
        lock_timeout: float = 60.0,
        offline: str | None = None,
        warehouse: str | os.PathLike[str] | None = None,
        spark: Any = None,
    ) -> None:
        """Open (or create) the store in directory path.

        online / log: "sqlite" (the default, files in the directory) or a redis:// URL;
        offline: "duckdb" (the default, ``offline.duckdb`` in the directory) or "spark"
        (each view's history a Delta table under warehouse, queried on spark, else the
        active SparkSession, else a local one; docs/spark.md). What is not given,
        ``fsnb.toml`` in the directory decides.
        """
        if path is None:
            path = store_path()  # $FSNB_STORE, else ./.fsnb: as the magics and the CLI
        if not isinstance(path, str | os.PathLike):
            msg = f"store path must be a str or a path, not {type(path).__name__}"
            raise FsnbError(msg)
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) or not lock_timeout >= 0:
            msg = f"lock_timeout must be a number of seconds >= 0, not {lock_timeout!r}"
            raise FsnbError(msg)
        for what, url in (("online", online), ("log", log)):
            if url is not None and not isinstance(url, str):
                msg = f"{what} must be 'sqlite' or a redis:// URL str, not {type(url).__name__}"
                raise FsnbError(msg)
        if offline is not None and not isinstance(offline, str):
            msg = f"offline must be 'duckdb' or 'spark', not {type(offline).__name__}"
            raise FsnbError(msg)
        if warehouse is not None and not isinstance(warehouse, str | os.PathLike):
            msg = f"warehouse must be a directory or a URI str, not {type(warehouse).__name__}"
            raise FsnbError(msg)
        if spark is not None and not _is_spark_session(spark):
            msg = f"spark must be a pyspark SparkSession, not {type(spark).__name__}"
            raise FsnbError(msg)
        self.parts = open_parts(
            Path(path).expanduser().resolve(), online=online, log=log, lock_timeout=lock_timeout,
            offline=offline, warehouse=os.fspath(warehouse) if warehouse is not None else None, spark=spark,
        )
        if self.parts.has_log:
            from fsnb.sync.log_state import announce_uncommitted

            announce_uncommitted(self.parts)  # a pushing process died before its consumers committed

    # The parts, by name (docs/architecture.md): what the facade delegates to.
    @property
    def path(self) -> Path:
        return self.parts.path

    @property
    def config(self) -> StoreConfig:
        return self.parts.config

    @property
    def registry(self) -> Registry:
        return self.parts.registry

    @property
    def offline(self) -> OfflineStore:
        return self.parts.offline

    @property
    def online(self) -> OnlineBackend:
        return self.parts.online

    @property
    def store_id(self) -> str:
        """A random id fixed at creation: names this store's keys in shared backends."""
        return self.parts.keep_store_id()

    def close(self) -> None:
        self.parts.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        engine = "" if self.parts.spark is None else ", offline='spark'"
        return f"FeatureStore({str(self.path)!r}, views={self.registry.names()}{engine})"

    def _repr_html_(self) -> str:
        from fsnb.notebook.gather import view_entries
        from fsnb.notebook.render import store_html

        return store_html(str(self.path), view_entries(self.parts), self.list_training_sets())

    # -- definitions -------------------------------------------------------------
    def list_feature_views(self) -> list[FeatureView]:
        return [self.registry.latest(n).view for n in self.registry.names()]

    def get_feature_view(self, name: str, version: int | None = None) -> FeatureView:
        arguments.view_name(name)
        arguments.check_version(version)
        return retrieval.feature_view(self.registry, name, version)

    def list_versions(self, name: str) -> list[ViewVersion]:
        return self.registry.versions(arguments.view_name(name))

    def version_of(self, name: str) -> int:
        return self.registry.latest(arguments.view_name(name)).version

    def register(
        self,
        view: FeatureView,
        data: Any = None,
        *,
        replace: bool = False,
        namespace: Mapping[str, Any] | None = None,
    ) -> Registration:
        """Define or redefine a view (a changed definition becomes a new version),
        then ingest data if given. With replace=True the view's rows become exactly
        data's. Nothing is written unless everything is valid."""
        if not isinstance(view, FeatureView):
            msg = f"register() takes a FeatureView, not {type(view).__name__}"
            raise InvalidDefinition(msg)
        arguments.flag("replace", replace)
        arguments.check_namespace(namespace)
        return writes.register(self.parts, view, data, replace=replace, namespace=namespace)

    def ingest(self, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
        """Append rows to a view's offline history; return how many were new."""
        arguments.view_name(name)
        arguments.check_namespace(namespace)
        return writes.ingest(self.parts, name, data, namespace=namespace)

    def delete_feature_view(self, name: str) -> None:
        """Remove a view, all its versions, its offline history and online values.

        Log entries still unapplied for it are dropped by the consumers: they belong to
        this view's identity, and a view created later under the name has another."""
        from fsnb.sync.log_state import forget_view

        arguments.view_name(name)
        if not self.registry.has(name):  # a view with unreadable rows can still be deleted
            self.registry.latest(name)  # raises with a suggestion
        forget_view(self.registry, name)
        writes.delete_view(self.parts, name)

    def read(self, name: str, start: Any = None, end: Any = None) -> pl.DataFrame:
        """A view's offline history (optionally between two event times), oldest first."""
        view = self.registry.latest(arguments.view_name(name)).view
        return retrieval.read(self.parts, view, start, end)

    def stats(self, name: str) -> dict[str, Any]:
        self.registry.latest(arguments.view_name(name))
        return self.registry.stats(name)

    # -- feature references -------------------------------------------------------
    def resolve(self, features: str | Iterable[str], *, full_feature_names: bool = False) -> FeatureSelection:
        return resolve(self.registry, features, full_feature_names)

    # -- offline retrieval ---------------------------------------------------------
    def get_historical_features(
        self,
        entity_df: Any,
        features: str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
        as_of_ingestion: bool = False,
    ) -> pl.DataFrame:
        """Join features to label rows point-in-time correctly (docs/architecture.md).

        Every label row comes back once, in input order, with its columns unchanged. With
        Spark labels the result is a Spark DataFrame (on a Spark store nothing is collected).
        """
        if is_spark_frame(entity_df):
            selection = self._checked_selection(features, timestamp_field, full_feature_names, as_of_ingestion)
            return retrieval.spark_historical_features(  # type: ignore[no-any-return]
                self.parts, entity_df, selection, timestamp_field, as_of_ingestion=as_of_ingestion
            )
        selection, labels = self._retrieval_args(entity_df, features, timestamp_field, full_feature_names, as_of_ingestion)
        return retrieval.historical_features(self.parts.engine, labels, selection, timestamp_field, as_of_ingestion=as_of_ingestion)

    def build_training_set(
        self,
        entity_df: Any,
        features: str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        full_feature_names: bool = False,
        as_of_ingestion: bool = False,
        label: str | None = None,
    ) -> TrainingSet:
        """get_historical_features and explain_leakage from ONE point-in-time join:
        ``.frame`` is what get_historical_features returns, ``.report`` the LeakageReport
        (None when there are no label rows)."""
        if label is not None:
            arguments.column_name("label", label)
        selection, labels = self._retrieval_args(entity_df, features, timestamp_field, full_feature_names, as_of_ingestion)
        return training.build(
            self.parts.engine, labels, selection, timestamp_field=timestamp_field, as_of_ingestion=as_of_ingestion, label=label
        )

    def _retrieval_args(
        self, entity_df: Any, features: Any, timestamp_field: Any, full_feature_names: Any, as_of_ingestion: Any
    ) -> tuple[FeatureSelection, pl.DataFrame]:
        selection = self._checked_selection(features, timestamp_field, full_feature_names, as_of_ingestion)
        return selection, retrieval.labels_frame(entity_df)

    def _checked_selection(
        self, features: Any, timestamp_field: Any, full_feature_names: Any, as_of_ingestion: Any
    ) -> FeatureSelection:
        arguments.flag("full_feature_names", full_feature_names)
        arguments.flag("as_of_ingestion", as_of_ingestion)
        arguments.column_name("timestamp_field", timestamp_field)
        return self.resolve(features, full_feature_names=full_feature_names)

    def explain_leakage(
        self,
        entity_df: Any,
        features: str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        label: str | None = None,
    ) -> LeakageReport:
        """Compare the point-in-time join with a naive latest-record join, row by row.

        Returns a ``fsnb.leakage.LeakageReport``; ``label`` (default: the labels'
        only non-key, non-time column) is used to measure metric inflation.
        """
        from fsnb.leakage import explain

        arguments.column_name("timestamp_field", timestamp_field)
        if label is not None:
            arguments.column_name("label", label)
        selection = self.resolve(features)
        labels = retrieval.labels_frame(entity_df)
        return explain(self.parts.engine, labels, selection, timestamp_field=timestamp_field, label=label)

    # -- online retrieval -------------------------------------------------------------
    def get_online_features(
        self, features: str | Sequence[str], entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    ) -> dict[str, list[Any]]:
        """The latest value of each feature for each entity row (None if unknown or expired).

        entity_rows: rows ({key: value} each), one row, or {key: column} (a list, numpy
        array, pandas/polars Series or Arrow array per key). Values are typed against
        the view's key types; one that cannot have its key's type is a SchemaMismatch.
        """
        return serving.online_features(self.parts, features, entity_rows)

    # -- training sets -----------------------------------------------------------------
    def record_training_set(self, name: str, frame: pl.DataFrame, features: Sequence[str], **detail: Any) -> str:
        """Remember a training set's fingerprint with the view versions it was built from."""
        arguments.training_set_args(name, frame)
        return writes.record_training_set(self.parts, name, frame, [features] if isinstance(features, str) else features, detail)

    def list_training_sets(self) -> list[dict[str, Any]]:
        return self.registry.training_sets()

    # -- materialization ------------------------------------------------------------
    def materialize(self, start: Any = None, end: Any = None, *, views: Sequence[str] | None = None, progress: bool | None = None) -> dict[str, int]:
        """Copy each online view's latest values with event time in [start, end] (end
        defaults to now) into the online store; return rows written per view."""
        from fsnb.sync.materialize import materialize

        arguments.materialize_args(views, progress)
        result = materialize(self.parts, start=start, end=end, views=views, incremental=False, progress=progress)
        self.parts.caches.readers.clear()
        return result

    def materialize_incremental(self, end: Any = None, *, views: Sequence[str] | None = None, progress: bool | None = None) -> dict[str, int]:
        """Copy what changed since each view's watermark (new event times or newly ingested rows)."""
        from fsnb.sync.materialize import materialize

        arguments.materialize_args(views, progress)
        result = materialize(self.parts, start=None, end=end, views=views, incremental=True, progress=progress)
        self.parts.caches.readers.clear()
        return result

    # -- streaming (fsnb.sync) ---------------------------------------------------------------
    def push(self, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
        """Append a batch to the feature log and apply it to both stores; return its log offset.

        The batch is validated whole (against the newest view version it fits) and
        nothing is appended if it is bad; once this returns the entry is on disk.
        """
        from fsnb.sync.push import push

        arguments.view_name(name)
        arguments.check_namespace(namespace)
        return push(self.parts, name, data, namespace=namespace)

    def producer(self, *, offline_every: int = 64) -> AbstractContextManager[None]:
        """A block of fast pushes: the offline store stays open and is applied to in groups
        of ``offline_every`` entries (every push is still durable and online at once); the
        offline store has everything when the block ends."""
        from fsnb.sync.push import producer

        return producer(self.parts, offline_every=offline_every)

    def sync(self) -> dict[str, int]:
        """Apply log entries a consumer had not committed (what a restarted process runs)."""
        from fsnb.sync.consumers import sync

        return sync(self.parts)

    def set_retention(self, *, keep_entries: int = 0, keep_seconds: float = 0.0) -> None:
        """How much of the consumed log to keep (the offline store is the history): entries
        both consumers committed are dropped unless among the last ``keep_entries`` or
        younger than ``keep_seconds``; unconsumed entries are never dropped."""
        from fsnb.sync.retention import set_retention

        set_retention(self.parts.log, keep_entries=keep_entries, keep_seconds=keep_seconds)

    def set_aside(self) -> list[dict[str, Any]]:
        """The log entries a consumer could not apply and passed over: consumer, offset,
        view, rows, error (each also announced by an EntrySetAside warning)."""
        from fsnb.sync.log_state import set_aside

        return set_aside(self.parts.log)

    def freshness(self) -> pl.DataFrame:
        """Per view: newest event time offline and online, log end, consumer offsets and lag."""
        from fsnb.sync.monitor import freshness

        return freshness(self.parts)

    def check_skew(self, name: str) -> SkewReport:
        """Compare each online vector with the offline point-in-time value now (a SkewReport)."""
        from fsnb.sync.monitor import check_skew

        arguments.view_name(name)
        return check_skew(self.parts, name)


def _is_spark_session(value: Any) -> bool:
    import sys

    session = getattr(sys.modules.get("pyspark.sql"), "SparkSession", None)
    return session is not None and isinstance(value, session)
