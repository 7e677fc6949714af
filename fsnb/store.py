"""FeatureStore: the public face of fsnb. It parses, checks and delegates; the SQL
lives in offline.py / pit.py / online.py / materialize.py."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from fsnb import aggregation_views, types
from fsnb.backends.duckdb_offline import OfflineStore, Written
from fsnb.backends.duckdb_pit import LABELS, ROW, T, ViewSelection, point_in_time_sql
from fsnb.config import DEFAULT_STORE, StoreConfig, store_path
from fsnb.definitions import FeatureView, ViewChange, diff_views, parse_feature_refs
from fsnb.entity import KeyPlan
from fsnb.errors import (
    FsnbError,
    Hint,
    InvalidData,
    InvalidDefinition,
    SchemaMismatch,
    UnknownFeature,
    closest,
    one_line,
)
from fsnb.parts import open_parts
from fsnb.registry import Registry, ViewVersion
from fsnb.sources import to_arrow
from fsnb.sqlnames import offline_table
from fsnb.timeutil import NS_RANGE, now_us, outside_ns_range
from fsnb.validation import arrow_duck_types, check_batch, check_view

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from fsnb.backends.contracts import OnlineBackend, OnlineReader
    from fsnb.sync.monitor import SkewReport

DEFAULT_PATH = DEFAULT_STORE


@dataclass
class Registration:
    """What store.register() did."""

    view: FeatureView
    version: int
    new_version: bool
    rows_written: int = 0
    changes: list[ViewChange] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    # With replace=True: stored rows the data no longer holds, and stored rows it kept as they were.
    rows_removed: int = 0
    rows_unchanged: int = 0

    def __repr__(self) -> str:
        what = f"version {self.version}" + (" (new)" if self.new_version else " (unchanged)")
        return f"<Registration {self.view.name} {what}, {self.rows_written} rows written>"

    def _repr_html_(self) -> str:
        from fsnb.notebook.render import registration_html

        return registration_html(self)


@dataclass
class FeatureSelection:
    """Feature references resolved against the registry, grouped by view."""

    selections: list[ViewSelection]

    @property
    def output_names(self) -> list[str]:
        return [n for s in self.selections for n in s.output_names]

    @property
    def entity_columns(self) -> list[str]:
        return list(dict.fromkeys(k for s in self.selections for k in s.view.entity_columns))


class FeatureStore:
    """A feature store in one directory: registry, offline DuckDB, online SQLite."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = DEFAULT_PATH,
        *,
        online: str | None = None,
        log: str | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        """Open (or create) the store in directory path.

        online / log: "sqlite" (the default, files in the directory) or a redis:// URL;
        when not given, ``fsnb.toml`` in the directory decides.
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
        self.parts = open_parts(Path(path).expanduser().resolve(), online=online, log=log, lock_timeout=lock_timeout)
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
    def _readers(self) -> dict[tuple[str, ...], Any]:
        return self.parts.caches.readers

    @property
    def _key_plans(self) -> dict[tuple[str, ...], Any]:
        return self.parts.caches.key_plans

    @property
    def store_id(self) -> str:
        """A random id fixed at creation: names this store's keys in shared backends."""
        return self.parts.keep_store_id()

    def _store_id(self) -> tuple[str, bool]:
        return self.parts.store_id()

    def close(self) -> None:
        self.parts.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, views={self.registry.names()})"

    def _repr_html_(self) -> str:
        from fsnb.notebook.gather import view_entries
        from fsnb.notebook.render import store_html

        return store_html(str(self.path), view_entries(self.parts), self.list_training_sets())

    # -- definitions -------------------------------------------------------------
    def list_feature_views(self) -> list[FeatureView]:
        return [self.registry.latest(n).view for n in self.registry.names()]

    def get_feature_view(self, name: str, version: int | None = None) -> FeatureView:
        _view_name(name)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int | np.integer)):
            msg = f"version must be an int (1, 2, ...), not {version!r}"
            raise InvalidDefinition(msg)
        if version is None:
            return self.registry.latest(name).view
        for v in self.registry.versions(name):
            if v.version == version:
                return v.view
        known = [str(v.version) for v in self.registry.versions(name)]
        msg = f"feature view '{name}' has no version {version}; it has {', '.join(known)}"
        raise InvalidDefinition(msg)

    def list_versions(self, name: str) -> list[ViewVersion]:
        _view_name(name)
        return self.registry.versions(name)

    def version_of(self, name: str) -> int:
        _view_name(name)
        return self.registry.latest(name).version

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
        _flag("replace", replace)
        _check_namespace(namespace)
        table = to_arrow(data, namespace) if data is not None else None
        if table is None:
            return self._register_definition(view)
        # Checked first in memory, so a refused batch never opens (or creates) a store file.
        known = self.registry.latest(view.name) if self.registry.has(view.name) else None
        check_batch(self._scratch(), _inherit_schema(view, known.view if known else None, has_data=True), table)
        # Everything under the offline store's lock: nobody else writes this view meanwhile,
        # and the new version and its rows commit together (fsnb.commit).
        with self.offline.connect() as con:
            current = self.registry.latest(view.name) if self.registry.has(view.name) else None
            candidate = _inherit_schema(view, current.view if current else None, has_data=True)
            batch = check_batch(con, candidate, table)
            candidate = batch.view
            if current is not None and view.features is None:
                # Features inferred from the data keep the types already stored.
                stored = current.view.feature_types
                merged = {f: stored.get(f) or t for f, t in candidate.feature_types.items()}
                candidate = candidate.with_schema(candidate.entity_types or {}, merged)  # type: ignore[arg-type]
                check_batch(con, candidate, table)  # the data fits the stored types too
            check_view(candidate, self.online.columns(view.name))  # what every store can hold
            aggregation_views.check_online(self.online, candidate)  # hook: aggregation views need SQLite online
            if current is not None:
                _check_compatible(current.view, candidate, has_data=lambda: self.offline.has_rows(con, view.name))
            changes = diff_views(current.view, candidate) if current else []
            new_version = current is None or candidate.to_dict() != current.view.to_dict()
            if new_version:
                version = self.registry.next_version(view.name)
            else:
                assert current is not None
                version = current.version
            batch = dataclasses.replace(batch, view=candidate)
            before = self._offline_rows(view.name) if replace else 0
            rows = self.offline.write(batch, replace=replace, version=version, publish=new_version)
            # The commit point is behind us: what follows must not report the rows as not written.
            stats = self.registry.stats(view.name)
            if replace and before + rows > int(stats.get("rows") or 0):
                # Rows were removed offline: an online value may come from one of them. The
                # view's online values go (with the watermark, so the next materialize,
                # incremental or not, copies the remaining history). Re-running an unchanged
                # definition, or one that only adds rows, leaves them as they are.
                _after_commit(lambda: self.online.drop(view.name), f"dropping the online values of '{view.name}'")
        self._readers.clear()
        removed, kept = (rows.removed, rows.kept) if isinstance(rows, Written) else (0, 0)
        return Registration(candidate, version, new_version, int(rows), changes, stats, removed, kept)

    def _register_definition(self, view: FeatureView) -> Registration:
        """register() without data: a changed definition becomes a new version at once."""
        current = self.registry.latest(view.name) if self.registry.has(view.name) else None
        candidate = _inherit_schema(view, current.view if current else None, has_data=False)
        if current is not None and not _compatible_with_data(current.view, candidate):
            # Allowed only if the offline store holds no rows, asked (and the version
            # stored) while holding it so that no ingest slips in between.
            with self.offline.connect() as con:
                _check_compatible(current.view, candidate, has_data=lambda: self.offline.has_rows(con, view.name))
                return self._register_definition_unchecked(current, candidate)
        return self._register_definition_unchecked(current, candidate)

    def _register_definition_unchecked(self, current: ViewVersion | None, candidate: FeatureView) -> Registration:
        check_view(candidate, self.online.columns(candidate.name))  # what every store can hold, data or not
        aggregation_views.check_online(self.online, candidate)  # hook: aggregation views need SQLite online
        changes = diff_views(current.view, candidate) if current else []
        new_version = current is None or candidate.to_dict() != current.view.to_dict()
        if new_version:
            version = self.registry.put(candidate)
        else:
            assert current is not None
            version = current.version
        self._readers.clear()
        return Registration(candidate, version, new_version, 0, changes, self.registry.stats(candidate.name))

    def ingest(self, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
        """Append rows to a view's offline history; return how many were new."""
        _view_name(name)
        _check_namespace(namespace)
        table = to_arrow(data, namespace)
        check_batch(self._scratch(), self.registry.latest(name).view, table)  # store files stay closed until it passed
        with self.offline.connect() as con:
            latest = self.registry.latest(name)
            batch = check_batch(con, latest.view, table)
            # First data of a view registered without a schema fixes it in place, published
            # with the rows (fsnb.commit).
            fix = batch.view.to_dict() != latest.view.to_dict()
            rows = self.offline.write(batch, version=latest.version, publish=fix)
        self._readers.clear()
        return rows

    def delete_feature_view(self, name: str) -> None:
        """Remove a view, all its versions, its offline history and online values.

        Log entries still unapplied for it are dropped by the consumers: they belong to
        this view's identity, and a view created later under the name has another."""
        from fsnb.sync.log_state import forget_view

        _view_name(name)
        if not self.registry.has(name):  # a view with unreadable rows can still be deleted
            self.registry.latest(name)  # raises with a suggestion
        forget_view(self.registry, name)
        self.offline.drop(name)
        self.online.drop(name)
        self.registry.delete_view(name)
        self._readers.clear()

    def read(self, name: str, start: Any = None, end: Any = None) -> pl.DataFrame:
        """A view's offline history (optionally between two event times), oldest first."""
        from fsnb.timeutil import utc_ns

        view = self.registry.latest(_view_name(name)).view
        table = self.offline.read(
            view,
            utc_ns(start, "start") if start is not None else None,
            utc_ns(end, "end") if end is not None else None,
        )
        return _to_polars(table)

    def stats(self, name: str) -> dict[str, Any]:
        self.registry.latest(_view_name(name))
        return self.registry.stats(name)

    def _scratch(self) -> Any:
        """This thread's in-memory DuckDB, for checking data before any store file is opened."""
        return self.parts.caches.scratch()

    def _offline_rows(self, name: str) -> int:
        with self.offline.connect() as con:
            if not self.offline.table_exists(con, name):
                return 0
            return int(con.execute(f"SELECT count(*) FROM {offline_table(name)}").fetchall()[0][0])

    # -- feature references -------------------------------------------------------
    def resolve(self, features: str | Iterable[str], *, full_feature_names: bool = False) -> FeatureSelection:
        refs = parse_feature_refs(features)
        by_view: dict[str, ViewSelection] = {}
        for ref in refs:
            view = self.registry.latest(ref.view).view
            if ref.view not in by_view:
                by_view[ref.view] = ViewSelection(view, [], [])
            sel = by_view[ref.view]
            served = aggregation_views.served_features(view)  # hook: an aggregation view serves its aggregations
            names = list(served) if ref.feature == "*" else [ref.feature]
            for f in names:
                if f not in served:
                    hint = closest(f, served)
                    if view.features is None:
                        hint = "; the view has no data yet, so its features are not known"
                    msg = f"feature view '{view.name}' has no feature '{f}'{hint}"
                    raise UnknownFeature(msg)
                if f in sel.features:
                    continue
                sel.features.append(f)
                sel.output_names.append(f"{view.name}__{f}" if full_feature_names else f)
        selection = FeatureSelection(list(by_view.values()))
        seen: dict[str, str] = {}
        for sel in selection.selections:
            for out in sel.output_names:
                if out in seen:
                    msg = f"feature '{out}' comes from both '{seen[out]}' and '{sel.view.name}'"
                    raise InvalidDefinition(msg, hint=_FULL_NAMES_HINT)
                seen[out] = sel.view.name
        return selection

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
        """Join features to label rows point-in-time correctly (DESIGN section 2).

        Every label row comes back once, in input order, with its columns unchanged.
        """
        _flag("full_feature_names", full_feature_names)
        _flag("as_of_ingestion", as_of_ingestion)
        _column_name("timestamp_field", timestamp_field)
        selection = self.resolve(features, full_feature_names=full_feature_names)
        labels = _labels_frame(entity_df)
        joined = self._point_in_time(labels, selection, timestamp_field, as_of_ingestion=as_of_ingestion)
        return labels.hstack(joined.drop(ROW))

    def _point_in_time(
        self,
        labels: pl.DataFrame,
        selection: FeatureSelection,
        timestamp_field: str,
        *,
        as_of_ingestion: bool = False,
        with_event_times: bool = False,
    ) -> pl.DataFrame:
        """The features (and optionally the chosen rows' event times) per label row."""
        clash = [n for n in selection.output_names if n in labels.columns]
        if clash:
            msg = f"feature '{clash[0]}' has the name of a label column"
            raise InvalidDefinition(msg, hint=Hint("full_feature_names", "True", before="rename the column or "))
        keys = selection.entity_columns
        _check_label_columns(labels, keys, timestamp_field)
        narrow = labels.select([*keys, timestamp_field]) if timestamp_field not in keys else labels.select(keys)
        arrow = narrow.to_arrow()
        if timestamp_field in keys:
            arrow = arrow.append_column(T, arrow.column(timestamp_field))
        else:
            arrow = arrow.rename_columns([*keys, T])
        arrow = arrow.append_column(ROW, pa.array(np.arange(labels.height, dtype=np.int64)))
        with self.offline.connect() as con:
            label_types = arrow_duck_types(con, arrow)
            if not types.is_time(label_types[T]):
                msg = f"label column '{timestamp_field}' is {label_types[T]}, not a date/time"
                before = "convert it (e.g. pl.col(...).str.to_datetime()) or "
                raise InvalidData(msg, hint=Hint("timestamp_field", "<your time column>", before=before))
            bad = outside_ns_range(arrow.column(T))
            if bad is not None:
                msg = f"label column '{timestamp_field}' has {bad}, outside {NS_RANGE} (times compare at nanoseconds); drop or fix that row"
                raise InvalidData(msg)
            key_types: dict[str, str] = {}
            for sel in selection.selections:
                sel.has_table = self.offline.table_exists(con, sel.view.name)
                if sel.has_table:
                    _, sel.has_ties = self.offline.meta(con, sel.view.name)
                for k in sel.view.entity_columns:
                    registered = (sel.view.entity_types or {}).get(k)
                    if registered is None:
                        continue
                    if not types.key_compatible(label_types[k], registered):
                        msg = (
                            f"label column '{k}' is {label_types[k]} but '{sel.view.name}' keys it as {registered}; "
                            f"cast the label column to {registered}"
                        )
                        raise SchemaMismatch(msg)
                    key_types.setdefault(k, registered)
            for k in keys:
                key_types.setdefault(k, label_types[k])
            nulls = labels.select(pl.col(timestamp_field).null_count()).item()
            if nulls:
                msg = f"{nulls} label row(s) have a null '{timestamp_field}'; drop or fill them"
                raise InvalidData(msg)
            sql = point_in_time_sql(
                selection.selections, key_types, as_of_ingestion=as_of_ingestion, with_event_times=with_event_times
            )
            if any(s.view.aggregations for s in selection.selections):  # hook: fsnb.aggregation_views
                result = aggregation_views.point_in_time(
                    con, arrow, selection.selections, key_types, as_of_ingestion=as_of_ingestion,
                    with_event_times=with_event_times, plain=lambda sels: _plain_pit(con, arrow, sels, key_types, as_of_ingestion, with_event_times))
                return _to_polars(result)
            con.register(LABELS, arrow)
            try:
                result = con.sql(sql).to_arrow_table()
            finally:
                con.unregister(LABELS)
        return _to_polars(result)

    def explain_leakage(
        self,
        entity_df: Any,
        features: str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        label: str | None = None,
    ) -> Any:
        """Compare the point-in-time join with a naive latest-record join, row by row.

        Returns a ``fsnb.leakage.LeakageReport``; ``label`` (default: the labels'
        only non-key, non-time column) is used to measure metric inflation.
        """
        from fsnb.leakage import explain_leakage

        _column_name("timestamp_field", timestamp_field)
        if label is not None:
            _column_name("label", label)
        return explain_leakage(self, entity_df, features, timestamp_field=timestamp_field, label=label)

    # -- online retrieval -------------------------------------------------------------
    def get_online_features(
        self, features: str | Sequence[str], entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    ) -> dict[str, list[Any]]:
        """The latest value of each feature for each entity row (None if unknown or expired).

        entity_rows: rows ({key: value} each), one row, or {key: column} (a list, numpy
        array, pandas/polars Series or Arrow array per key). Values are typed against
        the view's key types; one that cannot have its key's type is a SchemaMismatch.
        """
        if not isinstance(features, str | list | tuple):
            parse_feature_refs(features)  # raises: not a reference or a list of them
            features = list(features)
        if not _plain_rows(entity_rows):
            _entity_rows(entity_rows)  # the shape, checked: one line naming what is wrong
        cache_key = (features,) if isinstance(features, str) else tuple(features)
        data_version = self._registry_version()
        cached = self._readers.get(cache_key)
        # A reader built before its online table existed (materialized later, maybe by
        # another process) is rebuilt; that costs a schema lookup per call until it exists.
        if cached is None or cached[0] != data_version or not cached[3]:
            self.online.forget_columns()
            readers, columns = self._build_readers(cache_key)
            cached = (data_version, readers, columns, all(r.exists for r in readers))
            self._readers[cache_key] = cached
        _, readers, entity_columns, _ = cached
        plan = self._key_plans.get(cache_key)
        if plan is None or plan.readers is not readers:
            plan = self._key_plans[cache_key] = KeyPlan(readers, entity_columns)
        out, reader_keys = plan.keys(entity_rows)
        now = now_us()
        for reader, keys in zip(readers, reader_keys, strict=True):
            try:
                rows = reader.read(keys, now)
            except self.online.stale_errors:
                # The table was dropped or altered by another process: rebuild once.
                self._readers.pop(cache_key, None)
                self.online.forget_columns()
                reader = self.online.reader(reader.view, reader.features, reader.output_names)
                rows = reader.read(keys, now)
            for name, values in zip(reader.output_names, rows, strict=True):
                out[name] = values
        return out

    def _registry_version(self) -> int:
        """The registry's change counter, read at most every 50 ms.

        Changes made through this store clear the readers at once; another process's
        new version is seen within 50 ms. Reading it on every call would cost a
        SQLite statement per lookup, a sixth of a single-entity read.
        """
        now = time.monotonic()
        caches = self.parts.caches
        if now - caches.registry_checked > 0.05:
            caches.registry_seen = self.registry.data_version()
            caches.registry_checked = now
        return caches.registry_seen

    def _build_readers(self, features: tuple[str, ...]) -> tuple[list[OnlineReader], list[str]]:
        selection = self.resolve(features)
        readers = [
            aggregation_views.reader(self.online, s.view, s.features, s.output_names) if s.view.aggregations  # hook
            else self.online.reader(s.view, s.features, s.output_names)
            for s in selection.selections
        ]
        offline_only = [s.view.name for s in selection.selections if not s.view.online]
        if offline_only:
            msg = f"feature view '{offline_only[0]}' is offline-only; register it with online=True to serve it"
            raise InvalidDefinition(msg)
        return readers, selection.entity_columns

    # -- training sets -----------------------------------------------------------------
    def record_training_set(self, name: str, frame: pl.DataFrame, features: Sequence[str], **detail: Any) -> str:
        """Remember a training set's fingerprint with the view versions it was built from."""
        from fsnb.fingerprint import fingerprint

        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            msg = f"a training set's name must be a non-empty one-line str, not {name!r}"
            raise InvalidDefinition(msg)
        if not isinstance(frame, pl.DataFrame):
            msg = f"record_training_set() takes the polars DataFrame get_historical_features returned, not {type(frame).__name__}"
            raise InvalidData(msg)
        if isinstance(features, str):
            features = [features]
        self.resolve(features)  # every reference names a known view and feature
        fp = fingerprint(frame)
        views = {ref.split(":")[0].strip() for ref in features}
        self.registry.record_training_set(
            name,
            fp,
            {
                "features": list(features),
                "views": {v: self.version_of(v) for v in sorted(views)},
                "rows": frame.height,
                "columns": frame.columns,
                **detail,
            },
        )
        return fp

    def list_training_sets(self) -> list[dict[str, Any]]:
        return self.registry.training_sets()

    # -- materialization ------------------------------------------------------------
    def materialize(self, start: Any = None, end: Any = None, *, views: Sequence[str] | None = None, progress: bool | None = None) -> dict[str, int]:
        """Copy each online view's latest values with event time in [start, end] (end
        defaults to now) into the online store; return rows written per view."""
        from fsnb.sync.materialize import materialize

        _materialize_args(views, progress)
        result = materialize(self.parts, start=start, end=end, views=views, incremental=False, progress=progress)
        self._readers.clear()
        return result

    def materialize_incremental(self, end: Any = None, *, views: Sequence[str] | None = None, progress: bool | None = None) -> dict[str, int]:
        """Copy what changed since each view's watermark (new event times or newly ingested rows)."""
        from fsnb.sync.materialize import materialize

        _materialize_args(views, progress)
        result = materialize(self.parts, start=None, end=end, views=views, incremental=True, progress=progress)
        self._readers.clear()
        return result

    # -- streaming (fsnb.sync) ---------------------------------------------------------------
    def push(self, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
        """Append a batch to the feature log and apply it to both stores; return its log offset.

        The batch is validated whole (against the newest view version it fits) and
        nothing is appended if it is bad; once this returns the entry is on disk.
        """
        from fsnb.sync.push import push

        _view_name(name)
        _check_namespace(namespace)
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

        _view_name(name)
        return check_skew(self.parts, name)


# -- argument checks at the public methods' entrance -------------------------------------
def _view_name(name: Any) -> str:
    if not isinstance(name, str):
        msg = f"a feature view name is a str, not {type(name).__name__} ({name!r})"
        raise InvalidDefinition(msg)
    return name


def _column_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        msg = f"{what} must be a column name (a non-empty str), not {name!r}"
        raise InvalidDefinition(msg)
    return name


def _flag(what: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        msg = f"{what} must be True or False, not {value!r}"
        raise InvalidDefinition(msg)


def _check_namespace(namespace: Any) -> None:
    if namespace is not None and not isinstance(namespace, Mapping):
        msg = f"namespace must be a dict of names to DataFrames (like globals()), not {type(namespace).__name__}"
        raise InvalidData(msg)


def _materialize_args(views: Any, progress: Any) -> None:
    if views is not None:
        if isinstance(views, str):
            msg = f"views is a list of names; write views=[{views!r}]"
            raise InvalidDefinition(msg)
        if not isinstance(views, list | tuple) or not all(isinstance(v, str) for v in views):
            msg = f"views must be a list of feature view names, not {views!r}"
            raise InvalidDefinition(msg)
    if progress is not None:
        _flag("progress", progress)


def _is_column(value: Any) -> bool:
    """A list-like of values (list, tuple, NumPy array, Series, Arrow array), not one value."""
    if isinstance(value, str | bytes | Mapping):
        return False
    if isinstance(value, list | tuple):
        return True
    return getattr(value, "ndim", 1) == 1 and hasattr(value, "__len__") and hasattr(value, "__iter__")


def _column_values(value: Any) -> list[Any]:
    for method in ("to_pylist", "to_list", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            return list(convert())
    return list(value)


_PLAIN_KEYS = frozenset({int, str, float, bool, type(None)})
_FULL_NAMES_HINT = Hint("full_feature_names", "True", after=" to name columns view__feature")
_ROWS_HINT = "pass a list of dicts like [{'user_id': 42}], or a dict of columns like {'user_id': [42, 43]}"


def _plain_rows(entity_rows: Any) -> bool:
    """One dict (or a list holding one) of plain Python values: the hot path, no checks needed."""
    row = entity_rows[0] if type(entity_rows) is list and len(entity_rows) == 1 else entity_rows
    return type(row) is dict and all(type(v) in _PLAIN_KEYS for v in row.values())


def _entity_rows(entity_rows: Any) -> list[Mapping[str, Any]]:
    """Normalize get_online_features' entity_rows to a list of {key: value} rows."""
    if isinstance(entity_rows, Mapping):
        columns = [k for k, v in entity_rows.items() if _is_column(v)]
        if not columns:
            rows: list[Any] = [entity_rows]
        elif len(columns) != len(entity_rows):
            single = next(k for k in entity_rows if k not in columns)
            msg = f"entity_rows mixes columns ({columns[0]!r}) and single values ({single!r}); {_ROWS_HINT}"
            raise InvalidData(msg)
        else:
            values = {k: _column_values(v) for k, v in entity_rows.items()}
            lengths = {k: len(v) for k, v in values.items()}
            if len(set(lengths.values())) > 1:
                msg = f"entity_rows columns differ in length ({lengths}); give every key one value per entity"
                raise InvalidData(msg)
            rows = [dict(zip(values, row, strict=True)) for row in zip(*values.values(), strict=True)]
    elif isinstance(entity_rows, list | tuple):
        rows = list(entity_rows)
    else:
        msg = f"entity_rows cannot be a {type(entity_rows).__name__}; {_ROWS_HINT}"
        raise InvalidData(msg)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            msg = f"entity row {i} is a {type(row).__name__}, not a dict; {_ROWS_HINT}"
            raise InvalidData(msg)
        for key, value in row.items():
            if type(value) in _PLAIN_KEYS:
                continue  # the common case, checked without isinstance calls (a hot path)
            if _is_column(value) or isinstance(value, Mapping | set | frozenset):
                msg = f"entity row {i} gives '{key}' a {type(value).__name__}; each row holds one value per key ({_ROWS_HINT})"
                raise InvalidData(msg)
    return rows


def _inherit_schema(view: FeatureView, current: FeatureView | None, *, has_data: bool) -> FeatureView:
    """Fill what the user left out (key and feature types, feature list) from the current version.

    Without a feature list, data defines the features (a new column is a new feature);
    without data either, the current version's features carry over.
    """
    if current is None:
        return view
    same_keys = view.entity_columns == current.entity_columns
    entity_types = view.entity_types or (current.entity_types if same_keys else None)
    features: list[str] | dict[str, str] | None
    if view.features is None and has_data:
        features = None
    elif view.features is None:
        features = _as_features(current.feature_types) if current.features is not None else None
    else:
        known = current.feature_types
        features = _as_features({f: t or known.get(f) for f, t in view.feature_types.items()})
    return dataclasses.replace(view, entity_types=entity_types, features=features)


def _as_features(types_by_name: Mapping[str, str | None]) -> list[str] | dict[str, str]:
    """A FeatureView features argument: typed when every type is known, else names only."""
    if any(t is None for t in types_by_name.values()):
        return list(types_by_name)
    return {f: str(t) for f, t in types_by_name.items()}


def _check_compatible(current: FeatureView, new: FeatureView, *, has_data: Callable[[], bool]) -> None:
    """Refuse a change the stored rows cannot follow; has_data is asked only if one is found."""
    if _compatible_with_data(current, new) or not has_data():
        return
    _raise_incompatible(current, new)


def _compatible_with_data(current: FeatureView, new: FeatureView) -> bool:
    try:
        _raise_incompatible(current, new)
    except SchemaMismatch:
        return False
    return True


def _raise_incompatible(current: FeatureView, new: FeatureView) -> None:
    hint = f"register it under a new name, or call store.delete_feature_view('{new.name}') first"
    if new.entity_columns != current.entity_columns:
        msg = f"'{new.name}' has data keyed by {list(current.entity_columns)}; it cannot be re-keyed by {list(new.entity_columns)}; {hint}"
        raise SchemaMismatch(msg)
    if new.timestamp_field != current.timestamp_field:
        msg = f"'{new.name}' has data stamped by '{current.timestamp_field}'; it cannot switch to '{new.timestamp_field}'; {hint}"
        raise SchemaMismatch(msg)
    if (new.created_timestamp_field or current.created_timestamp_field) and new.created_timestamp_field != current.created_timestamp_field:
        msg = f"'{new.name}' has data with created column {current.created_timestamp_field!r}; it cannot change to {new.created_timestamp_field!r}; {hint}"
        raise SchemaMismatch(msg)
    old_types = current.feature_types
    for f, t in new.feature_types.items():
        if t and old_types.get(f) and not types.storable_as(t, old_types[f] or ""):
            msg = f"feature '{f}' of '{new.name}' is stored as {old_types[f]}, not {t}; {hint}"
            raise SchemaMismatch(msg)


def _after_commit(action: Callable[[], object], what: str) -> None:
    """Run a step that follows a commit point: a full disk there is a warning, not a failure."""
    import sqlite3

    from fsnb.commit import RegistryBehind
    from fsnb.errors import one_line

    try:
        action()
    except (OSError, sqlite3.OperationalError) as exc:
        warnings.warn(f"fsnb: the rows are stored, but {what} failed: {one_line(exc)}", RegistryBehind, stacklevel=3)


def _plain_pit(con: Any, arrow: pa.Table, sels: list[ViewSelection], key_types: dict[str, str], as_of_ingestion: bool,
               with_event_times: bool) -> pa.Table:
    """The ordinary point-in-time plan on some selections (aggregation_views merges the rest)."""
    sql = point_in_time_sql(sels, key_types, as_of_ingestion=as_of_ingestion, with_event_times=with_event_times)
    con.register(LABELS, arrow)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.unregister(LABELS)


def _labels_frame(entity_df: Any) -> pl.DataFrame:
    if isinstance(entity_df, pl.DataFrame):
        return entity_df
    if isinstance(entity_df, pl.LazyFrame):
        try:
            return entity_df.collect()
        except pl.exceptions.PolarsError as exc:
            msg = f"cannot collect the labels LazyFrame: {one_line(exc)}"
            raise InvalidData(msg) from None
    # Not _to_polars: label columns pass through unchanged, time zone included.
    frame = pl.from_arrow(to_arrow(entity_df))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _check_label_columns(labels: pl.DataFrame, keys: list[str], timestamp_field: str) -> None:
    cols = labels.columns
    shown = ", ".join(cols[:12])
    if timestamp_field not in cols:
        msg = f"labels have no timestamp column '{timestamp_field}' (they have: {shown})"
        raise SchemaMismatch(msg, hint=Hint("timestamp_field", "<your time column>"))
    for k in keys:
        if k not in cols:
            msg = f"labels lack the entity column '{k}' (they have: {shown}); add it to join these features"
            raise SchemaMismatch(msg)


def _to_polars(table: pa.Table) -> pl.DataFrame:
    """Arrow to polars, with DuckDB's 'Etc/UTC' time zones written as 'UTC'."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    fixes = [
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC")
    ]
    return frame.with_columns(fixes) if fixes else frame
