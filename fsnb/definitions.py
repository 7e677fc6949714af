"""Feature view definitions and feature references: plain data, no storage."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal, cast

from fsnb.aggregation import Aggregation, aggregations_from_dict, check_view_aggregations, describe
from fsnb.errors import InvalidDefinition
from fsnb.sqlnames import check_name as check_name  # re-exported: modules import it from here
from fsnb.timeutil import format_ttl as format_ttl  # re-exported: it states a FeatureView's TTL
from fsnb.types import parse_type

_TTL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|s|w)\s*$")
_TTL_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

SyncMode = Literal["materialize", "stream"]
TtlInput = timedelta | str | int | float | None  # what a user may write; a FeatureView keeps timedelta | None


def parse_ttl(ttl: TtlInput) -> timedelta | None:
    """Turn "30d"/"12h"/"90m"/"45s" (or seconds, or a timedelta) into a timedelta."""
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        if ttl < timedelta(0):
            msg = f"ttl must not be negative (got {ttl}); use None for no limit"
            raise InvalidDefinition(msg)
        return ttl
    if isinstance(ttl, bool) or not isinstance(ttl, str | numbers.Real):
        msg = f"ttl must be a timedelta, a string like '30d', a number of seconds or None, not {type(ttl).__name__}"
        raise InvalidDefinition(msg)
    if isinstance(ttl, str):
        match = _TTL_RE.match(ttl)
        if not match:
            msg = f"cannot read ttl {ttl!r}; write it like '30d', '12h', '90m' or '45s'"
            raise InvalidDefinition(msg)
        amount, unit = match.groups()
        return _ttl_delta(float(amount), _TTL_UNITS[unit], ttl)
    return parse_ttl(_ttl_delta(float(ttl), "seconds", ttl))


def _ttl_delta(amount: float, unit: str, given: object) -> timedelta:
    if not math.isfinite(amount):
        msg = f"ttl {given!r} is not a finite duration; use None for no limit"
        raise InvalidDefinition(msg)
    try:
        return timedelta(**{unit: amount})
    except OverflowError:
        msg = f"ttl {given!r} is too long (at most {timedelta.max.days} days); use None for no limit"
        raise InvalidDefinition(msg) from None




def _names(kind: str, view: str, value: object) -> list[str]:
    """A str or a list/tuple of str, each a valid name, as a list."""
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        msg = f"the {kind}s of '{view}' must be a name or a list of names, not {type(value).__name__}"
        raise InvalidDefinition(msg)
    return [check_name(kind, item) for item in items]  # type: ignore[arg-type]


def _str_map(what: str, view: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        msg = f"{what} of '{view}' must be a dict of str to str, like {{'team': 'growth'}}"
        raise InvalidDefinition(msg)
    return dict(value)


@dataclass(frozen=True, init=False)
class FeatureView:
    """A named set of features keyed by entity columns and stamped with an event time.

    ``features`` is None (every other column of the data), a list of names, or a
    mapping of name to DuckDB type (``{"login_count": "BIGINT"}``). ``ttl`` is given as
    "30d"/"12h"/"90m"/"45s", seconds or a timedelta, and kept as a timedelta (or None).
    """

    name: str
    entities: Sequence[str] | str = ("entity_id",)
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    ttl: timedelta | None = None
    features: Sequence[str] | Mapping[str, str] | None = None
    online: bool = True
    sync: SyncMode = "materialize"
    description: str = ""
    tags: Mapping[str, str] | None = None
    query: str | None = None
    entity_types: Mapping[str, str] | None = field(default=None, compare=True)
    aggregations: Sequence[Aggregation] | None = None  # fsnb.aggregation_views

    def __init__(
        self,
        name: str,
        entities: Sequence[str] | str = ("entity_id",),
        timestamp_field: str = "event_timestamp",
        created_timestamp_field: str | None = None,
        ttl: TtlInput = None,
        features: Sequence[str] | Mapping[str, str] | None = None,
        online: bool = True,
        sync: SyncMode = "materialize",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        query: str | None = None,
        entity_types: Mapping[str, str] | None = None,
        aggregations: Sequence[Aggregation] | None = None,
    ) -> None:
        # By hand, as the dataclass's own __init__ would type ttl as what it keeps: the
        # user's ttl is parsed once, in _check, and every reader sees timedelta | None.
        for key, value in locals().items():
            if key not in ("self", "ttl"):
                object.__setattr__(self, key, value)
        self._check(ttl)

    def _check(self, ttl: TtlInput) -> None:
        check_name("feature view", self.name)
        entities = _names("entity column", self.name, self.entities)
        if not entities:
            msg = f"feature view '{self.name}' needs at least one entity column"
            raise InvalidDefinition(msg)
        if len(set(entities)) != len(entities):
            msg = f"feature view '{self.name}' lists an entity column twice: {entities}"
            raise InvalidDefinition(msg)
        check_name("timestamp column", self.timestamp_field)
        if self.created_timestamp_field is not None:
            check_name("created timestamp column", self.created_timestamp_field)
        object.__setattr__(self, "entities", tuple(entities))
        check_name("timestamp column", self.timestamp_field)
        if self.timestamp_field in entities:
            msg = f"'{self.timestamp_field}' is an entity column of '{self.name}'; the timestamp_field must be another column"
            raise InvalidDefinition(msg)
        created = self.created_timestamp_field
        if created is not None:
            check_name("created timestamp column", created)
            if created == self.timestamp_field or created in entities:
                role = "the timestamp_field" if created == self.timestamp_field else "an entity column"
                msg = f"created_timestamp_field '{created}' is {role} of '{self.name}'; name another column, or None"
                raise InvalidDefinition(msg)
        object.__setattr__(self, "ttl", parse_ttl(ttl))
        if self.sync not in ("materialize", "stream"):
            msg = f"sync must be 'materialize' or 'stream', not {self.sync!r}"
            raise InvalidDefinition(msg)
        if not isinstance(self.online, bool):
            if type(self.online).__module__ != "numpy" or type(self.online).__name__ != "bool":
                msg = f"online must be True or False, not {self.online!r}"
                raise InvalidDefinition(msg)
            object.__setattr__(self, "online", bool(self.online))
        if self.description is None:
            object.__setattr__(self, "description", "")
        elif not isinstance(self.description, str):
            msg = f"description of '{self.name}' must be a str, not {type(self.description).__name__}"
            raise InvalidDefinition(msg)
        if self.query is not None and not isinstance(self.query, str):
            msg = f"query of '{self.name}' must be a SQL str or None, not {type(self.query).__name__}"
            raise InvalidDefinition(msg)
        features = self.features
        if features is not None:
            if isinstance(features, Mapping):
                if not all(isinstance(v, str) and v.strip() for v in features.values()):
                    msg = f"features of '{self.name}' map names to DuckDB type names like 'BIGINT'; a type is not a str"
                    raise InvalidDefinition(msg)
                names = _names("feature", self.name, list(features))
                feats: tuple[tuple[str, str | None], ...] = tuple(
                    (n, _feature_type(self.name, n, t)) for n, t in zip(names, features.values(), strict=True)
                )
            else:
                names = _names("feature", self.name, features)
                feats = tuple((n, None) for n in names)
            if len(set(names)) != len(names):
                msg = f"feature view '{self.name}' lists a feature twice: {names}"
                raise InvalidDefinition(msg)
            reserved = {*entities, self.timestamp_field, self.created_timestamp_field}
            clash = [n for n in names if n in reserved]
            if clash:
                msg = f"'{clash[0]}' is a key or timestamp column of '{self.name}', not a feature; remove it from features"
                raise InvalidDefinition(msg)
            object.__setattr__(self, "features", feats)
        object.__setattr__(self, "tags", _str_map("tags", self.name, self.tags or {}))
        if self.entity_types is not None:
            mapping = _str_map("entity_types", self.name, self.entity_types)
            object.__setattr__(
                self, "entity_types", {check_name("entity column", k): parse_type(t) for k, t in mapping.items()}
            )
        if self.aggregations is not None:  # hook: window aggregations (docs/architecture.md)
            object.__setattr__(self, "aggregations", check_view_aggregations(self))

    # -- derived -----------------------------------------------------------------
    @property
    def entity_columns(self) -> tuple[str, ...]:
        return tuple(self.entities)

    @property
    def _pairs(self) -> tuple[tuple[str, str | None], ...]:
        """The features as __post_init__ left them: (name, type or None) pairs."""
        return cast("tuple[tuple[str, str | None], ...]", self.features or ())

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self._pairs)

    @property
    def feature_types(self) -> dict[str, str | None]:
        return dict(self._pairs)

    @property
    def schema_known(self) -> bool:
        """True when every feature and key has a type (set at first ingest if not given)."""
        return (
            self.features is not None
            and all(t is not None for _, t in self._pairs)
            and self.entity_types is not None
        )

    @property
    def system_columns(self) -> tuple[str, ...]:
        cols = [*self.entity_columns, self.timestamp_field]
        if self.created_timestamp_field:
            cols.append(self.created_timestamp_field)
        return tuple(cols)

    def with_schema(self, entity_types: Mapping[str, str], feature_types: Mapping[str, str]) -> FeatureView:
        return replace(self, entity_types=dict(entity_types), features=dict(feature_types))

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": list(self.entity_columns),
            "entity_types": dict(self.entity_types) if self.entity_types else None,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "ttl_seconds": self.ttl.total_seconds() if self.ttl is not None else None,
            "features": [[n, t] for n, t in self._pairs] if self.features is not None else None,
            "online": bool(self.online),
            "sync": self.sync,
            "description": self.description,
            "tags": dict(self.tags or {}),
            "query": self.query,
            **({"aggregations": [a.to_dict() for a in self.aggregations]} if self.aggregations else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureView:
        """Rebuild a view from to_dict()'s output, checking every field's type.

        The dict comes from a store file that may be damaged or crafted: anything that
        to_dict() could not have written raises InvalidDefinition (the registry names
        the file).
        """
        if not isinstance(data, Mapping):
            msg = f"a definition must be a JSON object, not {type(data).__name__}"
            raise InvalidDefinition(msg)
        missing = [k for k in ("name", "entities", "timestamp_field") if k not in data]
        if missing:
            msg = f"the definition lacks {', '.join(missing)}"
            raise InvalidDefinition(msg)
        entities = _field(data, "entities", list)
        feats = _field(data, "features", list, optional=True)
        entity_types = _field(data, "entity_types", dict, optional=True)
        ttl = data.get("ttl_seconds")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
                msg = f"ttl_seconds must be a number of seconds or null, not {ttl!r:.40}"
                raise InvalidDefinition(msg)
            if not 0 <= ttl <= timedelta.max.total_seconds() / 2:
                msg = f"ttl_seconds {ttl!r:.40} is out of range"
                raise InvalidDefinition(msg)
        online = data.get("online", True)
        if not isinstance(online, bool):
            msg = f"online must be true or false, not {online!r:.40}"
            raise InvalidDefinition(msg)
        return cls(
            name=_field(data, "name", str),
            entities=tuple(entities),
            timestamp_field=_field(data, "timestamp_field", str),
            created_timestamp_field=_field(data, "created_timestamp_field", str, optional=True),
            ttl=timedelta(seconds=ttl) if ttl is not None else None,
            features=None if feats is None else _features_from_pairs(feats),
            online=online,
            sync=_field(data, "sync", str, default="materialize"),
            description=_field(data, "description", str, default=""),
            tags=_field(data, "tags", dict, optional=True) or {},
            query=_field(data, "query", str, optional=True),
            entity_types=entity_types,
            aggregations=aggregations_from_dict(data.get("aggregations")),
        )

    def definition_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __repr__(self) -> str:
        feats = ", ".join(self.feature_names) if self.features is not None else "(inferred)"
        if self.aggregations:  # hook: window aggregations
            feats = ", ".join(describe(a) for a in self.aggregations) + f"; events=[{feats}]"
        return (
            f"FeatureView({self.name!r}, entities={list(self.entity_columns)}, "
            f"timestamp={self.timestamp_field!r}, ttl={format_ttl(self.ttl)}, features=[{feats}])"
        )

    def _repr_html_(self) -> str:
        from fsnb.notebook.render import feature_view_html

        return feature_view_html(self)


_DIFFED = ("ttl", "online", "sync", "description", "tags", "query", "entities", "timestamp_field", "created_timestamp_field")


@dataclass(frozen=True)
class ViewChange:
    """One field that differs between two versions of a view, with its old and new value
    (as the FeatureView holds it; for "features", the name -> type mappings)."""

    field: str
    old: Any
    new: Any

    def feature_changes(self) -> tuple[list[str], list[str], list[tuple[str, str, str]]]:
        """For "features": the names added, the names removed, (name, old type, new type) retyped."""
        old, new = dict(self.old or {}), dict(self.new or {})
        retyped = [(f, old[f], new[f]) for f in new if f in old and old[f] and new[f] and old[f] != new[f]]
        return [f for f in new if f not in old], [f for f in old if f not in new], retyped

    def __str__(self) -> str:
        if self.field == "features":
            added, removed, retyped = self.feature_changes()
            parts = [f"{verb} {', '.join(names)}" for verb, names in (("added", added), ("removed", removed)) if names]
            return "; ".join(parts + [f"{f}: {a} -> {b}" for f, a, b in retyped])
        if self.field == "ttl":
            seconds = [None if t is None else t.total_seconds() for t in (self.old, self.new)]
            return f"ttl_seconds: {seconds[0]!r} -> {seconds[1]!r}"
        old, new = (list(v) if isinstance(v, tuple) else v for v in (self.old, self.new))
        return f"{self.field}: {old!r} -> {new!r}"


def diff_views(old: FeatureView, new: FeatureView) -> list[ViewChange]:
    """What changed from one version of a view to the next, field by field (the features
    first; a feature whose type becomes known at first ingest is not a change)."""
    changes = []
    features = ViewChange("features", old.feature_types, new.feature_types)
    if any(features.feature_changes()):
        changes.append(features)
    for name in _DIFFED:
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            changes.append(ViewChange(name, a, b))
    if old.aggregations != new.aggregations:  # as the --aggregate flag writes them
        before, after = (tuple(describe(a) for a in v.aggregations or ()) for v in (old, new))
        changes.append(ViewChange("aggregations", before, after))
    return changes


def _feature_type(view: str, feature: str, duck_type: object) -> str:
    try:
        return parse_type(duck_type)
    except InvalidDefinition as exc:
        msg = f"feature '{feature}' of '{view}': {exc}"
        raise InvalidDefinition(msg) from None


def _field(data: Mapping[str, Any], key: str, kind: type, *, optional: bool = False, default: Any = None) -> Any:
    """data[key] when it has type kind; default when absent; None when optional and null."""
    if key not in data:
        return default
    value = data[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        kinds: dict[type, str] = {str: "a string", list: "a JSON array", dict: "a JSON object"}
        what = kinds[kind]
        msg = f"'{key}' must be {what}, not {value!r:.40}"
        raise InvalidDefinition(msg)
    return value


def _features_from_pairs(pairs: Iterable[Any]) -> Any:
    pairs = list(pairs)
    if not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and (p[1] is None or isinstance(p[1], str))
        for p in pairs
    ):
        msg = "'features' must be a list of [name, type or null] pairs"
        raise InvalidDefinition(msg)
    if all(t is not None for _, t in pairs):
        return {n: t for n, t in pairs}
    return [n for n, _ in pairs]


@dataclass(frozen=True)
class FeatureRef:
    """One ``view:feature`` reference (``feature`` may be ``*``)."""

    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


def parse_feature_refs(refs: str | Iterable[str]) -> list[FeatureRef]:
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, Iterable) or isinstance(refs, bytes | Mapping):
        msg = f"features must be a 'view:feature' str or a list of them, not {type(refs).__name__}"
        raise InvalidDefinition(msg)
    out: list[FeatureRef] = []
    for ref in refs:
        if not isinstance(ref, str) or ref.count(":") != 1:
            msg = f"feature reference {ref!r} must look like 'view:feature' or 'view:*'"
            raise InvalidDefinition(msg)
        view, feature = (part.strip() for part in ref.split(":"))
        if not view or not feature:
            msg = f"feature reference {ref!r} must look like 'view:feature' or 'view:*'"
            raise InvalidDefinition(msg)
        out.append(FeatureRef(view, feature))
    if not out:
        msg = "no features requested; pass references like 'user_stats:login_count'"
        raise InvalidDefinition(msg)
    return out
