"""Renderers of call results: a training set's summary (from the frame and the leakage
report), online lookups and materializations. Pure, like fsnb.notebook.render."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsnb.notebook.format import (
    MUTED,
    NOTHING,
    card,
    duration,
    facts,
    html_table,
    muted,
    percent,
    plural,
    section,
    span,
    text_table,
)

if TYPE_CHECKING:
    import polars as pl


# -- online lookups and materialization ---------------------------------------------------------
class OnlineFeatures(dict):  # type: ignore[type-arg]
    """get_online_features' dict of columns, shown as a table (one row per entity)."""

    def _table(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        cols = list(self)
        n = len(next(iter(self.values()))) if self else 0
        return cols, [tuple(self[c][i] for c in cols) for i in range(n)]

    def __repr__(self) -> str:
        cols, rows = self._table()
        if not cols:
            return "no online features"
        return f"online features ({plural(len(rows), 'entity')}):\n" + text_table(cols, rows)

    def _repr_html_(self) -> str:
        cols, rows = self._table()
        return card("Online features", [html_table(cols, rows)])


class Materialized(dict):  # type: ignore[type-arg]
    """Rows written per view by a materialization."""

    def __repr__(self) -> str:
        if not self:
            return "materialized nothing: no online feature views"
        rows = [(name, f"{n:,}") for name, n in self.items()]
        return "materialized into the online store:\n" + text_table(["view", "rows written"], rows)

    def _repr_html_(self) -> str:
        if not self:
            return card("Materialized", [muted("no online feature views to materialize")])
        rows = [(name, f"{n:,}") for name, n in self.items()]
        return card("Materialized into the online store", [html_table(["view", "rows written"], rows)])


# -- training sets ---------------------------------------------------------------------------
@dataclass
class FeatureQuality:
    name: str
    null_rate: float
    leaky_rows: int | None = None
    leak_rate: float | None = None
    max_horizon: Any = None


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
        frame: pl.DataFrame,
        output_names: Sequence[str],
        timestamp_field: str,
        *,
        report: Any = None,
        name: str | None = None,
        fingerprint: str | None = None,
    ) -> TrainingSetSummary:
        """From the training set and the leakage report (its ``summary``), if there is one."""
        import polars as pl

        outputs = list(output_names)
        height = frame.height
        nulls = frame.select([pl.col(c).null_count() for c in outputs]).row(0) if outputs and height else [0] * len(outputs)
        quality = [FeatureQuality(c, (n / height) if height else 0.0) for c, n in zip(outputs, nulls, strict=True)]
        label_range = None
        if height and timestamp_field in frame.columns:
            ts = frame.get_column(timestamp_field)
            label_range = (ts.min(), ts.max())
        summary = cls(height, frame.width, quality, name, fingerprint, label_range=label_range)
        if report is not None and height:
            summary._add_leakage(report.summary.to_dicts())
        return summary

    def _add_leakage(self, records: list[dict[str, Any]]) -> None:
        by_name = {str(r.get("feature")): r for r in records}
        for q in self.features:
            r = by_name.get(q.name) or by_name.get(q.name.split("__", 1)[-1])
            if r is None:
                continue
            q.leaky_rows = int(r.get("leaky_rows") or 0)
            q.leak_rate = float(r.get("leak_rate") or 0.0)
            q.max_horizon = r.get("max_horizon") if q.leaky_rows else None

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
                if q.leaky_rows is None:
                    leaks = NOTHING
                else:
                    leaks = f"{plural(q.leaky_rows, 'row')} ({percent(q.leak_rate or 0.0)})"
                row += [leaks, duration(q.max_horizon) if q.leaky_rows else NOTHING]
            rows.append(tuple(row))
        return rows

    def _headline(self) -> str:
        what = f"training set {self.name}" if self.name else "training set"
        text = (
            f"{what}: {plural(self.rows, 'row')} × {plural(self.columns, 'column')}, "
            f"{plural(len(self.features), 'feature')}, point-in-time correct"
        )
        if self.has_leakage:
            leaking = sorted((q for q in self.features if q.leaky_rows), key=lambda q: -(q.leaky_rows or 0))
            if leaking:
                named = _and([f"{plural(q.leaky_rows or 0, 'row')} of {q.name}" for q in leaking])
                text += f"; a naive latest-record join would have leaked {named}"
            else:
                text += "; a naive join would have leaked nothing here"
        return text

    def __repr__(self) -> str:
        lines = [self._headline()]
        if self.label_range:
            lines.append(f"label time {span(*self.label_range)}")
        lines.append(text_table(self._columns(), self._rows()))
        if self.fingerprint:
            lines.append(f"fingerprint {self.fingerprint}")
        if self.leakage_note:
            lines.append(self.leakage_note)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        title = "Training set" + (f" <code>{html.escape(self.name)}</code>" if self.name else "")
        pairs: list[tuple[str, Any]] = []
        if self.label_range:
            pairs.append(("label time", span(*self.label_range)))
        if self.fingerprint:
            pairs.append(("fingerprint", self.fingerprint[:16]))
        parts = [f"<div>{html.escape(self._headline())}</div>", facts(pairs) if pairs else ""]
        parts.append(section("per feature", html_table(self._columns(), self._rows())))
        if self.leakage_note:
            parts.append(f'<div style="{MUTED}">{html.escape(self.leakage_note)}</div>')
        return card(title, parts)
