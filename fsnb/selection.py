"""Feature references resolved against the registry: which features of which view, under
which output names (docs/architecture.md, "Selections")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fsnb.aggregation import served_features
from fsnb.definitions import FeatureView, parse_feature_refs
from fsnb.errors import Hint, InvalidDefinition, UnknownFeature, closest

if TYPE_CHECKING:
    from fsnb.registry import Registry

FULL_NAMES_HINT = Hint("full_feature_names", "True", after=" to name columns view__feature")


@dataclass
class ViewSelection:
    """The features asked of one view, and the output column name of each."""

    view: FeatureView
    features: list[str]
    output_names: list[str]
    has_table: bool = True
    has_ties: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # output name -> SQL over alias


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


def resolve(registry: Registry, features: str | Iterable[str], full_names: bool = False) -> FeatureSelection:
    """Each reference ('view:feature' or 'view:*') checked against the view's newest version."""
    refs = parse_feature_refs(features)
    by_view: dict[str, ViewSelection] = {}
    for ref in refs:
        view = registry.latest(ref.view).view
        if ref.view not in by_view:
            by_view[ref.view] = ViewSelection(view, [], [])
        sel = by_view[ref.view]
        served = served_features(view)  # hook: an aggregation view serves its aggregations
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
            sel.output_names.append(f"{view.name}__{f}" if full_names else f)
    selection = FeatureSelection(list(by_view.values()))
    seen: dict[str, str] = {}
    for sel in selection.selections:
        for out in sel.output_names:
            if out in seen:
                msg = f"feature '{out}' comes from both '{seen[out]}' and '{sel.view.name}'"
                raise InvalidDefinition(msg, hint=FULL_NAMES_HINT)
            seen[out] = sel.view.name
    return selection
