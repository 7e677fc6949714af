"""The leakage explorer: ipywidgets composed with Altair charts, over a LeakageReport.

It never computes joins: it reads the report's rows and asks the report for one
entity's history. Charts are ``alt.JupyterChart`` widgets whose JavaScript (Vega,
Vega-Lite, vega-embed) is bundled offline by vl-convert, so nothing comes from a
CDN. Next to the widget the explorer keeps a static snapshot (SVG rendered by
vl-convert) of its current state, so a saved notebook still shows a picture on
GitHub or after export; in a live JupyterLab the snapshot hides itself with CSS.
This module imports ipywidgets and Altair, so only LeakageReport.explorer() loads it.
"""

from __future__ import annotations

import hashlib
import html
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import altair as alt
import ipywidgets as W
import polars as pl
import traitlets
from altair import JupyterChart

from fsnb.definitions import format_ttl, parse_ttl
from fsnb.errors import InvalidData
from fsnb.leakage import HORIZON, LATE, LEAKED, NAIVE, NAIVE_TIME, PIT_TIME, format_duration

if TYPE_CHECKING:
    from fsnb.leakage import LeakageReport

PIT_COLOR, NAIVE_COLOR, SAME_COLOR, HISTORY_COLOR = "#1f77b4", "#d62728", "#2ca02c", "#9e9e9e"
OVERVIEW_SAMPLE = 500  # points sent to the browser for the overview, whatever the label count
LIST_SIZE = 200  # rows offered in the picker list at a time
_SNAPSHOT_CSS = (
    "<style>.jp-OutputArea-child:has(.fsnb-explorer) + .jp-OutputArea-child .fsnb-snapshot"
    "{display:none}</style>"
)


class OfflineChart(JupyterChart):
    """alt.JupyterChart with its JavaScript bundled locally (no CDN)."""


def _offline_bundle() -> str:
    """vl-convert's self-contained bundle of JupyterChart's front end, cached on disk
    (bundling takes seconds; the cache makes the second explorer open at once)."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    source = (Path(alt.__file__).parent / "jupyter" / "js" / "index.js").read_text()
    key = hashlib.sha256(f"{alt.__version__}|{getattr(vlc, '__version__', '')}|{source}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fsnb" / f"jupyterchart-{key}.js"
    if cache.exists():
        return cache.read_text()
    lines = source.split("\n")
    while lines and (not lines[0].strip() or lines[0].startswith(("import", "//"))):
        lines.pop(0)  # the CDN imports: vl-convert's bundle provides them
    bundle: str = vlc.javascript_bundle("\n".join(lines), vl_version=vl_version_for_vl_convert())
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(bundle)
        tmp.replace(cache)
    except OSError:
        pass  # a read-only home only costs the bundling time next time
    return bundle


def _ensure_offline() -> None:
    if "_esm" not in OfflineChart.__dict__:
        OfflineChart._esm = _offline_bundle()


class LeakageExplorer(W.VBox):  # type: ignore[misc]
    """Pick a label row (leaky ones first) and see what each join gave it."""

    row = traitlets.Int(0).tag(sync=True)  # the selected label row (index into report.rows)
    feature = traitlets.Unicode("").tag(sync=True)

    def __init__(self, report: LeakageReport, *, feature: str | None = None, row: int | None = None) -> None:
        _ensure_offline()
        if report.rows.height == 0:
            msg = "the leakage report has no label rows to explore; pass a non-empty label table"
            raise InvalidData(msg)
        self.report = report
        self._snapshot_handle: Any = None
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
        self._keys_cache: pl.Series | None = None

        self.feature = feature or report.feature_names[0]
        if row is None:
            row = int(self._leaky_rows[0]) if len(self._leaky_rows) else 0
        self.row = row

        self.header = W.HTML()
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
        self.search = W.Text(placeholder="search entity key or row number", description="search")
        self.row_list = W.Select(options=[], rows=8, layout=W.Layout(width="100%"))
        self.position = W.HTML()
        self.vectors = W.HTML()
        # SVG (not canvas): points are elements a test or a screen reader can find; no
        # "open in the online editor" action, which would leave the machine.
        embed = {"renderer": "svg", "actions": {"export": True, "source": True, "compiled": False, "editor": False}}
        self.overview = OfflineChart(self._overview_chart(), embed_options=embed)
        self.timeline = OfflineChart(None, embed_options=embed)  # type: ignore[arg-type]

        picker = W.VBox(
            [W.HBox([self.prev_button, self.next_button, self.next_leaky_button]), self.position, self.search, self.row_list],
            layout=W.Layout(width="460px"),
        )
        super().__init__(
            [
                self.header,
                self.feature_picker,
                W.HBox([self.overview, picker]),
                W.HBox([self.timeline, self.vectors]),
            ]
        )
        self.add_class("fsnb-explorer")
        self.row_list.add_class("fsnb-row-list")
        self.overview.add_class("fsnb-overview")
        self.timeline.add_class("fsnb-timeline")

        self.prev_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(1))
        self.next_leaky_button.on_click(lambda _: self.next_leaky())
        self.search.observe(lambda _: self._fill_list(), names="value")
        self.row_list.observe(self._on_list, names="value")
        self.feature_picker.observe(lambda c: setattr(self, "feature", c["new"]), names="value")
        self.overview.selections.observe(self._on_pick, names="pick")

        self.feature_picker.value = self.feature
        self._fill_list()
        self._refresh()

    def __repr__(self) -> str:
        return f"<LeakageExplorer: label row {self.row} of {self._n:,}, feature '{self.feature}'>"

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
            msg = f"row {value} is outside the report's {self._n} label rows"
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
            self.overview.chart = self._overview_chart()
            self.overview.selections.observe(self._on_pick, names="pick")
        self._refresh()

    def _on_pick(self, change: Any) -> None:
        points = change["new"].value if change["new"] is not None else []
        if points and "row" in points[0]:
            self.row = int(points[0]["row"])

    def _on_list(self, change: Any) -> None:
        if change["new"] is not None and change["new"] != self.row:
            self.row = int(change["new"])

    # -- views ----------------------------------------------------------------------
    def _refresh(self) -> None:
        self.header.value = self._header_html()
        self.position.value = f"<span>label row <b>{self.row}</b> of {self._n:,}</span>"
        # The timeline has no selections: hand JupyterChart the spec itself (unvalidated:
        # fsnb builds it, and tests validate it), which is several times faster.
        self.timeline.spec = self.timeline_chart().to_dict(validate=False)
        self.vectors.value = self._vectors_html()
        if self.overview.params.trait_names() and "current" in self.overview.params.trait_names():
            self.overview.params.current = self.row  # type: ignore[attr-defined]
        if hasattr(self, "_list_options"):
            self._sync_list()
        if self._snapshot_handle is not None:
            self._snapshot_handle.update(_HtmlOutput(self.snapshot_html()))

    def _header_html(self) -> str:
        rec = self.report.summary.filter(pl.col("feature") == self.feature).row(0, named=True)
        lines = "".join(
            f"<li>{html.escape(line)}</li>" for line in self.report.describe() if line.startswith(self.feature + ":")
        )
        metric = ""
        if rec["naive_metric"] is not None and rec["pit_metric"] is not None:
            metric = (
                f" · {html.escape(self.report.metric_label)}: naive join <b class='fsnb-naive-metric'>{rec['naive_metric']:.3f}</b>"
                f", point-in-time <b class='fsnb-pit-metric'>{rec['pit_metric']:.3f}</b>"
            )
        return (
            "<div class='fsnb-explorer-header'><b>Leakage explorer</b> · "
            f"<span class='fsnb-leaky-rows'>{rec['leaky_rows']:,}</span> of {rec['rows']:,} label rows leak "
            f"(<span class='fsnb-leak-rate'>{rec['leak_rate']:.1%}</span>) for <code>{html.escape(self.feature)}</code>"
            f"{metric}<ul style='margin:4px 0'>{lines}</ul></div>"
        )

    def overview_data(self) -> pl.DataFrame:
        """What the overview draws: at most OVERVIEW_SAMPLE label rows, leaky ones first."""
        name = self.feature
        rows = self.report.rows.with_row_index("row")
        ts = self.report.timestamp_field
        frame = rows.select(
            "row",
            _naive_utc(pl.col(ts), rows.schema[ts]).alias("label_time"),
            pl.col(name + LEAKED).alias("leaked"),
            (pl.col(name + HORIZON).dt.total_seconds(fractional=True) / 86400).fill_null(0.0).alias("horizon_days"),
        )
        leaky = frame.filter(pl.col("leaked"))
        clean = frame.filter(~pl.col("leaked"))
        take_leaky = min(leaky.height, OVERVIEW_SAMPLE * 4 // 5)
        take_clean = min(clean.height, OVERVIEW_SAMPLE - take_leaky)
        take_leaky = min(leaky.height, OVERVIEW_SAMPLE - take_clean)
        parts = [_evenly(leaky, take_leaky), _evenly(clean, take_clean)]
        out = pl.concat(parts).with_columns(
            pl.col("label_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            pl.when(pl.col("leaked")).then(pl.lit("leaky")).otherwise(pl.lit("not leaky")).alias("status"),
            pl.Series("entity", self._keys_text(pl.concat(parts)["row"])),
        )
        return out.sort("row")

    def _overview_chart(self) -> alt.Chart:
        data = self.overview_data()
        pick = alt.selection_point(name="pick", fields=["row"], on="click", clear=False)
        current = alt.param(name="current", value=int(getattr(self, "row", 0)))
        sample = f"{data.height:,} of {self._n:,} label rows" if data.height < self._n else f"{self._n:,} label rows"
        chart: alt.Chart = (
            _TrustedChart(data, title=alt.Title(f"Leak horizon of '{self.feature}' per label row", subtitle=f"{sample}; click a point to inspect it"))
            .mark_circle(size=60, opacity=0.8)
            .encode(
                x=alt.X("label_time:T", title="label time", scale=alt.Scale(type="utc")),
                y=alt.Y("horizon_days:Q", title="naive value from the future (days)"),
                color=alt.Color(
                    "status:N",
                    scale=alt.Scale(domain=["leaky", "not leaky"], range=[NAIVE_COLOR, HISTORY_COLOR]),
                    legend=alt.Legend(title=None, orient="top"),
                ),
                stroke=alt.condition("datum.row == current", alt.value("black"), alt.value(None)),
                strokeWidth=alt.condition("datum.row == current", alt.value(3), alt.value(0)),
                tooltip=["row:Q", "entity:N", "label_time:T", alt.Tooltip("horizon_days:Q", format=".2f")],
            )
            .add_params(pick, current)
            .properties(width=430, height=200)
        )
        return chart

    def timeline_data(self) -> pl.DataFrame:
        """The selected row's entity history for the selected feature, with each point's role."""
        report, name = self.report, self.feature
        history = report.history(self.row, name)
        rec = report.rows.row(self.row, named=True)
        pit_time, naive_time = rec[name + PIT_TIME], rec[name + NAIVE_TIME]
        roles = []
        for t in history["event_time"].to_list():
            if pit_time is not None and t == pit_time and naive_time is not None and t == naive_time:
                roles.append("point-in-time = naive")
            elif pit_time is not None and t == pit_time:
                roles.append("point-in-time")
            elif naive_time is not None and t == naive_time:
                roles.append("naive")
            else:
                roles.append("history")
        return history.select(
            pl.col("event_time").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"),
            # numbers on a quantitative axis; text or other values as categories
            pl.col("value").cast(pl.Float64 if self.report.feature(name).numeric else pl.String, strict=False),
            pl.Series("role", roles, dtype=pl.String),
        )

    def timeline_chart(self) -> alt.LayerChart:
        report, name = self.report, self.feature
        rec = report.rows.row(self.row, named=True)
        view = report.feature(name).view
        label_time = _utc(rec[report.timestamp_field])
        data = self.timeline_data()
        entity = ", ".join(f"{k}={rec[k]}" for k in report.entity_columns)
        x = alt.X("event_time:T", title="event time", scale=alt.Scale(type="utc"))
        kind = "Q" if report.feature(name).numeric else "N"
        y = alt.Y(f"value:{kind}", title=name)
        layers = []
        ttl = parse_ttl(view.ttl)
        if ttl is not None:
            window = pl.DataFrame({"start": [_iso(label_time - ttl)], "end": [_iso(label_time)], "what": [f"TTL window ({format_ttl(ttl)})"]})
            layers.append(
                alt.Chart(window).mark_rect(opacity=0.12, color=PIT_COLOR).encode(
                    x=alt.X("start:T", scale=alt.Scale(type="utc")), x2="end:T", tooltip=["what:N"]
                )
            )
        base = alt.Chart(data)
        layers.append(base.mark_line(color=HISTORY_COLOR, interpolate="step-after").encode(x=x, y=y))
        layers.append(
            base.mark_point(filled=True).encode(
                x=x,
                y=y,
                color=alt.Color(
                    "role:N",
                    scale=alt.Scale(
                        domain=["point-in-time", "naive", "point-in-time = naive", "history"],
                        range=[PIT_COLOR, NAIVE_COLOR, SAME_COLOR, HISTORY_COLOR],
                    ),
                    legend=alt.Legend(title="row chosen by", orient="top"),
                ),
                size=alt.condition("datum.role != 'history'", alt.value(160), alt.value(40)),
                tooltip=["event_time:T", "value:Q", "role:N"],
            )
        )
        marks = pl.DataFrame({"t": [_iso(label_time)], "text": ["label time"]})
        layers.append(alt.Chart(marks).mark_rule(color="black", strokeDash=[6, 3]).encode(x=alt.X("t:T", scale=alt.Scale(type="utc"))))
        layers.append(
            alt.Chart(marks).mark_text(align="left", dx=4, dy=-6, baseline="bottom").encode(
                x=alt.X("t:T", scale=alt.Scale(type="utc")), y=alt.value(12), text="text:N"
            )
        )
        horizon = rec[name + HORIZON]
        if horizon is not None and rec[name + NAIVE_TIME] is not None:
            note = pl.DataFrame({"t": [_iso(rec[name + NAIVE_TIME])], "v": [_float(rec[name + NAIVE]) if kind == "Q" else _show(rec[name + NAIVE])], "text": [f"naive: +{format_duration(horizon)} after the label"]})
            layers.append(
                alt.Chart(note).mark_text(align="right", dx=-10, dy=-12, color=NAIVE_COLOR, fontWeight="bold").encode(
                    x=alt.X("t:T", scale=alt.Scale(type="utc")), y=f"v:{kind}", text="text:N"
                )
            )
        subtitle = f"label row {self.row} at {_show(label_time)} UTC"
        if horizon is not None:
            subtitle += f"; the naive join reads a value {format_duration(horizon)} in the future"
        return alt.LayerChart(layer=layers).properties(
            width=520, height=240, title=alt.Title(f"{name} for {entity}", subtitle=subtitle)
        )

    def _vectors_html(self) -> str:
        report = self.report
        rec = report.rows.row(self.row, named=True)
        cells = []
        for f in report.features:
            leaked = rec[f.name + LEAKED]
            style = f" style='color:{NAIVE_COLOR};font-weight:bold'" if leaked else ""
            late = (
                " <span class='fsnb-late' title='the point-in-time row was created after the label time; "
                "as_of_ingestion=True would not use it'>(arrived late)</span>"
                if rec[f.name + LATE]
                else ""
            )
            cells.append(
                f"<tr><td><code>{html.escape(f.name)}</code></td><td>{html.escape(_show(rec[f.name]))}{late}</td>"
                f"<td{style}>{html.escape(_show(rec[f.name + NAIVE]))}</td>"
                f"<td>{'yes, +' + format_duration(rec[f.name + HORIZON]) if leaked else 'no'}</td></tr>"
            )
        keys = ", ".join(f"{k}={_show(rec[k])}" for k in report.entity_columns)
        label = f"; label {html.escape(report.label)} = {html.escape(_show(rec[report.label]))}" if report.label else ""
        return (
            f"<div class='fsnb-vectors'><b>Row {self.row}</b>: {html.escape(keys)} at "
            f"{html.escape(_show(rec[report.timestamp_field]))}{label}"
            "<table><thead><tr><th>feature</th>"
            f"<th style='color:{PIT_COLOR}'>point-in-time</th><th style='color:{NAIVE_COLOR}'>naive</th>"
            f"<th>leaked</th></tr></thead><tbody>{''.join(cells)}</tbody></table></div>"
        )

    def _keys_text(self, rows: pl.Series | None = None) -> pl.Series:
        """Each label row's entity key as text ("42" or "1,a"), for the list and the search."""
        frame = self.report.rows if rows is None else self.report.rows[rows]
        return frame.select(
            pl.concat_str([pl.col(k).cast(pl.String).fill_null("null") for k in self.report.entity_columns], separator=",")
        ).to_series()

    def _fill_list(self) -> None:
        """The picker list: rows matching the search, leaky first (largest horizon first)."""
        text = self.search.value.strip()
        rank = self._rank
        if text:
            if self._keys_cache is None:
                self._keys_cache = self._keys_text()
            match = self._keys_cache.str.contains(text, literal=True)
            if text.isdigit():
                match = match | (rank["row"] == int(text))
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
        keys = self._keys_text(rank["row"])
        times = self.report.rows[self.report.timestamp_field].gather(rank["row"])
        return [
            (
                f"{'⚠ ' if leaky else '  '}row {row}: {key} at {_show(t)}" + (f" · +{days:.1f}d" if leaky and days is not None else ""),
                int(row),
            )
            for row, leaky, days, key, t in zip(rank["row"], rank["leaky"], rank["days"], keys, times, strict=True)
        ]

    def _sync_list(self) -> None:
        """Show the selected row in the list (on top when the list would not hold it)."""
        options = self._list_options
        if not any(v == self.row for _, v in options):
            options = self._options(self._rank[[self.row]]) + options
        if list(self.row_list.options) != options:
            self.row_list.options = options
        self.row_list.value = self.row

    # -- static snapshot ------------------------------------------------------------
    def snapshot_svg(self) -> str:
        """The timeline of the current state as SVG, rendered offline by vl-convert."""
        import vl_convert as vlc
        from altair.utils._importers import vl_version_for_vl_convert

        from fsnb.leakage import warm_up_renderer

        warm_up_renderer().join()
        svg: str = vlc.vegalite_to_svg(self.timeline_chart().to_dict(), vl_version=vl_version_for_vl_convert())
        return svg

    def snapshot_html(self) -> str:
        return (
            f"{_SNAPSHOT_CSS}<div class='fsnb-snapshot'>{self._header_html()}"
            f"<div style='display:flex;gap:16px;align-items:flex-start'>{self.snapshot_svg()}{self._vectors_html()}</div>"
            "<p><small>Static snapshot of the leakage explorer (shown where the live widget is not).</small></p></div>"
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._widget_bundle(), raw=True)  # type: ignore[no-untyped-call]
        self._snapshot_handle = display(_HtmlOutput(self.snapshot_html()), display_id=True)  # type: ignore[no-untyped-call]

    def _widget_bundle(self) -> dict[str, Any]:
        bundle: dict[str, Any] = super()._repr_mimebundle_() or {}
        return bundle


class _TrustedChart(alt.Chart):
    """A chart built by fsnb's own code: JupyterChart serializes it without re-validating
    the schema (a few hundred ms per chart); the tests validate the same specs."""

    def to_dict(self, validate: bool = False, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = super().to_dict(validate=validate, **kwargs)
        return result


class _HtmlOutput:
    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return "<static snapshot of the leakage explorer>"


def _evenly(frame: pl.DataFrame, count: int) -> pl.DataFrame:
    """``count`` rows spread evenly over the frame (deterministic, unlike a random sample)."""
    if count >= frame.height:
        return frame
    if count <= 0:
        return frame.head(0)
    step = frame.height / count
    return frame[[int(i * step) for i in range(count)]]


def _naive_utc(column: pl.Expr, dtype: Any) -> pl.Expr:
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return column.cast(pl.Datetime("us"))


def _utc(value: Any) -> datetime:
    from fsnb.timeutil import utc

    return utc(value)


def _iso(value: Any) -> str:
    t = _utc(value).astimezone(timezone.utc).replace(tzinfo=None)
    return t.isoformat(timespec="milliseconds") + "Z"


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M")
        return text.removesuffix(" 00:00")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

