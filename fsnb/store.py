"""FeatureStore: the public face of fsnb. It parses, checks and delegates; the SQL
lives in offline.py / pit.py / online.py / materialize.py."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from fsnb import types
from fsnb.backends.duckdb_offline import OfflineStore
from fsnb.backends.duckdb_pit import LABELS, ROW, T, ViewSelection, point_in_time_sql
from fsnb.backends.sqlite_online import OnlineStore, ViewReader
from fsnb.config import load_config
from fsnb.definitions import FeatureView, parse_feature_refs
from fsnb.errors import (
    FsnbError,
    InvalidData,
    InvalidDefinition,
    SchemaMismatch,
    UnknownFeature,
    closest,
)
from fsnb.registry import Registry, ViewVersion
from fsnb.sources import to_arrow
from fsnb.timeutil import now_us
from fsnb.validation import arrow_duck_types, check_batch

if TYPE_CHECKING:
    from typing import TypeAlias

    from fsnb.backends.redis_online import RedisOnlineStore, RedisViewReader

    Reader: TypeAlias = ViewReader | RedisViewReader

DEFAULT_PATH = ".fsnb"


@dataclass
class Registration:
    """What store.register() did."""

    view: FeatureView
    version: int
    new_version: bool
    rows_written: int = 0
    changes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        what = f"version {self.version}" + (" (new)" if self.new_version else " (unchanged)")
        return f"<Registration {self.view.name} {what}, {self.rows_written} rows written>"

    def _repr_html_(self) -> str:
        from fsnb.notebook.display import registration_html

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
            path = os.environ.get("FSNB_STORE", DEFAULT_PATH)
        self.path = Path(path).expanduser().resolve()
        if self.path.exists() and not self.path.is_dir():
            msg = f"store path {self.path} is a file; fsnb needs a directory (it creates it if missing)"
            raise FsnbError(msg)
        self.path.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(self.path / "registry.sqlite")
        self.offline = OfflineStore(self.path / "offline.duckdb", lock_timeout=lock_timeout)
        self.config = load_config(self.path, online=online, log=log)
        self.online = self._open_online()
        self._readers: dict[tuple[str, ...], tuple[int, list[Reader], list[str], bool]] = {}
        self._registry_checked = float("-inf")
        self._registry_seen = 0
        if (self.path / "log.sqlite").exists() or self.config.log not in (None, "sqlite"):
            from fsnb.sync.streaming import announce_uncommitted

            announce_uncommitted(self)  # a pushing process died before its consumers committed

    def _open_online(self) -> OnlineStore | RedisOnlineStore:
        url = self.config.online
        if url is None or url == "sqlite":
            return OnlineStore(self.path / "online.sqlite")
        from fsnb.backends.redis_online import RedisOnlineStore

        return RedisOnlineStore(url, namespace=self.store_id)

    @property
    def store_id(self) -> str:
        """A random id fixed at creation: names this store's keys in shared backends."""
        value = self.registry.get("store_id")
        if value is None:
            import uuid

            value = uuid.uuid4().hex[:12]
            self.registry.set("store_id", value)
        return str(value)

    def close(self) -> None:
        self.registry.close()
        self.online.close()
        log = self.__dict__.pop("_fsnb_log", None)
        if log is not None:
            log.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, views={self.registry.names()})"

    def _repr_html_(self) -> str:
        from fsnb.notebook.display import store_html

        return store_html(self)

    # -- definitions -------------------------------------------------------------
    def list_feature_views(self) -> list[FeatureView]:
        return [self.registry.latest(n).view for n in self.registry.names()]

    def get_feature_view(self, name: str, version: int | None = None) -> FeatureView:
        if version is None:
            return self.registry.latest(name).view
        for v in self.registry.versions(name):
            if v.version == version:
                return v.view
        known = [str(v.version) for v in self.registry.versions(name)]
        msg = f"feature view '{name}' has no version {version}; it has {', '.join(known)}"
        raise InvalidDefinition(msg)

    def list_versions(self, name: str) -> list[ViewVersion]:
        return self.registry.versions(name)

    def version_of(self, name: str) -> int:
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
        current = self.registry.latest(view.name) if self.registry.has(view.name) else None
        table = to_arrow(data, namespace) if data is not None else None
        candidate = _inherit_schema(view, current.view if current else None, has_data=table is not None)
        batch = None
        if table is not None:
            with self.offline.connect() as con:
                batch = check_batch(con, candidate, table)
            candidate = batch.view
            if current is not None and view.features is None:
                # Features inferred from the data keep the types already stored.
                stored = current.view.feature_types
                merged = {f: stored.get(f) or t for f, t in candidate.feature_types.items()}
                candidate = candidate.with_schema(candidate.entity_types or {}, merged)  # type: ignore[arg-type]
        if current is not None:
            _check_compatible(current.view, candidate, has_data=bool(self.registry.stats(view.name).get("rows")))
        changes = _diff(current.view, candidate) if current else []
        new_version = current is None or candidate.to_dict() != current.view.to_dict()
        if new_version:
            version = self.registry.put(candidate)
        else:
            assert current is not None
            version = current.version
        rows = 0
        try:
            if batch is not None:
                batch = dataclasses.replace(batch, view=candidate)
                rows = self.offline.write(batch, replace=replace)
        except BaseException:
            if new_version:
                self.registry.delete_version(view.name, version)
            raise
        if replace and batch is not None:
            self.online.drop(view.name)
        stats = self._refresh_stats(candidate) if batch is not None or new_version else self.registry.stats(view.name)
        self._readers.clear()
        return Registration(candidate, version, new_version, rows, changes, stats)

    def ingest(self, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
        """Append rows to a view's offline history; return how many were new."""
        latest = self.registry.latest(name)
        table = to_arrow(data, namespace)
        with self.offline.connect() as con:
            batch = check_batch(con, latest.view, table)
            if batch.view.to_dict() != latest.view.to_dict():
                # First data of a view registered without a schema: fix it in place.
                self.registry.put(batch.view, in_place_version=latest.version)
            try:
                rows = self.offline.write(batch)
            except BaseException:
                if batch.view.to_dict() != latest.view.to_dict():
                    self.registry.put(latest.view, in_place_version=latest.version)
                raise
        self._refresh_stats(batch.view)
        self._readers.clear()
        return rows

    def delete_feature_view(self, name: str) -> None:
        """Remove a view, all its versions, its offline history and online values."""
        self.registry.latest(name)
        self.offline.drop(name)
        self.online.drop(name)
        self.registry.delete_view(name)
        self._readers.clear()

    def read(self, name: str, start: Any = None, end: Any = None) -> pl.DataFrame:
        """A view's offline history (optionally between two event times), oldest first."""
        from fsnb.timeutil import utc

        view = self.registry.latest(name).view
        table = self.offline.read(
            view,
            utc(start, "start") if start is not None else None,
            utc(end, "end") if end is not None else None,
        )
        return _to_polars(table)

    def stats(self, name: str) -> dict[str, Any]:
        self.registry.latest(name)
        return self.registry.stats(name)

    def _refresh_stats(self, view: FeatureView) -> dict[str, Any]:
        stats = self.offline.stats(view)
        self.registry.set_stats(view.name, stats)
        return stats

    # -- feature references -------------------------------------------------------
    def resolve(self, features: str | Iterable[str], *, full_feature_names: bool = False) -> FeatureSelection:
        refs = parse_feature_refs(features)
        by_view: dict[str, ViewSelection] = {}
        for ref in refs:
            view = self.registry.latest(ref.view).view
            if ref.view not in by_view:
                by_view[ref.view] = ViewSelection(view, [], [])
            sel = by_view[ref.view]
            names = list(view.feature_names) if ref.feature == "*" else [ref.feature]
            for f in names:
                if f not in view.feature_names:
                    hint = closest(f, view.feature_names)
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
                    msg = (
                        f"feature '{out}' comes from both '{seen[out]}' and '{sel.view.name}'; "
                        "pass full_feature_names=True to name columns view__feature"
                    )
                    raise InvalidDefinition(msg)
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
            msg = f"feature '{clash[0]}' has the name of a label column; rename the column or pass full_feature_names=True"
            raise InvalidDefinition(msg)
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
                msg = (
                    f"label column '{timestamp_field}' is {label_types[T]}, not a date/time; "
                    "convert it (e.g. pl.col(...).str.to_datetime()) or pass timestamp_field=<your time column>"
                )
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

        return explain_leakage(self, entity_df, features, timestamp_field=timestamp_field, label=label)

    # -- online retrieval -------------------------------------------------------------
    def get_online_features(
        self, features: str | Sequence[str], entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    ) -> dict[str, list[Any]]:
        """The latest value of each feature for each entity row (None if unknown or expired)."""
        if isinstance(entity_rows, Mapping):
            entity_rows = [entity_rows]
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
        out: dict[str, list[Any]] = {}
        try:
            for k in entity_columns:
                out[k] = [row[k] for row in entity_rows]
        except KeyError as exc:
            msg = f"entity row lacks key '{exc.args[0]}'; give every row {entity_columns}"
            raise InvalidData(msg) from None
        now = now_us()
        for reader in readers:
            keys = [out[k] for k in reader.view.entity_columns]
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
        if now - self._registry_checked > 0.05:
            self._registry_seen = self.registry.data_version()
            self._registry_checked = now
        return self._registry_seen

    def _build_readers(self, features: tuple[str, ...]) -> tuple[list[Reader], list[str]]:
        selection = self.resolve(features)
        readers = [self.online.reader(s.view, s.features, s.output_names) for s in selection.selections]
        offline_only = [s.view.name for s in selection.selections if not s.view.online]
        if offline_only:
            msg = f"feature view '{offline_only[0]}' is offline-only; register it with online=True to serve it"
            raise InvalidDefinition(msg)
        return readers, selection.entity_columns

    # -- training sets -----------------------------------------------------------------
    def record_training_set(self, name: str, frame: pl.DataFrame, features: Sequence[str], **detail: Any) -> str:
        """Remember a training set's fingerprint with the view versions it was built from."""
        from fsnb.fingerprint import fingerprint

        fp = fingerprint(frame)
        views = {ref.split(":")[0] for ref in features}
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

        result = materialize(self, start=start, end=end, views=views, incremental=False, progress=progress)
        self._readers.clear()
        return result

    def materialize_incremental(self, end: Any = None, *, views: Sequence[str] | None = None, progress: bool | None = None) -> dict[str, int]:
        """Copy what changed since each view's watermark (new event times or newly ingested rows)."""
        from fsnb.sync.materialize import materialize

        result = materialize(self, start=None, end=end, views=views, incremental=True, progress=progress)
        self._readers.clear()
        return result

    # -- streaming (fsnb.sync.streaming) -------------------------------------------------------
    def push(self, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
        """Append a batch to the feature log and apply it to both stores; return its log offset.

        The batch is validated whole (against the newest view version it fits) and
        nothing is appended if it is bad; once this returns the entry is on disk.
        """
        from fsnb.sync.streaming import push

        return push(self, name, data, namespace=namespace)

    def sync(self) -> dict[str, int]:
        """Apply log entries a consumer had not committed (what a restarted process runs)."""
        from fsnb.sync.streaming import sync

        result = sync(self)
        self._readers.clear()
        return result

    def freshness(self) -> pl.DataFrame:
        """Per view: newest event time offline and online, log end, consumer offsets and lag."""
        from fsnb.sync.streaming import freshness

        return freshness(self)

    def check_skew(self, name: str) -> Any:
        """Compare each online vector with the offline point-in-time value now (a SkewReport)."""
        from fsnb.sync.streaming import check_skew

        return check_skew(self, name)


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


def _check_compatible(current: FeatureView, new: FeatureView, *, has_data: bool) -> None:
    if not has_data:
        return
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


def _diff(old: FeatureView, new: FeatureView) -> list[str]:
    """Human-readable changes between two versions."""
    changes = []
    a, b = old.to_dict(), new.to_dict()
    old_f, new_f = old.feature_types, new.feature_types
    added = [f for f in new_f if f not in old_f]
    removed = [f for f in old_f if f not in new_f]
    if added:
        changes.append("added " + ", ".join(added))
    if removed:
        changes.append("removed " + ", ".join(removed))
    retyped = [f"{f}: {old_f[f]} -> {new_f[f]}" for f in new_f if f in old_f and old_f[f] and new_f[f] and old_f[f] != new_f[f]]
    changes.extend(retyped)
    for key in ("ttl_seconds", "online", "sync", "description", "tags", "query", "entities", "timestamp_field", "created_timestamp_field"):
        if a.get(key) != b.get(key):
            changes.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changes


def _labels_frame(entity_df: Any) -> pl.DataFrame:
    if isinstance(entity_df, pl.DataFrame):
        return entity_df
    if isinstance(entity_df, pl.LazyFrame):
        return entity_df.collect()
    return _to_polars(to_arrow(entity_df))


def _check_label_columns(labels: pl.DataFrame, keys: list[str], timestamp_field: str) -> None:
    cols = labels.columns
    shown = ", ".join(cols[:12])
    if timestamp_field not in cols:
        msg = f"labels have no timestamp column '{timestamp_field}' (they have: {shown}); pass timestamp_field=<your time column>"
        raise SchemaMismatch(msg)
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
