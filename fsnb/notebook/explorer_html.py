"""The leakage explorer's HTML parts: its style, the summary header, the selected row's
vectors and the static snapshot page. Pure functions over a LeakageReport's frames.

Colours come from JupyterLab's CSS variables (with plain fallbacks for a saved notebook
shown elsewhere), so the explorer follows the light and dark themes.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import polars as pl

from fsnb.leakage_columns import HORIZON, LATE, LEAKED, NAIVE, format_duration
from fsnb.notebook.explorer_charts import NAIVE_COLOR, PIT_COLOR
from fsnb.notebook.explorer_data import show

if TYPE_CHECKING:
    from fsnb.leakage import LeakageReport

# The live widget: charts fill their box; the tooltip (a body-level element of vega-tooltip)
# takes the theme's colours. Next to the widget the static snapshot hides itself.
STYLE = """<style>
.fsnb-explorer { color: var(--jp-ui-font-color1, #000); max-width: 100%; }
.fsnb-explorer .fsnb-chart { min-width: 0; display: block; }
.fsnb-picker > .widget-inline-hbox { align-self: stretch; min-width: 0; }
.fsnb-explorer .fsnb-row-list select { width: 100%; min-width: 0; box-sizing: border-box;
  font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px); font-variant-numeric: tabular-nums; }
.fsnb-vectors table { border-collapse: collapse; margin-top: 4px; }
.fsnb-vectors th, .fsnb-vectors td { padding: 2px 8px; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }
#vg-tooltip-element.vg-tooltip { background-color: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #000);
  border-color: var(--jp-border-color1, #ccc); font-family: var(--jp-ui-font-family, sans-serif); }
#vg-tooltip-element.vg-tooltip td.key { color: var(--jp-ui-font-color2, #555); }
</style>"""
_SNAPSHOT_CSS = (
    "<style>.jp-OutputArea-child:has(.fsnb-explorer) + .jp-OutputArea-child .fsnb-snapshot"
    "{display:none}</style>"
)


def header_html(report: LeakageReport, feature: str, *, has_picture: bool) -> str:
    rec = report.summary.filter(pl.col("feature") == feature).row(0, named=True)
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in report.describe() if line.startswith(feature + ":"))
    metric = ""
    if rec["naive_metric"] is not None and rec["pit_metric"] is not None:
        metric = (
            f" · {html.escape(report.metric_label)}: naive join <b class='fsnb-naive-metric'>{rec['naive_metric']:.3f}</b>"
            f", point-in-time <b class='fsnb-pit-metric'>{rec['pit_metric']:.3f}</b>"
        )
    hint = ""
    if not has_picture:
        hint = (
            "<p class='fsnb-impact-hint'><small>Pass <code>label=</code> (a binary or numeric label column) "
            "to see what the leak does to a model.</small></p>"
        )
    return (
        "<div class='fsnb-explorer-header'><b>Leakage explorer</b> · "
        f"<span class='fsnb-leaky-rows'>{rec['leaky_rows']:,}</span> of {rec['rows']:,} label rows leak "
        f"(<span class='fsnb-leak-rate'>{rec['leak_rate']:.1%}</span>) for <code>{html.escape(feature)}</code>"
        f"{metric}<ul style='margin:4px 0'>{lines}</ul>{hint}</div>"
    )


def vectors_html(report: LeakageReport, row: int) -> str:
    """The selected label row: its key, time and label, and each feature both ways."""
    rec = report.rows.row(row, named=True)
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
            f"<tr><td><code>{html.escape(f.name)}</code></td><td>{html.escape(show(rec[f.name]))}{late}</td>"
            f"<td{style}>{html.escape(show(rec[f.name + NAIVE]))}</td>"
            f"<td>{'yes, +' + format_duration(rec[f.name + HORIZON]) if leaked else 'no'}</td></tr>"
        )
    keys = ", ".join(f"{k}={show(rec[k])}" for k in report.entity_columns)
    label = f"; label {html.escape(report.label)} = {html.escape(show(rec[report.label]))}" if report.label else ""
    return (
        f"<div class='fsnb-vectors'><b>Row {row + 1:,}</b>: {html.escape(keys)} at "
        f"{html.escape(show(rec[report.timestamp_field]))}{label}"
        "<table><thead><tr><th>feature</th>"
        f"<th style='color:{PIT_COLOR}'>point-in-time</th><th style='color:{NAIVE_COLOR}'>naive</th>"
        f"<th>leaked</th></tr></thead><tbody>{''.join(cells)}</tbody></table></div>"
    )


def snapshot_page(header: str, impact_svg: str | None, timeline_svg: str, vectors: str) -> str:
    """The static picture of the explorer: summary (with the model picture), timeline, row."""
    impact = f"<div class='fsnb-snapshot-impact'>{impact_svg}</div>" if impact_svg else ""
    flex = "display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start"
    return (
        f"{_SNAPSHOT_CSS}<div class='fsnb-snapshot'><div style='{flex}'>{header}{impact}</div>"
        f"<div style='{flex}'>{timeline_svg}{vectors}</div>"
        "<p><small>Static snapshot of the leakage explorer (shown where the live widget is not).</small></p></div>"
    )
