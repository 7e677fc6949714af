"""Definitions and rows in: register, ingest, delete. Every write that publishes a
version and its rows goes through the offline store's commit protocol (fsnb.commit): the
new version and its rows commit together, or neither does."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsnb import aggregation_views, offline_engine, types
from fsnb.backends.duckdb_offline import Written
from fsnb.definitions import FeatureView, ViewChange, diff_views
from fsnb.errors import SchemaMismatch
from fsnb.offline_engine import check, source
from fsnb.validation import check_view

if TYPE_CHECKING:
    from fsnb.parts import StoreParts
    from fsnb.registry_rows import ViewVersion


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


def register(parts: StoreParts, view: FeatureView, data: Any, *, replace: bool, namespace: Mapping[str, Any] | None) -> Registration:
    """store.register(): arguments already checked at the facade."""
    registry, offline, online = parts.registry, parts.offline, parts.online
    table = source(parts, data, namespace) if data is not None else None
    if table is None:
        return register_definition(parts, view)
    # Checked first in memory, so a refused batch never opens (or creates) a store file.
    known = registry.latest(view.name) if registry.has(view.name) else None
    check(parts, parts.caches.scratch(), inherit_schema(view, known.view if known else None, has_data=True), table)
    # Everything under the offline store's lock: nobody else writes this view meanwhile,
    # and the new version and its rows commit together (fsnb.commit).
    with offline.connect() as con:
        current = registry.latest(view.name) if registry.has(view.name) else None
        candidate = inherit_schema(view, current.view if current else None, has_data=True)
        batch = check(parts, con, candidate, table)
        candidate = batch.view
        if current is not None and view.features is None:
            # Features inferred from the data keep the types already stored.
            stored = current.view.feature_types
            merged = {f: stored.get(f) or t for f, t in candidate.feature_types.items()}
            candidate = candidate.with_schema(candidate.entity_types or {}, merged)  # type: ignore[arg-type]
            check(parts, con, candidate, table)  # the data fits the stored types too
        check_view(candidate, online.columns(view.name))  # what every store can hold
        aggregation_views.check_online(online, candidate)  # hook: aggregation views need SQLite online
        if current is not None:
            check_compatible(current.view, candidate, has_data=lambda: offline_engine.has_rows(parts, con, view.name))
        changes = diff_views(current.view, candidate) if current else []
        new_version = current is None or candidate.to_dict() != current.view.to_dict()
        if new_version:
            version = registry.next_version(view.name)
        else:
            assert current is not None
            version = current.version
        batch = dataclasses.replace(batch, view=candidate)
        before = offline_rows(parts, view.name) if replace else 0
        rows = offline_engine.write(parts, con, batch, replace=replace, version=version, publish=new_version)
        # The commit point is behind us: what follows must not report the rows as not written.
        stats = registry.stats(view.name)
        if replace and before + rows > int(stats.get("rows") or 0):
            # Rows were removed offline: an online value may come from one of them. The
            # view's online values go (with the watermark, so the next materialize,
            # incremental or not, copies the remaining history). Re-running an unchanged
            # definition, or one that only adds rows, leaves them as they are.
            after_commit(lambda: online.drop(view.name), f"dropping the online values of '{view.name}'")
    parts.caches.readers.clear()
    removed, kept = (rows.removed, rows.kept) if isinstance(rows, Written) else (0, 0)
    return Registration(candidate, version, new_version, int(rows), changes, stats, removed, kept)


def register_definition(parts: StoreParts, view: FeatureView) -> Registration:
    """register() without data: a changed definition becomes a new version at once."""
    registry, offline = parts.registry, parts.offline
    current = registry.latest(view.name) if registry.has(view.name) else None
    candidate = inherit_schema(view, current.view if current else None, has_data=False)
    if current is not None and not compatible_with_data(current.view, candidate):
        # Allowed only if the offline store holds no rows, asked (and the version
        # stored) while holding it so that no ingest slips in between.
        with offline.connect() as con:
            check_compatible(current.view, candidate, has_data=lambda: offline_engine.has_rows(parts, con, view.name))
            return _register_definition_unchecked(parts, current, candidate)
    return _register_definition_unchecked(parts, current, candidate)


def _register_definition_unchecked(parts: StoreParts, current: ViewVersion | None, candidate: FeatureView) -> Registration:
    check_view(candidate, parts.online.columns(candidate.name))  # what every store can hold, data or not
    aggregation_views.check_online(parts.online, candidate)  # hook: aggregation views need SQLite online
    changes = diff_views(current.view, candidate) if current else []
    new_version = current is None or candidate.to_dict() != current.view.to_dict()
    if new_version:
        version = parts.registry.put(candidate)
    else:
        assert current is not None
        version = current.version
    parts.caches.readers.clear()
    return Registration(candidate, version, new_version, 0, changes, parts.registry.stats(candidate.name))


def ingest(parts: StoreParts, name: str, data: Any, *, namespace: Mapping[str, Any] | None) -> int:
    """store.ingest(): append rows to a view's offline history; how many were new."""
    registry = parts.registry
    table = source(parts, data, namespace)
    check(parts, parts.caches.scratch(), registry.latest(name).view, table)  # store files stay closed until it passed
    with parts.offline.connect() as con:
        latest = registry.latest(name)
        batch = check(parts, con, latest.view, table)
        # First data of a view registered without a schema fixes it in place, published
        # with the rows (fsnb.commit).
        fix = batch.view.to_dict() != latest.view.to_dict()
        rows = offline_engine.write(parts, con, batch, version=latest.version, publish=fix)
    parts.caches.readers.clear()
    return rows


def record_training_set(parts: StoreParts, name: str, frame: Any, features: Sequence[str], detail: dict[str, Any]) -> str:
    """Remember a training set's fingerprint with the view versions it was built from."""
    from fsnb.fingerprint import fingerprint
    from fsnb.selection import resolve

    resolve(parts.registry, features)  # every reference names a known view and feature
    fp = fingerprint(frame)
    views = {ref.split(":")[0].strip() for ref in features}
    parts.registry.record_training_set(
        name,
        fp,
        {
            "features": list(features),
            "views": {v: parts.registry.latest(v).version for v in sorted(views)},
            "rows": frame.height,
            "columns": frame.columns,
            **detail,
        },
    )
    return fp


def delete_view(parts: StoreParts, name: str) -> None:
    """Drop a view's offline history, online values and every version (log entries aside)."""
    offline_engine.drop(parts, name)
    parts.online.drop(name)
    parts.registry.delete_view(name)
    parts.caches.readers.clear()


def offline_rows(parts: StoreParts, name: str) -> int:
    return offline_engine.row_count(parts, name)


def inherit_schema(view: FeatureView, current: FeatureView | None, *, has_data: bool) -> FeatureView:
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


def check_compatible(current: FeatureView, new: FeatureView, *, has_data: Callable[[], bool]) -> None:
    """Refuse a change the stored rows cannot follow; has_data is asked only if one is found."""
    if compatible_with_data(current, new) or not has_data():
        return
    _raise_incompatible(current, new)


def compatible_with_data(current: FeatureView, new: FeatureView) -> bool:
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


def after_commit(action: Callable[[], object], what: str) -> None:
    """Run a step that follows a commit point: a full disk there is a warning, not a failure."""
    import sqlite3

    from fsnb.commit import RegistryBehind
    from fsnb.errors import one_line

    try:
        action()
    except (OSError, sqlite3.OperationalError) as exc:
        warnings.warn(f"fsnb: the rows are stored, but {what} failed: {one_line(exc)}", RegistryBehind, stacklevel=4)
