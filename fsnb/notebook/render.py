"""Renderers: HTML and plain-text views of fsnb's objects for notebooks and consoles.

Pure: each takes the data it shows (gathered by the caller, see fsnb.notebook.gather)
and never queries a store or runs a join. Formatting lives in fsnb.notebook.format.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fsnb import aggregation
from fsnb.notebook.format import (
    card,
    facts,
    fmt,
    html_table,
    muted,
    plural,
    pre,
    rows_of,
    section,
    shorten,
    text_table,
    time_range,
)

# Results of calls (training sets, online lookups, materialization) render in their own
# module; named here too, so the magics find every renderer in one place.
from fsnb.notebook.results import FeatureQuality as FeatureQuality
from fsnb.notebook.results import Materialized as Materialized
from fsnb.notebook.results import OnlineFeatures as OnlineFeatures
from fsnb.notebook.results import TrainingSetSummary as TrainingSetSummary
from fsnb.timeutil import format_ttl

if TYPE_CHECKING:

    from fsnb.definitions import FeatureView, ViewChange
    from fsnb.store import Registration


def show(obj: Any) -> None:
    """Display obj in a notebook, or print its plain form elsewhere."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is part of the notebook extra
        print(repr(obj))
        return
    display(obj)  # type: ignore[no-untyped-call]


# -- feature views -----------------------------------------------------------------------
def ttl_text(view: FeatureView) -> str:
    return format_ttl(view.ttl)


def schema_rows(view: FeatureView) -> list[tuple[str, str, str]]:
    """(column, role, type) for every column of a view."""
    types = view.entity_types or {}
    rows = [(k, "entity key", types.get(k) or "?") for k in view.entity_columns]
    rows.append((view.timestamp_field, "event time", "TIMESTAMPTZ"))
    if view.created_timestamp_field:
        rows.append((view.created_timestamp_field, "created time", "TIMESTAMPTZ"))
    if view.features is None:
        rows.append(("(every other column)", "feature", "inferred at first ingest"))
    else:
        rows.extend((f, "feature", t or "?") for f, t in view.feature_types.items())
    if view.aggregations:  # hook: window aggregations (event columns and the aggregations)
        return aggregation.schema_rows(view, rows)
    return rows


def _definition_facts(view: FeatureView) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        ("keys", ", ".join(view.entity_columns)),
        ("TTL", ttl_text(view)),
        ("serving", ("online" if view.online else "offline only") + f", sync by {view.sync}"),
    ]
    if view.tags:
        pairs.append(("tags", ", ".join(f"{k}={v}" for k, v in view.tags.items())))
    return pairs


def feature_view_html(view: FeatureView) -> str:
    parts = [facts(_definition_facts(view))]
    if view.description:
        parts.append(f"<div>{html.escape(view.description)}</div>")
    parts.append(section("schema", html_table(["column", "role", "type"], schema_rows(view))))
    if view.query:
        parts.append(section("query", pre(view.query)))
    return card(f"Feature view <code>{html.escape(view.name)}</code>", parts)


_FIELD_NAMES = {"ttl": "TTL", "timestamp_field": "timestamp", "created_timestamp_field": "created timestamp"}


def _value_text(value: Any) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return fmt(value)


def change_text(change: ViewChange, limit: int = 160) -> str:
    """One definition change in words ("TTL: 30d -> none", "added clicks"), at most limit characters."""
    if change.field == "features":
        text = str(change)
    elif change.field == "ttl":
        text = f"TTL: {format_ttl(change.old)} -> {format_ttl(change.new)}"
    else:
        old, new = (_value_text(v) for v in (change.old, change.new))
        text = f"{_FIELD_NAMES.get(change.field, change.field)}: {old} -> {new}"
    return shorten(text, limit)


def row_changes(reg: Registration) -> list[tuple[str, int]]:
    """What a write did to the view's rows: written, or when it replaced stored rows, added,
    removed and unchanged (a re-run cell whose data changed says so)."""
    if not (reg.rows_removed or reg.rows_unchanged):
        return [("written", reg.rows_written)]
    return [("added", reg.rows_written), ("removed", reg.rows_removed), ("unchanged", reg.rows_unchanged)]


def _counts(stats: dict[str, Any]) -> str:
    return f"{plural(int(stats.get('rows') or 0), 'row')}, {plural(int(stats.get('entities') or 0), 'entity')}"


def _stats_facts(stats: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("rows", f"{stats.get('rows', 0):,}"),
        ("entities", f"{stats.get('entities', 0):,}"),
        ("event time", time_range(stats)),
    ]


def registration_html(reg: Registration, sample: Any = None) -> str:
    view = reg.view
    status = "new version" if reg.new_version else "unchanged definition"
    if reg.new_version and reg.version == 1:
        status = "created"
    title = f"Feature view <code>{html.escape(view.name)}</code> · version {reg.version} ({status})"
    parts = [
        facts([*_stats_facts(reg.stats), *((f"rows {what}", f"{n:,}") for what, n in row_changes(reg))]),
        facts(_definition_facts(view)),
    ]
    if reg.changes and reg.version > 1:
        items = "".join(f"<li>{html.escape(change_text(c))}</li>" for c in reg.changes)
        parts.append(section(f"changed from version {reg.version - 1}", f'<ul style="margin:2px 0">{items}</ul>'))
    parts.append(section("schema", html_table(["column", "role", "type"], schema_rows(view))))
    if sample is not None:
        cols, rows = rows_of(sample, 5)
        if rows:
            parts.append(section(f"sample ({plural(len(rows), 'row')})", html_table(cols, rows)))
    return card(title, parts)


def registration_text(reg: Registration) -> str:
    view = reg.view
    status = "unchanged" if not reg.new_version else ("created" if reg.version == 1 else "new version")
    lines = [
        f"feature view {view.name} v{reg.version} ({status}): {_counts(reg.stats)}, "
        f"{time_range(reg.stats)}, TTL {ttl_text(view)}, "
        + ", ".join(f"{plural(n, 'row')} {what}" for what, n in row_changes(reg)),
        "schema: " + ", ".join(f"{c} {t}" for c, _, t in schema_rows(view)),
    ]
    if reg.changes and reg.version > 1:
        lines.append("changed: " + "; ".join(change_text(c) for c in reg.changes))
    return "\n".join(lines)


@dataclass
class RegisteredView:
    """What a %%feature_view cell shows: the registration plus a few sample rows."""

    registration: Registration
    sample: Any = None

    @property
    def view(self) -> FeatureView:
        return self.registration.view

    @property
    def version(self) -> int:
        return self.registration.version

    def __repr__(self) -> str:
        return registration_text(self.registration)

    def _repr_html_(self) -> str:
        return registration_html(self.registration, self.sample)


# -- the store and its views ---------------------------------------------------------------
@dataclass
class ViewEntry:
    """What the view list shows of one view (gathered by the caller)."""

    view: FeatureView
    version: int
    stats: dict[str, Any]
    online_rows: int | None  # None: the view is offline only


_LIST_COLUMNS = ["view", "version", "keys", "features", "rows", "entities", "event time", "TTL", "online rows"]


def _view_row(entry: ViewEntry) -> tuple[Any, ...]:
    view, stats = entry.view, entry.stats
    return (
        view.name,
        entry.version,
        ", ".join(view.entity_columns),
        ", ".join(aggregation.served_features(view)) if view.features is not None or view.aggregations else "(not known yet)",
        stats.get("rows", 0),
        stats.get("entities", 0),
        time_range(stats),
        ttl_text(view),
        "offline only" if entry.online_rows is None else entry.online_rows,
    )


class ViewList(list):  # type: ignore[type-arg]
    """The store's feature views (a list of FeatureView) with a table display."""

    rows: list[tuple[Any, ...]]
    path: str

    @classmethod
    def of(cls, path: str, entries: Sequence[ViewEntry]) -> ViewList:
        out = cls(e.view for e in entries)
        out.rows = [_view_row(e) for e in entries]
        out.path = str(path)
        return out

    def __repr__(self) -> str:
        if not self:
            return f"no feature views in {self.path}"
        return text_table(_LIST_COLUMNS, self.rows)

    def _repr_html_(self) -> str:
        if not self:
            body = muted("none yet: define one with %%feature_view NAME --entity KEY")
        else:
            body = html_table(_LIST_COLUMNS, self.rows)
        return card(f"Feature views in <code>{html.escape(self.path)}</code>", [body])


def store_html(path: str, entries: Sequence[ViewEntry], training_sets: Sequence[dict[str, Any]]) -> str:
    parts = [ViewList.of(path, entries)._repr_html_()]
    if training_sets:
        rows = [
            (s["name"], s.get("rows"), ", ".join(s.get("features", [])), s["fingerprint"][:16]) for s in training_sets
        ]
        parts.append(section("training sets", html_table(["name", "rows", "features", "fingerprint"], rows)))
    return card(f"FeatureStore <code>{html.escape(str(path))}</code>", parts)


@dataclass
class ViewInfo:
    """%fsnb show NAME: one view's definition, statistics, versions and latest rows.

    versions: (version, created_at seconds, changes from the previous version or None
    for the first)."""

    view: FeatureView
    version: int
    versions: list[tuple[int, float, list[ViewChange] | None]]
    stats: dict[str, Any]
    online_rows: int | None
    sample: Any = None

    @classmethod
    def of(
        cls,
        view: FeatureView,
        versions: list[tuple[int, float, list[ViewChange] | None]],
        stats: dict[str, Any],
        online_rows: int | None,
        sample: Any = None,
    ) -> ViewInfo:
        return cls(view, versions[-1][0], versions, stats, online_rows, sample)

    def _version_rows(self) -> list[tuple[Any, ...]]:
        rows = []
        for v, ts, changes in self.versions:
            if changes is None:
                change = "created"
            else:
                change = shorten("; ".join(change_text(c) for c in changes) or "same definition", 100)
            rows.append((v, datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S"), change))
        return rows

    def __repr__(self) -> str:
        online = "offline only" if self.online_rows is None else plural(self.online_rows, "online row")
        lines = [
            f"feature view {self.view.name} v{self.version}: {_counts(self.stats)}, "
            f"{time_range(self.stats)}, TTL {ttl_text(self.view)}, {online}",
            "schema: " + ", ".join(f"{c} {t}" for c, _, t in schema_rows(self.view)),
            "versions:",
            text_table(["version", "created", "change"], self._version_rows()),
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        online = "offline only" if self.online_rows is None else f"{self.online_rows:,}"
        parts = [
            facts([*_stats_facts(self.stats), ("online rows", online)]),
            facts(_definition_facts(self.view)),
        ]
        if self.view.description:
            parts.append(f"<div>{html.escape(self.view.description)}</div>")
        parts.append(section("schema", html_table(["column", "role", "type"], schema_rows(self.view))))
        parts.append(section("versions", html_table(["version", "created", "change"], self._version_rows())))
        if self.sample is not None:
            cols, rows = rows_of(self.sample, 5)
            parts.append(section("latest rows", html_table(cols, rows)))
        if self.view.query:
            parts.append(section("query", pre(self.view.query)))
        title = f"Feature view <code>{html.escape(self.view.name)}</code> · version {self.version}"
        return card(title, parts)
