"""The leakage explorer: ipywidgets composed with Altair charts, over a LeakageReport.

It never computes joins: it reads the report's rows (and its ROC curves), asks the
report for one entity's history, and hands frames to the chart builders of
explorer_charts. Charts are ``alt.JupyterChart`` widgets whose JavaScript (Vega,
Vega-Lite, vega-embed) is bundled offline by vl-convert, so nothing comes from a CDN.
Next to the widget the explorer keeps a static snapshot (SVG rendered by vl-convert)
of its current state, so a saved notebook still shows a picture on GitHub or after
export; in a live JupyterLab the snapshot hides itself with CSS.
Row numbers are 0-based in the Python API (``explorer.row``), 1-based on screen.
This module imports ipywidgets and Altair, so only LeakageReport.explorer() loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as W
import polars as pl
import traitlets

from fsnb.definitions import format_ttl
from fsnb.errors import InvalidData
from fsnb.leakage_columns import HORIZON, LEAKED, NAIVE_TIME, format_duration
from fsnb.notebook import explorer_charts as charts
from fsnb.notebook.explorer_data import (
    impact_metrics,
    iso,
    keys_text,
    overview_frame,
    show,
    timeline_frame,
)
from fsnb.notebook.explorer_html import STYLE, header_html, snapshot_page, vectors_html
from fsnb.notebook.offline_chart import OfflineChart, ensure_offline
from fsnb.timeutil import utc

if TYPE_CHECKING:
    from fsnb.leakage import LeakageReport

OVERVIEW_SAMPLE = 500  # points sent to the browser for the overview, whatever the label count
LIST_SIZE = 200  # rows offered in the picker list at a time
SNAPSHOT_WIDTH = 640  # pixels of the static timeline (a saved notebook has no box to fill)
# SVG (not canvas): points are elements a test or a screen reader can find. No action
# menu: its "…" floats away from the chart in a flexible box; the snapshot is the export.
EMBED = {"renderer": "svg", "actions": False}
_SPACE = "\u2003"  # as wide as the ⚠ of leaky rows in the list, so the numbers line up


def _chart(spec: Any, css: str, **layout: str) -> OfflineChart:
    chart = OfflineChart(spec, embed_options=EMBED, layout=W.Layout(**layout))
    chart.add_class(css)
    chart.add_class("fsnb-chart")
    return chart


class LeakageExplorer(W.VBox):  # type: ignore[misc]
    """Pick a label row (leaky ones first) and see what each join gave it."""

    row = traitlets.Int(0).tag(sync=True)  # the selected label row (0-based index into report.rows)
    feature = traitlets.Unicode("").tag(sync=True)

    def __init__(self, report: LeakageReport, *, feature: str | None = None, row: int | None = None) -> None:
        ensure_offline()
        if report.rows.height == 0:
            msg = "the leakage report has no label rows to explore; pass a non-empty label table"
            raise InvalidData(msg)
        self.report = report
        self._snapshot_handle: Any = None
        self._impact_svg: str | None = None
        rows = report.rows
        self._n = rows.height
        leaked = [f.name + LEAKED for f in report.features]
        horizons = [pl.col(f.name + HORIZON) for f in report.features]
        # Per label row: leaky in any feature, and the largest horizon; computed once.
        self._rank = rows.select(
            pl.any_horizontal(leaked).alias("leaky"),
            pl.max_horizontal(horizons).dt.total_seconds(fractional=True).truediv(86400).alias("days"),
        ).with_row_index("row")
        self._leaky_rows = self._rank.filter(pl.col("leaky"))["row"].to_numpy()
        self._keys = keys_text(rows, report.entity_columns)  # "user_id=42, region=eu" per row

        self.feature = feature or report.feature_names[0]
        if row is None:  # the row the list shows first: the leak with the largest horizon
            top = self._rank.filter(pl.col("leaky")).top_k(1, by=["days", "row"], reverse=[False, True])
            row = int(top["row"][0]) if top.height else 0
        self.row = row

        self.header = W.HTML(layout=W.Layout(flex="1 1 320px"))
        impact = self.impact_chart()
        self.impact = None if impact is None else _chart(impact, "fsnb-impact", flex="0 1 auto")
        self.feature_picker = W.Dropdown(
            options=report.feature_names, description="feature", disabled=len(report.features) == 1
        )
        self.prev_button = W.Button(description="◀ prev", tooltip="previous label row", layout=W.Layout(width="auto"))
        self.next_button = W.Button(description="next ▶", tooltip="next label row", layout=W.Layout(width="auto"))
        self.next_leaky_button = W.Button(
            description="next leaky row »",
            button_style="danger",
            tooltip="jump to the next row a naive join leaks",
            layout=W.Layout(width="auto"),
        )
        self.search = W.Text(
            placeholder="entity key or row number",
            description="search",
            style={"description_width": "initial"},
            layout=W.Layout(width="auto"),
        )
        self.row_list = W.Select(options=[], rows=10, layout=W.Layout(width="auto"))
        self.position = W.HTML()
        self.vectors = W.HTML(layout=W.Layout(flex="0 1 auto"))
        self._sampled: set[int] = set()
        self._syncing = False
        self.overview = _chart(None, "fsnb-overview", flex="1 1 360px", min_width="0")
        self.timeline = _chart(None, "fsnb-timeline", flex="1 1 480px", min_width="0")

        picker = W.VBox(
            [W.HBox([self.prev_button, self.next_button, self.next_leaky_button]), self.position, self.search, self.row_list],
            layout=W.Layout(flex="0 1 380px", min_width="0"),
        )
        picker.add_class("fsnb-picker")
        wrap = {"flex_flow": "row wrap", "align_items": "flex-start", "grid_gap": "12px", "width": "100%"}
        summary = [self.header] + ([self.impact] if self.impact is not None else [])
        super().__init__(
            [
                W.HBox(summary, layout=W.Layout(**wrap)),
                self.feature_picker,
                W.HBox([self.overview, picker], layout=W.Layout(**wrap)),
                W.HBox([self.timeline, self.vectors], layout=W.Layout(**wrap)),
            ]
        )
        self.add_class("fsnb-explorer")
        self.row_list.add_class("fsnb-row-list")

        self.prev_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(1))
        self.next_leaky_button.on_click(lambda _: self.next_leaky())
        self.search.observe(lambda _: self._fill_list(), names="value")
        self.row_list.observe(self._on_list, names="value")
        self.feature_picker.observe(lambda c: setattr(self, "feature", c["new"]), names="value")

        self.feature_picker.value = self.feature
        self._set_overview()
        self._fill_list()
        self._refresh()

    def __repr__(self) -> str:
        return f"<LeakageExplorer: label row {self.row + 1:,} of {self._n:,}, feature '{self.feature}'>"

    # -- actions (what the buttons do; also the Python API) -----------------------
    def next_leaky(self) -> None:
        """Select the first leaky row after the selected one (wrapping around)."""
        if not len(self._leaky_rows):
            return
        import numpy as np

        after = int(np.searchsorted(self._leaky_rows, self.row, side="right"))
        self.row = int(self._leaky_rows[after % len(self._leaky_rows)])

    def _step(self, delta: int) -> None:
        if self._n:
            self.row = (self.row + delta) % self._n

    # -- trait reactions -----------------------------------------------------------
    @traitlets.validate("row")
    def _valid_row(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if self._n and not 0 <= value < self._n:
            msg = f"row {value} is outside the report's {self._n} label rows (rows count from 0 here)"
            raise traitlets.TraitError(msg)
        return value

    @traitlets.validate("feature")
    def _valid_feature(self, proposal: Any) -> str:
        self.report.feature(proposal["value"])  # raises with a did-you-mean hint
        return str(proposal["value"])

    @traitlets.observe("row", "feature")
    def _on_state(self, change: Any) -> None:
        if not hasattr(self, "timeline"):
            return  # still building
        if change["name"] == "feature":
            self.feature_picker.value = change["new"]
            self._set_overview()
        elif self.row not in self._sampled:
            self._set_overview()  # the overview always shows the selected row
        self._refresh()

    def _on_pick(self, change: Any) -> None:
        points = change["new"].value if change["new"] is not None else []
        if points and "row" in points[0]:
            self.row = int(points[0]["row"])

    def _on_list(self, change: Any) -> None:
        if self._syncing:
            return  # the list follows the selection; new options must not move it
        if change["new"] is not None and change["new"] != self.row:
            self.row = int(change["new"])

    # -- views ----------------------------------------------------------------------
    def _set_overview(self) -> None:
        data = self.overview_data()
        self._sampled = set(data["row"].to_list())
        self.overview.chart = self.overview_chart(data)
        self.overview.selections.observe(self._on_pick, names="pick")

    def _refresh(self) -> None:
        self.header.value = STYLE + self._header_html()
        self.position.value = f"<span class='fsnb-position'>label row <b>{self.row + 1:,}</b> of {self._n:,}</span>"
        # The timeline has no selections: hand JupyterChart the spec itself (unvalidated:
        # fsnb builds it, and tests validate it), which is several times faster.
        self.timeline.spec = self.timeline_chart().to_dict(validate=False)
        self.vectors.value = vectors_html(self.report, self.row)
        if "current" in self.overview.params.trait_names():
            self.overview.params.current = self.row  # type: ignore[attr-defined]
        if hasattr(self, "_list_options"):
            self._sync_list()
        if self._snapshot_handle is not None:
            self._snapshot_handle.update(_HtmlOutput(self.snapshot_html()))

    def _header_html(self) -> str:
        return header_html(self.report, self.feature, has_picture=self.impact is not None)

    def overview_data(self) -> pl.DataFrame:
        """What the overview draws: at most OVERVIEW_SAMPLE label rows, leaky ones first,
        plus the selected row when the sample does not hold it."""
        data, self._sample_counts = overview_frame(self.report, self.feature, self._keys, self.row, OVERVIEW_SAMPLE)
        return data

    def overview_chart(self, data: pl.DataFrame | None = None, *, width: charts.Width = "container") -> Any:
        data = self.overview_data() if data is None else data
        take_leaky, take_clean = self._sample_counts
        if take_leaky + take_clean >= self._n:
            how = [f"all {self._n:,} label rows; the ringed point is the selected row"]
        else:
            how = [
                f"{take_leaky + take_clean:,} of {self._n:,} label rows: {take_leaky:,} leaky and {take_clean:,} not,",
                "evenly spaced in label order, plus the selected row (ringed)",
            ]
        subtitle = [*how, "click a point to inspect it"]
        return charts.overview_chart(data, feature=self.feature, subtitle=subtitle, current=self.row, width=width)  # type: ignore[arg-type]

    def timeline_data(self) -> pl.DataFrame:
        """The selected row's entity history for the selected feature, with each point's role."""
        return timeline_frame(self.report, self.row, self.feature)

    def timeline_chart(self, *, width: charts.Width = "container") -> Any:
        report, name = self.report, self.feature
        rec = report.rows.row(self.row, named=True)
        label_time = rec[report.timestamp_field]
        ttl = report.feature(name).view.ttl
        window = None
        if ttl is not None:
            window = (iso(utc(label_time) - ttl), f"TTL window ({format_ttl(ttl)})", f"TTL {format_ttl(ttl)}")
        horizon, naive_time = rec[name + HORIZON], rec[name + NAIVE_TIME]
        note = None
        if horizon is not None and naive_time is not None:
            note = {"t": iso(naive_time), "text": f"naive: +{format_duration(horizon)} after the label"}
        subtitle = f"label row {self.row + 1:,} at {show(label_time)} UTC"
        if horizon is not None:
            subtitle += f"; the naive join reads a value {format_duration(horizon)} in the future"
        return charts.timeline_chart(
            self.timeline_data(),
            feature=name,
            numeric=report.feature(name).numeric,
            title=f"{name} for {self._keys[self.row]}",
            subtitle=subtitle,
            label_time=iso(label_time),
            ttl=window,
            naive_note=note,
            width=width,
        )

    def impact_chart(self) -> Any:
        """What the leak does to a model: ROC curves (binary label) or the metric side by
        side, per feature; None when the report has no label to measure against."""
        curves = {f: c for f in self.report.feature_names if (c := self.report.roc(f)) is not None and c.height}
        if curves:
            return charts.roc_chart(curves)
        metrics = impact_metrics(self.report)
        if metrics.height:
            return charts.metric_chart(metrics, metric_label=self.report.metric_label)
        return None

    def _fill_list(self) -> None:
        """The picker list: rows matching the search, leaky first (largest horizon first)."""
        text = self.search.value.strip()
        rank = self._rank
        if text:
            match = self._keys.str.contains(text, literal=True)
            if text.isdigit():
                match = match | (rank["row"] == int(text) - 1)  # row numbers on screen count from 1
            rank = rank.filter(match)
        # top-k rather than a full sort: the list shows LIST_SIZE rows of maybe millions
        leaky = rank.filter(pl.col("leaky"))
        top = leaky.top_k(LIST_SIZE, by=["days", "row"], reverse=[False, True]).sort(
            ["days", "row"], descending=[True, False]
        )
        if top.height < LIST_SIZE:
            top = pl.concat([top, rank.filter(~pl.col("leaky")).head(LIST_SIZE - top.height)])
        self._list_options = self._options(top)
        self._sync_list()

    def _options(self, rank: pl.DataFrame) -> list[tuple[str, int]]:
        keys = self._keys.gather(rank["row"]).to_list()
        times = self.report.rows[self.report.timestamp_field].gather(rank["row"])
        return [
            (
                f"{'⚠' if leaky else _SPACE} #{row + 1:,} · {key} · {show(t)}" + (f" · +{days:.1f}d" if leaky and days is not None else ""),
                int(row),
            )
            for row, leaky, days, key, t in zip(rank["row"], rank["leaky"], rank["days"], keys, times, strict=True)
        ]

    def _sync_list(self) -> None:
        """Select the row in the list. The listed rows keep their order: a selected row the
        list does not hold is shown after them (the list never jumps)."""
        options = self._list_options
        if not any(v == self.row for _, v in options):
            options = options + self._options(self._rank[[self.row]])
        self._syncing = True
        try:
            if list(self.row_list.options) != options:
                self.row_list.options = options
            self.row_list.value = self.row
        finally:
            self._syncing = False

    # -- static snapshot ------------------------------------------------------------
    def snapshot_svg(self) -> str:
        """The timeline of the current state as SVG, rendered offline by vl-convert."""
        return charts.to_svg(self.timeline_chart(width=SNAPSHOT_WIDTH))

    def impact_svg(self) -> str | None:
        """The picture of what the leak does to a model as SVG (rendered once)."""
        if self._impact_svg is None and self.impact is not None:
            self._impact_svg = charts.to_svg(self.impact_chart())
        return self._impact_svg

    def snapshot_html(self) -> str:
        return snapshot_page(self._header_html(), self.impact_svg(), self.snapshot_svg(), vectors_html(self.report, self.row))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._widget_bundle(), raw=True)  # type: ignore[no-untyped-call]
        self._snapshot_handle = display(_HtmlOutput(self.snapshot_html()), display_id=True)  # type: ignore[no-untyped-call]

    def _widget_bundle(self) -> dict[str, Any]:
        bundle: dict[str, Any] = super()._repr_mimebundle_() or {}
        return bundle


class _HtmlOutput:
    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return "<static snapshot of the leakage explorer>"
