"""Online retrieval: the latest value of each feature per entity, through cached readers
and key plans (a hot path: a single-entity lookup is a few microseconds of Python)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fsnb import aggregation_views
from fsnb.arguments import entity_rows as check_entity_rows
from fsnb.arguments import plain_rows
from fsnb.definitions import parse_feature_refs
from fsnb.entity import KeyPlan
from fsnb.errors import InvalidDefinition
from fsnb.selection import resolve
from fsnb.timeutil import now_us

if TYPE_CHECKING:
    from fsnb.backends.contracts import OnlineReader as Reader
    from fsnb.parts import StoreParts


def online_features(
    parts: StoreParts, features: str | Sequence[str], entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]
) -> dict[str, list[Any]]:
    """What FeatureStore.get_online_features returns (see its docstring)."""
    if not isinstance(features, str | list | tuple):
        parse_feature_refs(features)  # raises: not a reference or a list of them
        features = list(features)
    if not plain_rows(entity_rows):
        check_entity_rows(entity_rows)  # the shape, checked: one line naming what is wrong
    caches = parts.caches
    online = parts.online
    cache_key = (features,) if isinstance(features, str) else tuple(features)
    data_version = registry_version(parts)
    cached = caches.readers.get(cache_key)
    # A reader built before its online table existed (materialized later, maybe by
    # another process) is rebuilt; that costs a schema lookup per call until it exists.
    if cached is None or cached[0] != data_version or not cached[3]:
        online.forget_columns()
        readers, columns = build_readers(parts, cache_key)
        cached = (data_version, readers, columns, all(r.exists for r in readers))
        caches.readers[cache_key] = cached
    _, readers, entity_columns, _ = cached
    plan = caches.key_plans.get(cache_key)
    if plan is None or plan.readers is not readers:
        plan = caches.key_plans[cache_key] = KeyPlan(readers, entity_columns)
    out, reader_keys = plan.keys(entity_rows)
    now = now_us()
    for reader, keys in zip(readers, reader_keys, strict=True):
        try:
            rows = reader.read(keys, now)
        except online.stale_errors:
            # The table was dropped or altered by another process: rebuild once.
            caches.readers.pop(cache_key, None)
            online.forget_columns()
            reader = online.reader(reader.view, reader.features, reader.output_names)
            rows = reader.read(keys, now)
        for name, values in zip(reader.output_names, rows, strict=True):
            out[name] = values
    return out


def registry_version(parts: StoreParts) -> int:
    """The registry's change counter, read at most every 50 ms.

    Changes made through this store clear the readers at once; another process's
    new version is seen within 50 ms. Reading it on every call would cost a
    SQLite statement per lookup, a sixth of a single-entity read.
    """
    now = time.monotonic()
    caches = parts.caches
    if now - caches.registry_checked > 0.05:
        caches.registry_seen = parts.registry.data_version()
        caches.registry_checked = now
    return caches.registry_seen


def build_readers(parts: StoreParts, features: tuple[str, ...]) -> tuple[list[Reader], list[str]]:
    selection = resolve(parts.registry, features)
    readers = [
        aggregation_views.reader(parts.online, s.view, s.features, s.output_names) if s.view.aggregations  # hook
        else parts.online.reader(s.view, s.features, s.output_names)
        for s in selection.selections
    ]
    offline_only = [s.view.name for s in selection.selections if not s.view.online]
    if offline_only:
        msg = f"feature view '{offline_only[0]}' is offline-only; register it with online=True to serve it"
        raise InvalidDefinition(msg)
    return readers, selection.entity_columns
