"""notebooks/leakage.ipynb in a real JupyterLab, driven in Debian's Chromium with no internet.

Uses the shared fixtures of tests/browser/conftest.py (JupyterLab on a loopback port, a
page whose requests leaving the machine are refused and recorded). One run of the notebook
(4,000 label rows) serves every check: the numbers, the charts' legend and labels, the
selection, the row list, the model picture, the dark theme, the sidebar at 1,280 px.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]

# Bounding boxes (left, top, right, bottom) of the timeline's annotation texts and of the
# label-time rule, keyed by text ("rule" for the rule).
TIMELINE_BOXES_JS = """(root) => {
    const svg = root.querySelector('svg.marks');
    const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const out = {};
    for (const t of svg.querySelectorAll('g.mark-text.role-mark text')) out[t.textContent] = box(t);
    const rule = svg.querySelector('g.mark-rule.role-mark line');
    if (rule) out.rule = box(rule);
    out.svg = box(svg);
    return out;
}"""


def selected_row(page) -> str:
    return page.locator(".fsnb-explorer .fsnb-vectors b").first.inner_text()


def wait_for_row_change(page, before: str) -> str:
    page.wait_for_function(
        "(before) => document.querySelector('.fsnb-explorer .fsnb-vectors b').innerText !== before", arg=before
    )
    return selected_row(page)


def overlaps(a: list[float], b: list[float], slack: float = 0.5) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def check_timeline_labels(page) -> dict[str, Any]:
    """The annotation texts of the timeline overlap neither each other nor the label-time rule."""
    page.wait_for_function(
        "() => { const t = document.querySelectorAll('.fsnb-timeline svg g.mark-text.role-mark text');"
        " return Array.from(t).some(x => x.textContent === 'label time'); }"
    )
    page.wait_for_timeout(200)  # the chart finished drawing (a new spec re-embeds it)
    boxes = page.locator(".fsnb-timeline").first.evaluate(TIMELINE_BOXES_JS)
    texts = {k: v for k, v in boxes.items() if k not in ("rule", "svg")}
    assert "label time" in texts and "rule" in boxes, boxes
    names = sorted(texts)
    for i, a in enumerate(names):
        assert not overlaps(texts[a], boxes["rule"], slack=0), f"{a!r} crosses the label-time rule: {boxes}"
        for b in names[i + 1 :]:
            assert not overlaps(texts[a], texts[b]), f"{a!r} and {b!r} overprint: {boxes}"
        # inside the chart: nothing cut at its edges
        assert boxes["svg"][0] <= texts[a][0] and texts[a][2] <= boxes["svg"][2], f"{a!r} leaves the chart: {boxes}"
    return boxes


def luminance(css_color: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def axis_label_colors(page) -> list[str]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.fsnb-explorer svg g.role-axis-label text')).slice(0, 3)"
        ".map(t => getComputedStyle(t).fill)"
    )


def set_theme(page, name: str, light: bool) -> None:
    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{name}'}})")
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{str(light).lower()}'")
    page.wait_for_timeout(500)  # the theme's stylesheet applies


def test_leakage_notebook_explorer(jupyter_lab, open_notebook, run_all_cells, screenshot):
    shutil.copy(ROOT / "notebooks" / "leakage.ipynb", jupyter_lab.root / "leakage.ipynb")
    page = open_notebook("leakage.ipynb")
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.set_default_timeout(120_000)
    run_all_cells(page, timeout_ms=180_000)

    explorer = page.locator(".fsnb-explorer")
    explorer.wait_for(state="visible")
    # both Altair charts drawn by the offline vega bundle (SVG renderer: points are elements)
    page.wait_for_function(
        "() => document.querySelectorAll('.fsnb-overview svg .mark-symbol path').length > 100"
        " && document.querySelectorAll('.fsnb-timeline svg .mark-symbol path').length > 0"
    )
    # the timeline's legend names both joins, the TTL window and the label time
    legend = " ".join(explorer.locator(".fsnb-timeline svg g.role-legend").all_text_contents())
    for entry in ("point-in-time", "naive", "TTL window (30d)", "label time"):
        assert entry in legend, legend
    # the TTL window is also labelled on the chart, and nothing overprints
    boxes = check_timeline_labels(page)
    assert "TTL 30d" in boxes

    # the summary numbers: the report table and the explorer header agree
    cells = page.locator(".fsnb-leakage-report table tbody tr").first.locator("td").all_inner_texts()
    assert cells[0] == "sessions_7d"
    leaky, rate = cells[2], cells[3]
    assert re.fullmatch(r"[\d,]+", leaky) and rate.endswith("%")
    assert explorer.locator(".fsnb-leaky-rows").inner_text() == leaky
    assert explorer.locator(".fsnb-leak-rate").inner_text() == rate
    naive_auc = float(explorer.locator(".fsnb-naive-metric").inner_text())
    pit_auc = float(explorer.locator(".fsnb-pit-metric").inner_text())
    assert naive_auc > pit_auc + 0.15
    printed = page.get_by_text(re.compile(r"sessions_7d ROC AUC: naive join \d\.\d\d, point-in-time \d\.\d\d"))
    assert printed.count() == 1
    assert f"naive join {naive_auc:.2f}, point-in-time {pit_auc:.2f}" in printed.inner_text()

    # what the leak does to a model: an ROC panel per feature, naive against point-in-time
    impact = explorer.locator(".fsnb-impact svg")
    impact.wait_for()
    impact_text = impact.text_content() or ""
    assert "What the leak does to a model" in impact_text
    assert f"naive join (AUC {naive_auc:.3f})" in impact_text and f"point-in-time (AUC {pit_auc:.3f})" in impact_text
    assert "sessions_7d" in impact_text and "avg_order" in impact_text
    assert impact.locator("g.mark-line.role-mark path").count() >= 4  # two curves per feature

    # no action menus ("…") anywhere in the explorer
    assert explorer.locator("details, .vega-actions").count() == 0
    explorer.scroll_into_view_if_needed()
    screenshot(page, "leakage-explorer-first")
    # the charts use the width they have (the timeline fills its box, beside the row's table)
    widths = page.evaluate(
        "() => { const c = document.querySelector('.fsnb-timeline'); const s = c.querySelector('svg');"
        " return [c.getBoundingClientRect().width, s.getBoundingClientRect().width]; }"
    )
    assert widths[1] > 400 and widths[1] >= widths[0] - 40, widths

    # the overview says how its points were chosen, and rings the selected row
    overview_text = explorer.locator(".fsnb-overview svg").text_content() or ""
    assert "500 of 4,000 label rows" in overview_text and "evenly spaced" in overview_text
    ring = explorer.locator(".fsnb-overview svg g.mark-symbol.role-mark").last.locator("path")
    assert ring.count() == 1

    # static snapshot: in the output, hidden next to the live widget, with the new pieces
    assert page.locator(".fsnb-snapshot").count() == 1
    assert not page.locator(".fsnb-snapshot").is_visible()

    # row numbers are 1-based for people, and the list shows keys with their names
    before = selected_row(page)
    assert re.fullmatch(r"Row [\d,]+", before)
    number = before.split()[1]
    assert explorer.locator(".fsnb-position").inner_text() == f"label row {number} of 4,000"
    options = explorer.locator(".fsnb-row-list select option")
    first = options.first.inner_text().replace("\xa0", " ")
    assert re.fullmatch(r"⚠ #[\d,]+ · user_id=\d+ · 2024-\d\d-\d\d 18:00 · \+\d+\.\d+d", first), first
    assert first.startswith(f"⚠ #{number} ·")  # the largest horizon is listed (and selected) first

    # "next leaky row" moves the selection; the list follows; labels still do not overprint
    listed = options.all_inner_texts()
    explorer.get_by_role("button", name=re.compile("next leaky row")).click()
    after = wait_for_row_change(page, before)
    option = explorer.locator(".fsnb-row-list select option:checked")
    assert option.count() == 1
    assert f"#{after.split()[1]} ·" in option.inner_text().replace("\xa0", " ")
    check_timeline_labels(page)

    # choosing a row far down the list keeps the list as it was (no reorder, no jump to the top)
    select = explorer.locator(".fsnb-row-list select")
    select.evaluate("(s) => { s.scrollTop = s.scrollHeight; }")
    scrolled = select.evaluate("(s) => s.scrollTop")
    assert scrolled > 0
    target = listed[-3]
    select.select_option(label=target)
    chosen = wait_for_row_change(page, after)
    assert chosen.split()[1] in target
    page.wait_for_timeout(500)
    assert options.all_inner_texts() == listed
    assert select.evaluate("(s) => s.scrollTop") > 0
    ring = explorer.locator(".fsnb-overview svg g.mark-symbol.role-mark").last.locator("path")
    page.wait_for_function(
        "() => { const g = document.querySelectorAll('.fsnb-overview svg g.mark-symbol.role-mark');"
        " return g.length && g[g.length - 1].querySelectorAll('path').length === 1; }"
    )
    # the list fits its box
    # the list and the search box fit the picker's box
    boxes = explorer.locator(".fsnb-picker").evaluate(
        "(p) => [p.getBoundingClientRect().right, ...Array.from(p.querySelectorAll('select, input'))"
        ".map(e => e.getBoundingClientRect().right)]"
    )
    assert len(boxes) == 3 and all(right <= boxes[0] + 1 for right in boxes[1:]), boxes
    # and its entries are not cut: the widest entry's text fits inside the list
    room, widest = select.evaluate(
        "(s) => { const c = document.createElement('canvas').getContext('2d'); const st = getComputedStyle(s);"
        " c.font = `${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;"
        " return [s.clientWidth, Math.max(...Array.from(s.options).map(o => c.measureText(o.text).width))]; }"
    )
    assert widest + 6 <= room, (widest, room)

    # clicking a point of the overview selects that label row; the list keeps its order
    points = explorer.locator(".fsnb-overview svg g.mark-symbol.role-mark").first.locator("path")
    points.nth(points.count() // 2).click(force=True)
    clicked = wait_for_row_change(page, chosen)
    assert clicked != chosen
    assert options.all_inner_texts()[: len(listed)] == listed

    # tooltips name things for people and show the feature's values
    points.nth(points.count() // 3).hover(force=True)
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible")
    tip = tooltip.inner_text()
    assert "label row" in tip and "sessions_7d, point-in-time" in tip and "sessions_7d, naive join" in tip, tip
    assert "user_id=" in tip
    assert "label_time" not in tip and "horizon_days" not in tip
    page.mouse.move(5, 5)

    # the static snapshot follows the selection, and a saved notebook keeps it
    page.wait_for_function(
        "(row) => document.querySelector('.fsnb-snapshot .fsnb-vectors b').textContent === row", arg=clicked
    )
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    saved = jupyter_lab.root / "leakage.ipynb"
    deadline = time.monotonic() + 30
    while f"<b>{clicked}</b>" not in saved.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    outputs = [o for c in nbformat.read(saved, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    pictures = [o["data"]["text/html"] for o in outputs if "fsnb-snapshot" in o.get("data", {}).get("text/html", "")]
    assert len(pictures) == 1
    assert pictures[0].count("<svg") == 2 and f"<b>{clicked}</b>" in pictures[0]
    assert "What the leak does to a model" in pictures[0] and "TTL window (30d)" in pictures[0]

    explorer.scroll_into_view_if_needed()
    screenshot(page, "leakage-explorer")
    explorer.locator(".fsnb-timeline").scroll_into_view_if_needed()
    screenshot(page, "leakage-explorer-timeline")

    # the charts follow JupyterLab's theme: dark text on light, light text on dark
    light = axis_label_colors(page)
    assert light and all(luminance(c) < 0.35 for c in light), light
    try:
        set_theme(page, "JupyterLab Dark", light=False)
        dark = axis_label_colors(page)
        assert all(luminance(c) > 0.6 for c in dark), dark
        background = page.evaluate(
            "() => getComputedStyle(document.querySelector('.fsnb-timeline svg')).backgroundColor"
        )
        assert background in ("rgba(0, 0, 0, 0)", "transparent"), background  # the notebook's own background shows
        explorer.locator(".fsnb-timeline").scroll_into_view_if_needed()
        screenshot(page, "leakage-explorer-dark")
    finally:
        set_theme(page, "JupyterLab Light", light=True)

    # the Feature Store sidebar shows the notebook's store (inside the root), at 1,280 px
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[title='Feature Store']").click()
    sidebar = page.locator("#fsnb-feature-store")
    sidebar.locator(".fsnb-view[data-view='activity']").wait_for()
    assert sidebar.locator(".fsnb-store-path").inner_text().endswith(".fsnb-leakage")
    assert not sidebar.locator(".fsnb-outside-root").count()
    # nothing in the notebook overflows sideways: wide tables scroll inside their own box
    page.wait_for_timeout(500)
    overflow = page.evaluate(
        """() => {
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer, .jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
            const edge = panel.getBoundingClientRect().right;
            const bad = [];
            for (const t of document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output table, .fsnb-explorer')) {
                let box = t.parentElement, scrolls = false;
                for (; box && !box.classList.contains('jp-OutputArea-output'); box = box.parentElement) {
                    const o = getComputedStyle(box).overflowX;
                    if ((o === 'auto' || o === 'scroll') && box.getBoundingClientRect().right <= edge + 1) { scrolls = true; break; }
                }
                const right = t.getBoundingClientRect().right;
                if (right > edge + 1 && !scrolls) bad.push([t.className || t.tagName, right, edge]);
            }
            return bad;
        }"""
    )
    assert overflow == [], overflow
    explorer.scroll_into_view_if_needed()
    screenshot(page, "leakage-explorer-sidebar-1280")
    assert not page.outside_requests, f"requests left the machine: {page.outside_requests[:5]}"
