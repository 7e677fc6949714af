"""Rich displays: HTML and plain-text views of fsnb's objects for notebooks.

Reads stores and results, never computes joins. Everything is static HTML with
inline styles (no scripts, nothing fetched), so a saved notebook shows it as is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fsnb import aggregation_views

if TYPE_CHECKING:
    import polars as pl

    from fsnb.definitions import FeatureView
    from fsnb.store import FeatureStore, Registration

_BOX = (
    "border:1px solid var(--jp-border-color2,#d0d7de);border-radius:6px;"
    "padding:8px 12px;margin:4px 0;font-size:13px;max-width:100%;overflow-x:auto"
)
_MUTED = "color:var(--jp-ui-font-color2,#6e7781)"
_CELL = "padding:2px 10px 2px 0;text-align:left;white-space:nowrap"


def show(obj: Any) -> None:
    """Display obj in a notebook, or print its plain form elsewhere."""
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is part of the notebook extra
        print(repr(obj))
        return
    display(obj)  # type: ignore[no-untyped-call]


# -- formatting ------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A short human form of one value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"  # keep 10.0 visibly a float
        return f"{value:.6g}"
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        return text + (" UTC" if value.tzinfo is not None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        from fsnb.definitions import format_ttl

        return format_ttl(value)
    return str(value)


def fmt_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return fmt(datetime.fromisoformat(iso))
    except ValueError:
        return iso


def time_range(stats: Mapping[str, Any]) -> str:
    lo, hi = stats.get("min_ts"), stats.get("max_ts")
    if not lo:
        return "no data"
    return f"{fmt_time(lo)} → {fmt_time(hi)}"


def percent(rate: float) -> str:
    if rate == 0:
        return "0%"
    if rate < 0.001:
        return "<0.1%"
    return f"{rate * 100:.1f}%"


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def ttl_text(view: FeatureView) -> str:
    from fsnb.definitions import format_ttl

    return "none" if view.ttl is None else format_ttl(view.ttl)  # type: ignore[arg-type]


def _e(value: Any) -> str:
    return html.escape(fmt(value) if not isinstance(value, str) else value)


def html_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool = False) -> str:
    """A plain HTML table; values are escaped unless raw=True (already HTML)."""
    head = "".join(f'<th style="{_CELL}">{html.escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for v in row:
            if v is None:
                text = f'<span style="{_MUTED}">null</span>'
            else:
                text = v if raw and isinstance(v, str) else _e(v)
            cells.append(f'<td style="{_CELL}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def text_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(c) for c in columns], *([fmt(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _card(title: str, parts: Iterable[str]) -> str:
    inner = "".join(p for p in parts if p)
    return f'<div class="fsnb" style="{_BOX}"><div style="font-weight:600;margin-bottom:4px">{title}</div>{inner}</div>'


def _facts(pairs: Iterable[tuple[str, Any]]) -> str:
    items = [f'<span style="{_MUTED}">{html.escape(k)}</span> {_e(v)}' for k, v in pairs]
    return '<div style="margin:2px 0">' + " &nbsp;·&nbsp; ".join(items) + "</div>"


def _section(title: str, content: str) -> str:
    return f'<div style="margin-top:6px"><div style="{_MUTED};font-size:12px">{html.escape(title)}</div>{content}</div>'


def _rows_of(data: Any, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and the first rows of an Arrow table or polars/pandas frame."""
    module = type(data).__module__.split(".")[0]
    if module == "pyarrow":
        head = data.slice(0, limit)
        cols = list(head.column_names)
        return cols, [tuple(r[c] for c in cols) for r in head.to_pylist()]
    if module == "pandas":
        head = data.head(limit)
        return [str(c) for c in head.columns], [tuple(r) for r in head.itertuples(index=False)]
    head = data.head(limit)
    return list(head.columns), head.rows()


# -- feature views -----------------------------------------------------------------------
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
    if view.aggregations:  # hook: fsnb.aggregation_views (event columns and the aggregations)
        return aggregation_views.schema_rows(view, rows)
    return rows


def _definition_facts(view: FeatureView) -> list[tuple[str, Any]]:
    facts: list[tuple[str, Any]] = [
        ("keys", ", ".join(view.entity_columns)),
        ("TTL", ttl_text(view)),
        ("serving", ("online" if view.online else "offline only") + f", sync by {view.sync}"),
    ]
    if view.tags:
        facts.append(("tags", ", ".join(f"{k}={v}" for k, v in view.tags.items())))
    return facts


def feature_view_html(view: FeatureView) -> str:
    parts = [_facts(_definition_facts(view))]
    if view.description:
        parts.append(f"<div>{html.escape(view.description)}</div>")
    parts.append(_section("schema", html_table(["column", "role", "type"], schema_rows(view))))
    if view.query:
        parts.append(_section("query", f'<pre style="margin:2px 0">{html.escape(view.query)}</pre>'))
    return _card(f"Feature view <code>{html.escape(view.name)}</code>", parts)


def _stats_facts(stats: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("rows", f"{stats.get('rows', 0):,}"),
        ("entities", f"{stats.get('entities', 0):,}"),
        ("event time", time_range(stats)),
    ]


def nice_change(change: str, limit: int = 160) -> str:
    """A change line from the registry diff, with TTLs in words and long values shortened."""
    key, sep, rest = change.partition(": ")
    if sep and key == "ttl_seconds":
        before, _, after = rest.partition(" -> ")

        def ttl(text: str) -> str:
            try:
                return fmt(timedelta(seconds=float(text)))
            except ValueError:
                return "none"

        change = f"TTL: {ttl(before)} -> {ttl(after)}"
    change = " ".join(change.split())
    return change if len(change) <= limit else change[: limit - 1] + "…"


def row_changes(reg: Registration) -> list[tuple[str, int]]:
    """What a write did to the view's rows: written, or when it replaced stored rows, added,
    removed and unchanged (a re-run cell whose data changed says so)."""
    if not (reg.rows_removed or reg.rows_unchanged):
        return [("written", reg.rows_written)]
    return [("added", reg.rows_written), ("removed", reg.rows_removed), ("unchanged", reg.rows_unchanged)]


def registration_html(reg: Registration, sample: Any = None) -> str:
    view = reg.view
    status = "new version" if reg.new_version else "unchanged definition"
    if reg.new_version and reg.version == 1:
        status = "created"
    title = f"Feature view <code>{html.escape(view.name)}</code> · version {reg.version} ({status})"
    parts = [
        _facts([*_stats_facts(reg.stats), *((f"rows {what}", f"{n:,}") for what, n in row_changes(reg))]),
        _facts(_definition_facts(view)),
    ]
    if reg.changes and reg.version > 1:
        items = "".join(f"<li>{html.escape(nice_change(c))}</li>" for c in reg.changes)
        parts.append(_section(f"changed from version {reg.version - 1}", f'<ul style="margin:2px 0">{items}</ul>'))
    parts.append(_section("schema", html_table(["column", "role", "type"], schema_rows(view))))
    if sample is not None:
        cols, rows = _rows_of(sample, 5)
        if rows:
            parts.append(_section(f"sample ({len(rows)} rows)", html_table(cols, rows)))
    return _card(title, parts)


def registration_text(reg: Registration) -> str:
    view = reg.view
    status = "unchanged" if not reg.new_version else ("created" if reg.version == 1 else "new version")
    lines = [
        f"feature view {view.name} v{reg.version} ({status}): {reg.stats.get('rows', 0):,} rows, "
        f"{reg.stats.get('entities', 0):,} entities, {time_range(reg.stats)}, TTL {ttl_text(view)}, "
        + ", ".join(f"{n:,} row{'' if n == 1 else 's'} {what}" for what, n in row_changes(reg)),
        "schema: " + ", ".join(f"{c} {t}" for c, _, t in schema_rows(view)),
    ]
    if reg.changes and reg.version > 1:
        lines.append("changed: " + "; ".join(nice_change(c) for c in reg.changes))
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
_LIST_COLUMNS = ["view", "version", "keys", "features", "rows", "entities", "event time", "TTL", "online rows"]


def _view_row(store: FeatureStore, view: FeatureView) -> tuple[Any, ...]:
    stats = store.registry.stats(view.name)
    online = store.online.count(view.name) if view.online else "offline only"
    return (
        view.name,
        store.version_of(view.name),
        ", ".join(view.entity_columns),
        ", ".join(aggregation_views.served_features(view)) if view.features is not None or view.aggregations else "(not known yet)",
        stats.get("rows", 0),
        stats.get("entities", 0),
        time_range(stats),
        ttl_text(view),
        online,
    )


class ViewList(list):  # type: ignore[type-arg]
    """The store's feature views (a list of FeatureView) with a table display."""

    rows: list[tuple[Any, ...]]
    path: str

    @classmethod
    def of(cls, store: FeatureStore) -> ViewList:
        views = store.list_feature_views()
        out = cls(views)
        out.rows = [_view_row(store, v) for v in views]
        out.path = str(store.path)
        return out

    def __repr__(self) -> str:
        if not self:
            return f"no feature views in {self.path}"
        return text_table(_LIST_COLUMNS, self.rows)

    def _repr_html_(self) -> str:
        if not self:
            body = f'<div style="{_MUTED}">none yet: define one with %%feature_view NAME --entity KEY</div>'
        else:
            body = html_table(_LIST_COLUMNS, self.rows)
        return _card(f"Feature views in <code>{html.escape(self.path)}</code>", [body])


def store_html(store: FeatureStore) -> str:
    views = ViewList.of(store)
    sets = store.list_training_sets()
    parts = [views._repr_html_()]
    if sets:
        rows = [(s["name"], s.get("rows"), ", ".join(s.get("features", [])), s["fingerprint"][:16]) for s in sets]
        parts.append(_section("training sets", html_table(["name", "rows", "features", "fingerprint"], rows)))
    return _card(f"FeatureStore <code>{html.escape(str(store.path))}</code>", parts)


@dataclass
class ViewInfo:
    """%fsnb show NAME: one view's definition, statistics, versions and latest rows."""

    view: FeatureView
    version: int
    versions: list[tuple[int, float, str]]
    stats: dict[str, Any]
    online_rows: int | None
    sample: Any = None

    @classmethod
    def of(cls, store: FeatureStore, name: str) -> ViewInfo:
        view = store.get_feature_view(name)
        versions = store.list_versions(name)
        history = []
        previous = None
        for v in versions:
            from fsnb.store import _diff

            diff = [nice_change(c) for c in _diff(previous, v.view)] if previous is not None else []
            change = "created" if previous is None else nice_change("; ".join(diff) or "same definition", 100)
            history.append((v.version, v.created_at, change))
            previous = v.view
        stats = store.stats(name)
        sample = None
        if stats.get("rows"):
            sample = store.read(name, start=stats.get("max_ts")).head(5)
        online = store.online.count(name) if view.online else None
        return cls(view, versions[-1].version, history, stats, online, sample)

    def _version_rows(self) -> list[tuple[Any, ...]]:
        return [
            (v, datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S"), change) for v, ts, change in self.versions
        ]

    def __repr__(self) -> str:
        online = "offline only" if self.online_rows is None else f"{self.online_rows:,} online rows"
        lines = [
            f"feature view {self.view.name} v{self.version}: {self.stats.get('rows', 0):,} rows, "
            f"{self.stats.get('entities', 0):,} entities, {time_range(self.stats)}, TTL {ttl_text(self.view)}, {online}",
            "schema: " + ", ".join(f"{c} {t}" for c, _, t in schema_rows(self.view)),
            "versions:",
            text_table(["version", "created", "change"], self._version_rows()),
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        online = "offline only" if self.online_rows is None else f"{self.online_rows:,}"
        parts = [
            _facts([*_stats_facts(self.stats), ("online rows", online)]),
            _facts(_definition_facts(self.view)),
        ]
        if self.view.description:
            parts.append(f"<div>{html.escape(self.view.description)}</div>")
        parts.append(_section("schema", html_table(["column", "role", "type"], schema_rows(self.view))))
        parts.append(_section("versions", html_table(["version", "created", "change"], self._version_rows())))
        if self.sample is not None:
            cols, rows = _rows_of(self.sample, 5)
            parts.append(_section("latest rows", html_table(cols, rows)))
        if self.view.query:
            parts.append(_section("query", f'<pre style="margin:2px 0">{html.escape(self.view.query)}</pre>'))
        title = f"Feature view <code>{html.escape(self.view.name)}</code> · version {self.version}"
        return _card(title, parts)


# -- training sets ---------------------------------------------------------------------------
@dataclass
class FeatureQuality:
    name: str
    null_rate: float
    leaky_rows: int | None = None
    leak_rate: float | None = None
    max_horizon: Any = None


@dataclass
class TrainingSetSummary:
    """Shape, null rate per feature and (when the analysis exists) naive-join leakage."""

    rows: int
    columns: int
    features: list[FeatureQuality]
    name: str | None = None
    fingerprint: str | None = None
    leakage_note: str | None = None
    label_range: tuple[Any, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        store: FeatureStore,
        frame: pl.DataFrame,
        labels: Any,
        features: Sequence[str],
        timestamp_field: str,
        *,
        full_names: bool = False,
        name: str | None = None,
        fingerprint: str | None = None,
    ) -> TrainingSetSummary:
        import polars as pl

        outputs = store.resolve(features, full_feature_names=full_names).output_names
        height = frame.height
        nulls = frame.select([pl.col(c).null_count() for c in outputs]).row(0) if outputs and height else [0] * len(outputs)
        quality = [FeatureQuality(c, (n / height) if height else 0.0) for c, n in zip(outputs, nulls, strict=True)]
        label_range = None
        if height and timestamp_field in frame.columns:
            ts = frame.get_column(timestamp_field)
            label_range = (ts.min(), ts.max())
        summary = cls(height, frame.width, quality, name, fingerprint, label_range=label_range)
        summary._add_leakage(store, labels, features, timestamp_field)
        return summary

    def _add_leakage(self, store: FeatureStore, labels: Any, features: Sequence[str], timestamp_field: str) -> None:
        from fsnb.errors import FsnbError

        explain = getattr(store, "explain_leakage", None)
        if explain is None or not self.rows:
            return
        try:
            report = explain(labels, list(features), timestamp_field=timestamp_field)
            table = report.summary
            records = table.to_dicts() if hasattr(table, "to_dicts") else list(table)
        except FsnbError as exc:
            self.leakage_note = f"leakage analysis unavailable: {exc}"
            return
        except Exception as exc:  # the training set stands on its own; say why the extra is missing
            self.leakage_note = f"leakage analysis failed: {type(exc).__name__}: {exc}"
            return
        by_name = {str(r.get("feature")): r for r in records}
        for q in self.features:
            r = by_name.get(q.name) or by_name.get(q.name.split("__", 1)[-1])
            if r is None:
                continue
            q.leaky_rows = int(r.get("leaky_rows") or 0)
            q.leak_rate = float(r.get("leak_rate") or 0.0)
            q.max_horizon = r.get("max_horizon")

    @property
    def has_leakage(self) -> bool:
        return any(q.leaky_rows is not None for q in self.features)

    def _columns(self) -> list[str]:
        cols = ["feature", "null rate"]
        if self.has_leakage:
            cols += ["naive join leaks", "max horizon"]
        return cols

    def _rows(self) -> list[tuple[Any, ...]]:
        rows = []
        for q in self.features:
            row: list[Any] = [q.name, percent(q.null_rate)]
            if self.has_leakage:
                leaks = "-" if q.leaky_rows is None else f"{plural(q.leaky_rows, 'row')} ({percent(q.leak_rate or 0.0)})"
                row += [leaks, q.max_horizon]
            rows.append(tuple(row))
        return rows

    def _headline(self) -> str:
        what = f"training set {self.name}" if self.name else "training set"
        text = f"{what}: {plural(self.rows, 'row')} × {plural(self.columns, 'column')}, {plural(len(self.features), 'feature')}, point-in-time correct"
        if self.has_leakage:
            worst = max(self.features, key=lambda q: q.leaky_rows or 0)
            if worst.leaky_rows:
                text += f"; a naive latest-record join would have leaked {plural(worst.leaky_rows, 'row')} of {worst.name}"
            else:
                text += "; a naive join would have leaked nothing here"
        return text

    def __repr__(self) -> str:
        lines = [self._headline(), text_table(self._columns(), self._rows())]
        if self.fingerprint:
            lines.append(f"fingerprint {self.fingerprint}")
        if self.leakage_note:
            lines.append(self.leakage_note)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        title = "Training set" + (f" <code>{html.escape(self.name)}</code>" if self.name else "")
        facts: list[tuple[str, Any]] = [("shape", f"{plural(self.rows, 'row')} × {plural(self.columns, 'column')}")]
        if self.label_range:
            facts.append(("label time", f"{fmt(self.label_range[0])} → {fmt(self.label_range[1])}"))
        if self.fingerprint:
            facts.append(("fingerprint", self.fingerprint[:16]))
        parts = [_facts(facts), f"<div>{html.escape(self._headline())}</div>"]
        parts.append(_section("per feature", html_table(self._columns(), self._rows())))
        if self.leakage_note:
            parts.append(f'<div style="{_MUTED}">{html.escape(self.leakage_note)}</div>')
        return _card(title, parts)


# -- online lookups and materialization ---------------------------------------------------------
class OnlineFeatures(dict):  # type: ignore[type-arg]
    """get_online_features' dict of columns, shown as a table (one row per entity)."""

    def _table(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        cols = list(self)
        n = len(next(iter(self.values()))) if self else 0
        return cols, [tuple(self[c][i] for c in cols) for i in range(n)]

    def _repr_html_(self) -> str:
        cols, rows = self._table()
        return _card("Online features", [html_table(cols, rows)])


class Materialized(dict):  # type: ignore[type-arg]
    """Rows written per view by a materialization."""

    def _repr_html_(self) -> str:
        if not self:
            return _card("Materialized", [f'<div style="{_MUTED}">no online feature views to materialize</div>'])
        rows = [(name, f"{n:,}") for name, n in self.items()]
        return _card("Materialized into the online store", [html_table(["view", "rows written"], rows)])
