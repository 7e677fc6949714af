"""Leakage analysis: what a naive "latest record" join would have put in each label row.

For every label row and feature: the point-in-time value and its event time (the
planner's answer), the naive value and its event time (each key's latest row,
regardless of the label time), whether the naive row came from the future
(``leaked``) and by how much (``horizon``). Where the view has a created column,
also *late arrival*: the point-in-time row existed at the label time but was only
created after it. Everything is computed in DuckDB; Python only names columns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from fsnb import aggregation_views
from fsnb.backends.duckdb_pit import ROW, T, ViewSelection, latest_per_entity_sql
from fsnb.errors import SchemaMismatch, closest
from fsnb.sqlnames import offline_table, q

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fsnb.definitions import FeatureView
    from fsnb.store import FeatureStore

_INPUT = "__fsnb_leak_in"
_RESULT = "__fsnb_leak"
_NAIVE = "__fsnb_leak_naive"
_LABEL = "__fsnb_label"
_CREATED = "__fsnb_created_{}"
_EVENT_TS = "__fsnb_ts_{}"

# Suffixes of the per-feature columns of LeakageReport.rows.
NAIVE, LEAKED, PIT_TIME, NAIVE_TIME, HORIZON, LATE = (
    "__naive",
    "__leaked",
    "__pit_time",
    "__naive_time",
    "__horizon",
    "__late",
)


@dataclass(frozen=True)
class ExplainedFeature:
    """One explained feature: its output column and where it comes from."""

    name: str  # column name in LeakageReport.rows
    view: FeatureView
    feature: str  # the feature's name inside the view
    numeric: bool


class LeakageReport:
    """What a naive latest-record join leaks, row by row (``rows``) and per feature (``summary``)."""

    def __init__(
        self,
        store: FeatureStore,
        rows: pl.DataFrame,
        summary: pl.DataFrame,
        features: list[ExplainedFeature],
        *,
        entity_columns: list[str],
        timestamp_field: str,
        label: str | None,
        metric: str | None,
    ) -> None:
        self.store = store
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
        with self.store.offline.connect() as con:
            if not self.store.offline.table_exists(con, view.name):
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
        from fsnb.store import _to_polars

        frame = _to_polars(table)
        return frame

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


_warmup: threading.Thread | None = None


def warm_up_renderer() -> threading.Thread:
    """Start vl-convert's JavaScript runtime in the background (its first render costs a
    second or more); the explorer's static snapshot joins this thread before rendering."""
    global _warmup
    if _warmup is None:
        _warmup = threading.Thread(target=_render_once, name="fsnb-vl-convert-warmup", daemon=True)
        _warmup.start()
    return _warmup


def _render_once() -> None:
    try:
        import vl_convert as vlc

        vlc.vegalite_to_svg({"data": {"values": [{"a": 1}]}, "mark": "point"})
    except Exception:
        pass  # only a warm-up: the real render reports its own errors


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return "–"
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            amount = seconds / size
            return f"{amount:.0f}{unit}" if amount == int(amount) or abs(amount) >= 10 else f"{amount:.1f}{unit}"
    return f"{seconds:g}s"


def explain_leakage(
    store: FeatureStore,
    entity_df: Any,
    features: str | Sequence[str],
    *,
    timestamp_field: str = "event_timestamp",
    label: str | None = None,
) -> LeakageReport:
    """Compare, for every label row, the point-in-time join with a naive latest-record join."""
    from fsnb.store import _labels_frame, _to_polars

    selection = store.resolve(features)
    labels = _labels_frame(entity_df)
    keys = selection.entity_columns
    label = _label_column(labels, keys, timestamp_field, label)
    explained = [
        ExplainedFeature(out, sel.view, f, False)
        for sel in selection.selections
        for f, out in zip(sel.features, sel.output_names, strict=True)
    ]
    # Ask the planner also for the created time of each chosen row (as a hidden feature).
    with_created = replace(
        selection,
        selections=[
            replace(
                sel,
                features=[*sel.features, sel.view.created_timestamp_field],
                output_names=[*sel.output_names, _CREATED.format(i)],
            )
            if sel.view.created_timestamp_field
            else replace(sel, features=list(sel.features), output_names=list(sel.output_names))
            for i, sel in enumerate(selection.selections)
        ],
    )
    with store.offline.connect() as con:
        pit = store._point_in_time(labels, with_created, timestamp_field, with_event_times=True)
        numeric = {n for n, d in pit.schema.items() if d.is_numeric() or d == pl.Boolean}
        explained = [replace(f, numeric=f.name in numeric) for f in explained]
        inputs = pit.hstack(labels.select(keys).with_columns(labels.get_column(timestamp_field).alias(T)))
        if label is not None:
            inputs = inputs.with_columns(labels.get_column(label).alias(_LABEL))
        key_types = _key_types(with_created.selections)
        con.register(_INPUT, inputs.to_arrow())
        naive_sql, compare_sql = _comparison_sql(
            with_created.selections, explained, keys, key_types, con, store, label is not None
        )
        try:
            naive = con.sql(naive_sql).to_arrow_table()
            con.register(_NAIVE, naive)
            try:
                compared = con.sql(compare_sql).to_arrow_table()
            finally:
                con.unregister(_NAIVE)
        finally:
            con.unregister(_INPUT)
        if not np.array_equal(compared.column(ROW).to_numpy(), np.arange(compared.num_rows)):
            msg = "internal error: the leakage comparison lost the label order"
            raise AssertionError(msg)
        # The summary reads the comparison in place (Arrow), not a copy in a table.
        con.register(_RESULT, compared)
        try:
            metric = _metric_kind(labels, label)
            summary = _to_polars(con.sql(_summary_sql(explained, metric)).to_arrow_table())
        finally:
            con.unregister(_RESULT)
    columns = [c for f in explained for c in _row_columns(f.name)]
    rows = _to_polars(compared.select(columns))
    # Horizons are exact nanoseconds (times compare exactly, DESIGN section 2).
    rows = labels.hstack(rows.with_columns(pl.col(f.name + HORIZON).cast(pl.Duration("ns")) for f in explained))
    summary = summary.with_columns(
        pl.col("median_horizon").cast(pl.Int64).cast(pl.Duration("ns")),
        pl.col("max_horizon").cast(pl.Duration("ns")),
    )
    return LeakageReport(
        store,
        rows,
        summary,
        explained,
        entity_columns=keys,
        timestamp_field=timestamp_field,
        label=label,
        metric=metric,
    )


def _label_column(labels: pl.DataFrame, keys: list[str], timestamp_field: str, label: str | None) -> str | None:
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


def _key_types(selections: list[ViewSelection]) -> dict[str, str]:
    types: dict[str, str] = {}
    for sel in selections:
        for k in sel.view.entity_columns:
            registered = (sel.view.entity_types or {}).get(k)
            if registered:
                types.setdefault(k, registered)
    return types


def _row_columns(name: str) -> list[str]:
    return [name + s for s in ("", NAIVE, LEAKED, PIT_TIME, NAIVE_TIME, HORIZON, LATE)]


def _comparison_sql(
    selections: list[ViewSelection],
    explained: list[ExplainedFeature],
    keys: list[str],
    key_types: dict[str, str],
    con: Any,
    store: FeatureStore,
    has_label: bool,
) -> tuple[str, str]:
    """Two queries: the naive rows per label row (narrow, in label order), then one row
    per label row with naive value/time, leaked, horizon and late flag per feature.

    The second pastes the first next to the planner's output by position (both are in
    label order), so the wide result is never sorted.
    """
    casts = [f"CAST({q(k)} AS {t}) AS {q(k)}" for k, t in key_types.items() if k in keys]
    casts.append(f"CAST({T} AS TIMESTAMPTZ_NS) AS {T}")
    p = f"p AS (SELECT * REPLACE ({', '.join(casts)}) FROM {_INPUT})"
    ctes, joins, naive_cols = [p], [], []
    stored = {sel.view.name for sel in selections if store.offline.table_exists(con, sel.view.name)}
    by_view = {sel.view.name: (i, sel) for i, sel in enumerate(selections)}
    for i, sel in enumerate(selections):
        if sel.view.name in stored:
            real = [f for f in sel.features if f != sel.view.created_timestamp_field]
            if sel.view.aggregations:  # hook: fsnb.aggregation_views (the aggregate as of the key's latest event)
                ctes.append(f"n{i} AS (SELECT * FROM {aggregation_views.naive_relation(con, sel.view, real, i)})")
            else:
                ctes.append(f"n{i} AS ({latest_per_entity_sql(sel.view, real)})")
            on = " AND ".join(f"p.{q(k)} = n{i}.{q(k)}" for k in sel.view.entity_columns)
            joins.append(f"LEFT JOIN n{i} ON {on}")
            naive_cols.append(f"n{i}.{q(sel.view.timestamp_field)} AS {q(f'__fsnb_nts_{i}')}")
            naive_cols += [f"n{i}.{q(f)} AS {q(f'__fsnb_nv_{i}_{f}')}" for f in real]
    naive_sql = (
        f"WITH {', '.join(ctes)} SELECT {', '.join(naive_cols) or 'NULL AS __fsnb_none'} "
        f"FROM p {' '.join(joins)} ORDER BY p.{ROW}"
    )
    outputs = [f"p.{ROW}", f"p.{T}"] + ([f"p.{_LABEL}"] if has_label else [])
    for f in explained:
        i, sel = by_view[f.view.name]
        view = f.view
        pit_ts = f"p.{q(_EVENT_TS.format(i))}"
        if view.name in stored:
            naive, naive_ts = f"x.{q(f'__fsnb_nv_{i}_{f.feature}')}", f"x.{q(f'__fsnb_nts_{i}')}"
        else:
            naive, naive_ts = f"CAST(NULL AS {view.feature_types.get(f.feature) or 'VARCHAR'})", "CAST(NULL AS TIMESTAMPTZ_NS)"
        leaked = f"coalesce({naive_ts} > p.{T}, false)"
        if view.created_timestamp_field:
            late = f"coalesce(p.{q(_CREATED.format(i))} > p.{T}, false)"
        else:
            late = "CAST(NULL AS BOOLEAN)"
        outputs += [
            f"p.{q(f.name)} AS {q(f.name)}",
            f"{naive} AS {q(f.name + NAIVE)}",
            f"{leaked} AS {q(f.name + LEAKED)}",
            f"{pit_ts} AS {q(f.name + PIT_TIME)}",
            f"{naive_ts} AS {q(f.name + NAIVE_TIME)}",
            f"CASE WHEN {leaked} THEN epoch_ns(CAST({naive_ts} AS TIMESTAMPTZ_NS)) - epoch_ns(p.{T}) END AS {q(f.name + HORIZON)}",
            f"{late} AS {q(f.name + LATE)}",
        ]
    compare_sql = f"WITH {p} SELECT {', '.join(outputs)} FROM p POSITIONAL JOIN {_NAIVE} x"
    return naive_sql, compare_sql


def _summary_sql(explained: list[ExplainedFeature], metric: str | None) -> str:
    parts = []
    for f in explained:
        c = f.name
        leaked, horizon, late = q(c + LEAKED), q(c + HORIZON), q(c + LATE)
        late_rows = f"count(*) FILTER ({late})" if f.view.created_timestamp_field else "CAST(NULL AS BIGINT)"
        if metric and f.numeric:
            naive_metric, pit_metric = _metric_sql(c + NAIVE, metric), _metric_sql(c, metric)
        else:
            naive_metric = pit_metric = "CAST(NULL AS DOUBLE)"
        parts.append(
            f"SELECT {_literal(c)} AS feature, {_literal(f.view.name)} AS view, count(*) AS rows, "
            f"count(*) FILTER ({leaked}) AS leaky_rows, "
            f"coalesce(count(*) FILTER ({leaked}) / nullif(count(*), 0), 0.0) AS leak_rate, "
            f"median({horizon}) AS median_horizon, max({horizon}) AS max_horizon, "
            f"{late_rows} AS late_rows, "
            f"count(*) FILTER ({leaked} AND {q(c + NAIVE)} IS DISTINCT FROM {q(c)}) AS changed_rows, "
            f"{_literal(metric) if metric else 'CAST(NULL AS VARCHAR)'} AS metric, "
            f"({naive_metric}) AS naive_metric, ({pit_metric}) AS pit_metric "
            f"FROM {_RESULT}"
        )
    summary = " UNION ALL ".join(f"SELECT * FROM ({p})" for p in parts)
    return (
        f"SELECT *, CAST(naive_metric - pit_metric AS DOUBLE) AS inflation FROM ({summary})"
    )


def _metric_sql(column: str, metric: str) -> str:
    x, y = f"CAST({q(column)} AS DOUBLE)", f"CAST({_LABEL} AS DOUBLE)"
    if metric == "abs_pearson":
        return f"SELECT abs(corr({x}, {y})) FROM {_RESULT}"
    # ROC AUC from counts per distinct value (ties count one half), so no global sort
    # of the label rows is needed; reported as max(AUC, 1 - AUC): the ranking power
    # of the feature whichever way it points.
    return (
        f"SELECT greatest(a, 1 - a) FROM ("
        f"SELECT CASE WHEN sum(pos) > 0 AND sum(neg) > 0 "
        f"THEN sum(pos * (neg_below + neg / 2.0)) / (sum(pos) * sum(neg)) END AS a FROM ("
        f"SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS neg_below FROM ("
        f"SELECT {x} AS v, count(*) FILTER ({y} = 1) AS pos, count(*) FILTER ({y} = 0) AS neg "
        f"FROM {_RESULT} WHERE {q(column)} IS NOT NULL AND {_LABEL} IS NOT NULL GROUP BY 1)))"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
