"""The view a batch or log entry is checked and applied under.

A producer may still send an older version's schema, and an entry may come from a
version since replaced: it is applied under the latest version, with the features a
later version added left null, and types taken from the entry where the registry has
none yet (docs/architecture.md, "Streaming").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fsnb.definitions import FeatureView
from fsnb.sync.log_state import is_deleted
from fsnb.validation import CheckedBatch, check_batch

if TYPE_CHECKING:
    from fsnb.parts import Caches
    from fsnb.registry import Registry


def checked(caches: Caches, view: FeatureView, table: pa.Table) -> CheckedBatch:
    """check_batch, remembering what depends only on the schema: a producer sends the
    same schema over and over, and only emptiness and null keys/times depend on the rows."""
    memo: dict[tuple[str, Any], Any] = caches.checked
    key = (view.definition_hash(), table.schema)
    known = memo.get(key)
    if known is not None and table.num_rows and not any(table.column(c).null_count for c in view.system_columns):
        return CheckedBatch(table, known.view, known.column_types)
    result = check_batch(caches.scratch(), view, table)
    if len(memo) > 64:
        memo.clear()
    memo[key] = result
    return result


class EntryViews:
    """Each entry's version and the view it is applied under (latest plus older features)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[tuple[str, int], tuple[FeatureView, dict[str, str | None]] | None] = {}
        self._dead: dict[str, bool] = {}

    def get(self, name: str, version: int, identity: str = "") -> tuple[FeatureView, dict[str, str | None]] | None:
        """(view to apply under, the type of each of its features, None where not known yet);
        None when the entry's view was deleted (identity: the entry's view_id)."""
        if identity:
            if identity not in self._dead:
                self._dead[identity] = is_deleted(self.registry, identity)
            if self._dead[identity]:
                return None  # pushed to a view since deleted: a new view of the name is another view
        key = (name, version)
        if key not in self._cache:
            self._cache[key] = self._load(name, version)
        return self._cache[key]

    def _load(self, name: str, version: int) -> tuple[FeatureView, dict[str, str | None]] | None:
        if not self.registry.has(name):
            return None  # the view was deleted after the push: its entries have nowhere to go
        versions = {v.version: v.view for v in self.registry.versions(name)}
        latest = versions[max(versions)]
        own = versions.get(version, latest)
        feats = dict(own.feature_types)
        for f, t in latest.feature_types.items():
            feats.setdefault(f, t)
        target = replace(
            latest,
            features={f: t for f, t in feats.items() if t} if all(feats.values()) else list(feats),
            entity_types=latest.entity_types or own.entity_types,
        )
        return target, feats


def typed(caches: Caches, view: FeatureView, hints: dict[str, str | None], table: pa.Table) -> FeatureView:
    """The view with key and feature types (taken from the entry if the registry lacks them)."""
    if view.schema_known:
        return view
    present = set(table.column_names)
    known = {f: t for f, t in hints.items() if t is not None}
    probe = replace(view, features=[f for f in view.feature_names if f in present])
    inferred = checked(caches, probe, table).view
    # A feature without a type that this entry lacks never had a value anywhere (the first
    # push carrying it fixes its type): leave it out rather than guess a column type.
    features = {
        f: known.get(f) or inferred.feature_types.get(f) or "VARCHAR"
        for f in view.feature_names
        if f in known or f in present
    }
    return replace(view, features=features, entity_types=view.entity_types or inferred.entity_types)


def conform(table: pa.Table, view: FeatureView) -> pa.Table:
    """Add the features a later version introduced (null for entries written before it)."""
    n = table.num_rows
    for f in view.feature_names:
        if f not in table.column_names:
            table = table.append_column(f, pa.nulls(n))
    return table.select([*view.system_columns, *view.feature_names])
