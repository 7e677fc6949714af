"""The leakage explorer's charts: Altair specs built from frames the explorer prepared.

Pure functions: frames in, charts out; nothing here reads a store or a report. Colours
that belong to the page (text, axes, the label-time rule, the selection ring) are
``currentColor``, so the charts follow JupyterLab's light and dark themes (and a saved
notebook's host page) without knowing which one is active; the background is transparent.

Annotations are placed by the space they have, in Vega expressions evaluated where the
chart is drawn (its width is the width of its box): each text goes right of its anchor
when it fits, else left, and never across the label-time rule. Text widths are
estimated generously (``_CHAR_PX`` per character).
"""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

PIT_COLOR, NAIVE_COLOR, SAME_COLOR, HISTORY_COLOR = "#1f77b4", "#d62728", "#2ca02c", "#9e9e9e"
INK = "currentColor"  # the text colour of the page the chart sits in
ROLES = ["point-in-time", "naive", "point-in-time = naive", "history"]
TIMELINE_HEIGHT = 240
_CHAR_PX = 7  # estimated width of one character of 11px text (bold included), generous
_TOP_ROW, _SECOND_ROW = 10, 27  # pixel rows of the top annotation band
Width = int | str  # pixels, or "container" (the width of the chart's box)

THEME: dict[str, Any] = {
    "background": "transparent",
    "view": {"stroke": None},
    "axis": {
        "labelColor": INK,
        "titleColor": INK,
        "domainColor": INK,
        "tickColor": INK,
        "gridColor": INK,
        "gridOpacity": 0.12,
        "domainOpacity": 0.5,
        "tickOpacity": 0.5,
    },
    "legend": {"labelColor": INK, "titleColor": INK, "labelLimit": 260},
    "title": {"color": INK, "subtitleColor": INK, "anchor": "start"},
    "text": {"color": INK},
}

_UTC = alt.Scale(type="utc")
_UTC_PADDED = alt.Scale(type="utc", padding=12)  # the timeline's end points are drawn whole


def to_svg(chart: Any) -> str:
    """A chart as SVG, rendered offline by vl-convert."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    from fsnb.notebook.warmup import warm_up_renderer

    warm_up_renderer().join()
    svg: str = vlc.vegalite_to_svg(chart.to_dict(validate=False), vl_version=vl_version_for_vl_convert())
    return svg


def _themed(chart: Any) -> Any:
    return chart.configure(**THEME)


def overview_chart(data: pl.DataFrame, *, feature: str, subtitle: str, current: int, width: Width) -> Any:
    """Leak horizon per label row (the sample in ``data``); click a point to pick its row.
    The row equal to the ``current`` parameter is ringed (and is always in ``data``)."""
    pick = alt.selection_point(name="pick", fields=["row"], on="click", clear=False)
    now = alt.param(name="current", value=int(current))
    base = alt.Chart(data).encode(
        x=alt.X("label_time:T", title="label time", scale=_UTC),
        y=alt.Y("horizon_days:Q", title="naive value from the future (days)"),
    )
    tooltip = [
        alt.Tooltip("n:Q", title="label row", format=","),
        alt.Tooltip("entity:N", title="entity"),
        alt.Tooltip("when:N", title="label time (UTC)"),
        alt.Tooltip("pit_value:N", title=f"{feature}, point-in-time"),
        alt.Tooltip("naive_value:N", title=f"{feature}, naive join"),
        alt.Tooltip("horizon:N", title="naive value from the future"),
    ]
    points = (
        base.mark_circle(size=60, opacity=0.8)
        .encode(
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=["leaky", "not leaky"], range=[NAIVE_COLOR, HISTORY_COLOR]),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=tooltip,
        )
        .add_params(pick)
    )
    ring = (
        base.transform_filter("datum.row == current")
        .mark_point(size=320, strokeWidth=3, color=INK, filled=False)
        .encode(tooltip=tooltip)
    )
    title = alt.Title(f"Leak horizon of '{feature}' per label row", subtitle=subtitle)
    chart = alt.layer(points, ring).add_params(now).properties(width=width, height=200, title=title)
    return _themed(chart)


def timeline_chart(
    data: pl.DataFrame,
    *,
    feature: str,
    numeric: bool,
    title: str,
    subtitle: str,
    label_time: str,
    ttl: tuple[str, str, str] | None,
    naive_note: dict[str, Any] | None,
    width: Width,
) -> Any:
    """One entity's history of the feature, each point coloured by the join that chose it.

    ``label_time`` is an ISO time; ``ttl`` the window (start ISO, legend text, label); ``naive_note``
    {"t": naive row's time, "text": ...} when the naive join read the future.
    """
    x = alt.X("event_time:T", title="event time", scale=_UTC_PADDED)
    y = alt.Y("value:Q" if numeric else "value:N", title=feature, scale=_value_scale(data, numeric))
    layers: list[Any] = []
    if ttl is not None:
        start, text, short = ttl
        window = pl.DataFrame({"s": [start], "e": [label_time], "what": [text], "short": [short]})
        layers.append(
            alt.Chart(window)
            .mark_rect(opacity=0.12)
            .encode(
                x=alt.X("s:T", scale=_UTC_PADDED),
                x2="e:T",
                fill=alt.Fill(
                    "what:N",
                    scale=alt.Scale(range=[PIT_COLOR]),
                    legend=alt.Legend(title=None, orient="bottom", symbolOpacity=0.3, symbolType="square"),
                ),
                tooltip=[alt.Tooltip("what:N", title="window")],
            )
        )
        layers.append(_ttl_label(window))
    history = alt.Chart(data)
    layers.append(history.mark_line(color=HISTORY_COLOR, interpolate="step-after").encode(x=x, y=y))
    layers.append(
        history.mark_point(filled=True, opacity=1).encode(
            x=x,
            y=y,
            color=alt.Color(
                "role:N",
                scale=alt.Scale(domain=ROLES, range=[PIT_COLOR, NAIVE_COLOR, SAME_COLOR, HISTORY_COLOR]),
                legend=alt.Legend(title="row chosen by", orient="top"),
            ),
            size=alt.condition("datum.role != 'history'", alt.value(160), alt.value(40)),
            tooltip=[
                alt.Tooltip("when:N", title="event time (UTC)"),
                alt.Tooltip("shown:N", title=feature),
                alt.Tooltip("role:N", title="row chosen by"),
            ],
        )
    )
    mark = pl.DataFrame({"t": [label_time], "what": ["label time"]})
    layers.append(
        alt.Chart(mark)
        .mark_rule(color=INK)
        .encode(
            x=alt.X("t:T", scale=_UTC_PADDED),
            strokeDash=alt.StrokeDash(
                "what:N", scale=alt.Scale(range=[[6, 3]]), legend=alt.Legend(title=None, orient="bottom", symbolType="stroke")
            ),
        )
    )
    layers.append(_label_time_text(mark))
    if naive_note is not None:
        layers.append(_naive_text(pl.DataFrame({"t": [naive_note["t"]], "lt": [label_time], "text": [naive_note["text"]]})))
    chart = alt.layer(*layers).properties(
        width=width, height=TIMELINE_HEIGHT, title=alt.Title(title, subtitle=subtitle)
    )
    return _themed(chart)


def _value_scale(data: pl.DataFrame, numeric: bool) -> alt.Scale:
    """Room above the data for the annotation band, and below it for the TTL label."""
    if not numeric:
        return alt.Scale(padding=1.5)
    values = data["value"].drop_nulls()
    if values.is_empty():
        return alt.Scale()
    lo, hi = float(values.min()), float(values.max())  # type: ignore[arg-type]
    span = (hi - lo) or max(abs(hi), 1.0)
    return alt.Scale(domain=[lo - 0.2 * span, hi + 0.35 * span], nice=False, zero=False)


def _width(text: str = "datum.text") -> str:
    return f"(length({text}) * {_CHAR_PX} + 4)"


def _label_time_text(mark: pl.DataFrame) -> Any:
    """"label time" beside the rule, on its right when it fits, else on its left."""
    fits = f"scale('x', toDate(datum.t)) + 6 + {_width('datum.what')} <= width"
    return (
        alt.Chart(mark)
        .mark_text(
            baseline="middle",
            color=INK,
            align=alt.expr(f"{fits} ? 'left' : 'right'"),
            dx=alt.expr(f"{fits} ? 5 : -5"),
        )
        .encode(x=alt.X("t:T", scale=_UTC_PADDED), y=alt.value(_TOP_ROW), text="what:N")
    )


def _naive_text(note: pl.DataFrame) -> Any:
    """The naive row's horizon, one band below "label time": right of the naive point when
    it fits, else left of it (still right of the rule), else left of the rule."""
    xn, xr, w = "scale('x', toDate(datum.t))", "scale('x', toDate(datum.lt))", _width()
    right = f"{xn} + 8 + {w} <= width"
    between = f"{xn} - 8 - {w} >= {xr} + 4"
    return (
        alt.Chart(note)
        .mark_text(
            baseline="middle",
            color=NAIVE_COLOR,
            fontWeight="bold",
            align=alt.expr(f"{right} ? 'left' : 'right'"),
            dx=alt.expr(f"{right} ? 8 : ({between} ? -8 : {xr} - {xn} - 6)"),
        )
        .encode(x=alt.X("t:T", scale=_UTC_PADDED), y=alt.value(_SECOND_ROW), text="text:N")
    )


def _ttl_label(window: pl.DataFrame) -> Any:
    """The TTL window's name at the bottom: inside the window when it fits, else left of
    it, else right of its end (the label time)."""
    xs, xe, w = "scale('x', toDate(datum.s))", "scale('x', toDate(datum.e))", _width("datum.short")
    inside = f"{xe} - {xs} >= {w} + 8"
    left = f"{xs} - 4 - {w} >= 0"
    return (
        alt.Chart(window)
        .mark_text(
            baseline="middle",
            color=PIT_COLOR,
            align=alt.expr(f"{inside} ? 'left' : ({left} ? 'right' : 'left')"),
            dx=alt.expr(f"{inside} ? 4 : ({left} ? -4 : {xe} - {xs} + 5)"),
        )
        .encode(x=alt.X("s:T", scale=_UTC_PADDED), y=alt.value(TIMELINE_HEIGHT - 9), text="short:N")
    )


def roc_chart(curves: dict[str, pl.DataFrame], *, width: int = 230) -> Any:
    """Per feature, the ROC curve of the naive join against the point-in-time join
    (frames from LeakageReport.roc: join, fpr, tpr, auc)."""
    panels = []
    for feature, frame in curves.items():
        names = {
            join: f"{'naive join' if join == 'naive' else join} (AUC {auc:.3f})"
            for join, auc in frame.select("join", "auc").unique(maintain_order=True).iter_rows()
        }
        named = frame.with_row_index("i").with_columns(pl.col("join").replace_strict(names).alias("curve"))
        domain = [names[j] for j in ("naive", "point-in-time") if j in names]
        colors = [NAIVE_COLOR if d.startswith("naive") else PIT_COLOR for d in domain]
        diagonal = alt.Chart(pl.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(
            color=INK, strokeDash=[4, 4], opacity=0.4
        ).encode(x="x:Q", y="y:Q")
        lines = (
            alt.Chart(named)
            .mark_line(interpolate="linear", strokeWidth=2.5)
            .encode(
                x=alt.X("fpr:Q", title="false positive rate", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("tpr:Q", title="true positive rate", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color(
                    "curve:N", scale=alt.Scale(domain=domain, range=colors), legend=alt.Legend(title=None, orient="bottom", direction="vertical")
                ),
                order="i:Q",
                # dashed naive curve: where both joins agree it still shows over the other
                strokeDash=alt.condition("datum.join == 'naive'", alt.value([6, 3]), alt.value([1, 0])),
            )
        )
        panels.append(alt.layer(diagonal, lines).properties(width=width, height=width, title=alt.Title(feature, subtitle="ROC against the label")))
    chart = alt.hconcat(*panels).resolve_scale(color="independent").properties(
        title=alt.Title("What the leak does to a model", subtitle="the naive join's curve is the model you would think you have")
    )
    return _themed(chart)


def metric_chart(metrics: pl.DataFrame, *, metric_label: str, width: int = 320) -> Any:
    """Per feature, the offline metric of the naive join beside the point-in-time join's
    (columns feature, join, value)."""
    bars = (
        alt.Chart(metrics)
        .mark_bar()
        .encode(
            x=alt.X("value:Q", title=metric_label, scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("feature:N", title=None),
            yOffset=alt.YOffset("join:N", sort=["naive join", "point-in-time"]),
            color=alt.Color(
                "join:N",
                scale=alt.Scale(domain=["naive join", "point-in-time"], range=[NAIVE_COLOR, PIT_COLOR]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("join:N"), alt.Tooltip("value:Q", title=metric_label, format=".3f")],
        )
        .properties(width=width, title=alt.Title("What the leak does to a model", subtitle=f"{metric_label} of each feature alone"))
    )
    return _themed(bars)
