"""Leakage analysis: what a naive "latest record" join would have put in each label row.

For every label row and feature: the point-in-time value and its event time (the
planner's answer), the naive value and its event time (each key's latest row,
regardless of the label time), whether the naive row came from the future
(``leaked``) and by how much (``horizon``). Where the view has a created column,
also *late arrival*: the point-in-time row existed at the label time but was only
created after it. Everything is computed in DuckDB; Python only names columns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from fsnb import aggregation_views
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.errors import SchemaMismatch, closest
from fsnb.leakage_columns import (
    HORIZON,
    LATE,
    LEAKED,
    NAIVE,
    NAIVE_TIME,
    PIT_TIME,
    ExplainedFeature,
    format_duration,
)
from fsnb.leakage_sql import (
    CREATED,
    INPUT,
    LABEL,
    NAIVE_TABLE,
    RESULT,
    comparison_sql,
    key_types,
    row_columns,
    summary_sql,
)
from fsnb.notebook.warmup import warm_up_renderer
from fsnb.retrieval import point_in_time, to_polars
from fsnb.selection import FeatureSelection
from fsnb.sqlnames import offline_table, q

if TYPE_CHECKING:
    from fsnb.backends.duckdb_offline import OfflineStore
    from fsnb.backends.spark_offline import SparkOfflineStore

__all__ = [
    "HORIZON",
    "LATE",
    "LEAKED",
    "NAIVE",
    "NAIVE_TIME",
    "PIT_TIME",
    "ExplainedFeature",
    "LeakageReport",
    "analyze",
    "explain",
    "format_duration",
    "joined_selection",
    "label_column",
    "warm_up_renderer",
]


class LeakageReport:
    """What a naive latest-record join leaks, row by row (``rows``) and per feature (``summary``)."""

    def __init__(
        self,
        offline: OfflineStore | SparkOfflineStore,
        rows: pl.DataFrame,
        summary: pl.DataFrame,
        features: list[ExplainedFeature],
        *,
        entity_columns: list[str],
        timestamp_field: str,
        label: str | None,
        metric: str | None,
    ) -> None:
        self.offline = offline
        self.rows = rows
        self.summary = summary
        self.features = features
        self.entity_columns = entity_columns
        self.timestamp_field = timestamp_field
        self.label = label
        self.metric = metric
        self._roc: dict[str, pl.DataFrame] = {}

    # -- reading the report ---------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> ExplainedFeature:
        for f in self.features:
            if f.name == name:
                return f
        msg = f"the report has no feature '{name}'{closest(name, self.feature_names)}"
        raise SchemaMismatch(msg)

    def leaky_mask(self) -> pl.Series:
        """True for label rows where any explained feature leaks."""
        return self.rows.select(
            pl.any_horizontal([pl.col(f + LEAKED) for f in self.feature_names]).alias("leaky")
        ).to_series()

    def history(self, row: int, feature: str, *, limit: int = 2000) -> pl.DataFrame:
        """The offline history of one feature for the entity of label row ``row``.

        Columns: ``event_time``, ``value`` (and ``created_time`` when the view has
        one), oldest first; at most ``limit`` rows, the ones nearest the label time.
        """
        explained = self.feature(feature)
        view = explained.view
        key = self.rows.row(row, named=True)
        with self.offline.connect() as con:
            self.offline.stage_entity(con, view, {k: key[k] for k in view.entity_columns})  # Spark: this entity's rows
            if not self.offline.table_exists(con, view.name):
                return pl.DataFrame(schema={"event_time": pl.Datetime("ns", "UTC"), "value": pl.Float64})
            where = " AND ".join(f"{q(k)} = ?" for k in view.entity_columns)
            created = (
                f", {q(view.created_timestamp_field)} AS created_time" if view.created_timestamp_field else ""
            )
            label_time = key[self.timestamp_field]
            sql = (
                f"SELECT event_time, value{', created_time' if created else ''} FROM ("
                f"SELECT {q(view.timestamp_field)} AS event_time, {q(explained.feature)} AS value{created} "
                f"FROM {offline_table(view.name)} WHERE {where} "
                f"ORDER BY abs(epoch_ns(CAST({q(view.timestamp_field)} AS TIMESTAMPTZ_NS)) - epoch_ns(CAST(? AS TIMESTAMPTZ_NS))) LIMIT {int(limit)}"
                f") ORDER BY event_time"
            )
            params = [key[k] for k in view.entity_columns] + [label_time]
            table = con.sql(sql, params=params).to_arrow_table()
        return to_polars(table)

    def roc(self, feature: str) -> pl.DataFrame | None:
        """ROC curves of ``feature`` against the binary label, naive join and point-in-time
        join (columns join, fpr, tpr, auc; see fsnb.leakage_roc); None unless the label is
        binary and the feature numeric. Computed once per feature from ``rows``."""
        explained = self.feature(feature)
        if self.metric != "roc_auc" or not explained.numeric or self.label is None:
            return None
        if feature not in self._roc:
            from fsnb.leakage_roc import roc_frame

            scores = {"naive": self.rows[feature + NAIVE], "point-in-time": self.rows[feature]}
            self._roc[feature] = roc_frame(scores, self.rows[self.label])
        return self._roc[feature]

    # -- display ------------------------------------------------------------------
    def describe(self) -> list[str]:
        """The summary in words, one sentence per feature."""
        lines = []
        for rec in self.summary.iter_rows(named=True):
            text = (
                f"{rec['feature']}: a naive join leaks future values into {rec['leaky_rows']:,} of "
                f"{rec['rows']:,} label rows ({rec['leak_rate']:.1%})"
            )
            if rec["leaky_rows"]:
                text += f", up to {format_duration(rec['max_horizon'])} ahead (median {format_duration(rec['median_horizon'])})"
            if rec["late_rows"]:
                text += f"; {rec['late_rows']:,} point-in-time rows arrived late"
            if rec["naive_metric"] is not None and rec["pit_metric"] is not None:
                text += f"; {self.metric_label}: naive {rec['naive_metric']:.3f} vs point-in-time {rec['pit_metric']:.3f}"
            lines.append(text)
        return lines

    @property
    def metric_label(self) -> str:
        return {"roc_auc": "ROC AUC", "abs_pearson": "|Pearson r|"}.get(self.metric or "", "metric")

    def __repr__(self) -> str:
        head = f"<LeakageReport: {self.rows.height:,} label rows, {len(self.features)} feature(s)"
        if self.label:
            head += f", label '{self.label}'"
        return head + ">\n" + "\n".join("  " + line for line in self.describe())

    def _repr_html_(self) -> str:
        from html import escape

        header = escape(self.__repr__().splitlines()[0])
        cells = []
        for rec in self.summary.iter_rows(named=True):
            metric = ""
            if rec["naive_metric"] is not None and rec["pit_metric"] is not None:
                metric = f"{rec['naive_metric']:.3f} → {rec['pit_metric']:.3f}"
            late = "n/a" if rec["late_rows"] is None else f"{rec['late_rows']:,}"
            cells.append(
                "<tr>"
                f"<td><code>{escape(rec['feature'])}</code></td>"
                f"<td>{rec['rows']:,}</td><td>{rec['leaky_rows']:,}</td><td>{rec['leak_rate']:.1%}</td>"
                f"<td>{escape(format_duration(rec['median_horizon']))}</td>"
                f"<td>{escape(format_duration(rec['max_horizon']))}</td>"
                f"<td>{late}</td><td>{escape(metric)}</td>"
                "</tr>"
            )
        metric_head = escape(f"{self.metric_label} naive → point-in-time") if self.metric else "metric"
        return (
            f"<div class='fsnb-leakage-report'><p><b>{header}</b></p>"
            "<table><thead><tr><th>feature</th><th>rows</th><th>leaky rows</th><th>leak rate</th>"
            f"<th>median horizon</th><th>max horizon</th><th>late rows</th><th>{metric_head}</th></tr></thead>"
            f"<tbody>{''.join(cells)}</tbody></table>"
            "<p><small>Call <code>.explorer()</code> to inspect rows one by one.</small></p></div>"
        )

    def explorer(self, **options: Any) -> Any:
        """The interactive leakage explorer (ipywidgets + Altair)."""
        warm_up_renderer()  # overlaps the renderer's start with the widget imports
        from fsnb.notebook.explorer import LeakageExplorer

        return LeakageExplorer(self, **options)


def joined_selection(selection: FeatureSelection) -> FeatureSelection:
    """The selection the analysis joins: each view's created time asked as a hidden
    feature (__fsnb_created_{i}), so the report can flag late arrivals."""
    return replace(
        selection,
        selections=[
            replace(
                sel,
                features=[*sel.features, sel.view.created_timestamp_field],
                output_names=[*sel.output_names, CREATED.format(i)],
            )
            if sel.view.created_timestamp_field
            else replace(sel, features=list(sel.features), output_names=list(sel.output_names))
            for i, sel in enumerate(selection.selections)
        ],
    )


def explain(
    offline: OfflineStore | SparkOfflineStore,
    labels: pl.DataFrame,
    selection: FeatureSelection,
    *,
    timestamp_field: str = "event_timestamp",
    label: str | None = None,
) -> LeakageReport:
    """Compare, for every label row, the point-in-time join with a naive latest-record join."""
    label = label_column(labels, selection.entity_columns, timestamp_field, label)
    joined = joined_selection(selection)
    with offline.connect():  # one open of the store for the join and the comparison
        pit = point_in_time(offline, labels, joined, timestamp_field, with_event_times=True)
        return analyze(offline, labels, joined, pit, timestamp_field=timestamp_field, label=label)


def analyze(
    offline: OfflineStore | SparkOfflineStore,
    labels: pl.DataFrame,
    joined: FeatureSelection,
    pit: pl.DataFrame,
    *,
    timestamp_field: str,
    label: str | None,
) -> LeakageReport:
    """The report from a point-in-time join already made: joined is joined_selection(...)
    and pit its point_in_time(..., with_event_times=True); label is label_column(...)."""
    keys = joined.entity_columns
    hidden = {CREATED.format(i) for i in range(len(joined.selections))}
    explained = [
        ExplainedFeature(out, sel.view, f, False)
        for sel in joined.selections
        for f, out in zip(sel.features, sel.output_names, strict=True)
        if out not in hidden
    ]
    with offline.connect() as con:
        numeric = {n for n, d in pit.schema.items() if d.is_numeric() or d == pl.Boolean}
        explained = [replace(f, numeric=f.name in numeric) for f in explained]
        inputs = pit.hstack(labels.select(keys).with_columns(labels.get_column(timestamp_field).alias(T)))
        if label is not None:
            inputs = inputs.with_columns(labels.get_column(label).alias(LABEL))
        for sel in joined.selections:
            if not sel.view.aggregations:  # naive_relation reads those itself
                offline.stage_latest(con, sel.view)  # Spark: the naive side's latest rows, one per key
        stored = {sel.view.name for sel in joined.selections if offline.table_exists(con, sel.view.name)}
        con.register(INPUT, inputs.to_arrow())
        relations = {  # hook: fsnb.aggregation_views (each aggregate as of the key's latest event)
            i: aggregation_views.naive_relation(con, s.view, s.features, i, offline=offline)
            for i, s in enumerate(joined.selections) if s.view.aggregations and s.view.name in stored
        }
        naive_sql, compare_sql = comparison_sql(
            joined.selections, explained, keys, key_types(joined.selections), stored, label is not None, relations
        )
        try:
            naive = con.sql(naive_sql).to_arrow_table()
            con.register(NAIVE_TABLE, naive)
            try:
                compared = con.sql(compare_sql).to_arrow_table()
            finally:
                con.unregister(NAIVE_TABLE)
        finally:
            con.unregister(INPUT)
        if not np.array_equal(compared.column(ROW).to_numpy(), np.arange(compared.num_rows)):
            msg = "internal error: the leakage comparison lost the label order"
            raise AssertionError(msg)
        # The summary reads the comparison in place (Arrow), not a copy in a table.
        con.register(RESULT, compared)
        try:
            metric = _metric_kind(labels, label)
            summary = to_polars(con.sql(summary_sql(explained, metric)).to_arrow_table())
        finally:
            con.unregister(RESULT)
    columns = [c for f in explained for c in row_columns(f.name)]
    rows = to_polars(compared.select(columns))
    # Horizons are exact nanoseconds (times compare exactly, docs/architecture.md).
    rows = labels.hstack(rows.with_columns(pl.col(f.name + HORIZON).cast(pl.Duration("ns")) for f in explained))
    summary = summary.with_columns(
        pl.col("median_horizon").cast(pl.Int64).cast(pl.Duration("ns")),
        pl.col("max_horizon").cast(pl.Duration("ns")),
    )
    return LeakageReport(
        offline,
        rows,
        summary,
        explained,
        entity_columns=keys,
        timestamp_field=timestamp_field,
        label=label,
        metric=metric,
    )


def label_column(labels: pl.DataFrame, keys: list[str], timestamp_field: str, label: str | None) -> str | None:
    if label is not None:
        if label not in labels.columns:
            msg = f"labels have no column '{label}'{closest(label, labels.columns)}; pass label=<your label column>"
            raise SchemaMismatch(msg)
        return label
    others = [c for c in labels.columns if c not in keys and c != timestamp_field]
    return others[0] if len(others) == 1 else None


def _metric_kind(labels: pl.DataFrame, label: str | None) -> str | None:
    """ROC AUC for a boolean or 0/1 label, |Pearson r| for another numeric one, else none."""
    if label is None:
        return None
    column = labels.get_column(label)
    if column.dtype == pl.Boolean:
        return "roc_auc"
    if not column.dtype.is_numeric():
        return None
    values = column.drop_nulls().unique()
    if values.len() <= 2 and values.is_in([0, 1]).all():
        return "roc_auc"
    return "abs_pearson"


