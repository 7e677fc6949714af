"""notebooks/leakage.ipynb in a real JupyterLab, driven in Debian's Chromium with no internet.

Uses the shared fixtures of tests/browser/conftest.py (JupyterLab on a loopback port, a
page whose requests leaving the machine are refused and recorded).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def selected_row(page) -> str:
    return page.locator(".fsnb-explorer .fsnb-vectors b").first.inner_text()


def wait_for_row_change(page, before: str) -> str:
    page.wait_for_function(
        "(before) => document.querySelector('.fsnb-explorer .fsnb-vectors b').innerText !== before", arg=before
    )
    return selected_row(page)


def test_leakage_notebook_explorer(jupyter_lab, open_notebook, run_all_cells, screenshot):
    shutil.copy(ROOT / "notebooks" / "leakage.ipynb", jupyter_lab.root / "leakage.ipynb")
    page = open_notebook("leakage.ipynb")
    page.set_default_timeout(120_000)
    run_all_cells(page, timeout_ms=180_000)

    explorer = page.locator(".fsnb-explorer")
    explorer.wait_for(state="visible")
    # both Altair charts drawn by the offline vega bundle (SVG renderer: points are elements)
    page.wait_for_function(
        "() => document.querySelectorAll('.fsnb-overview svg .mark-symbol path').length > 100"
        " && document.querySelectorAll('.fsnb-timeline svg .mark-symbol path').length > 0"
    )
    # the timeline's legend names both joins
    legend = explorer.locator(".fsnb-timeline svg.marks").text_content() or ""
    assert "point-in-time" in legend and "naive" in legend

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

    # the static snapshot is in the output but hidden next to the live widget
    assert page.locator(".fsnb-snapshot").count() == 1
    assert not page.locator(".fsnb-snapshot").is_visible()

    # "next leaky row" moves the selection; the list follows
    before = selected_row(page)
    assert re.fullmatch(r"Row \d+", before)
    explorer.get_by_role("button", name=re.compile("next leaky row")).click()
    after = wait_for_row_change(page, before)
    row = int(after.split()[1])
    option = explorer.locator(".fsnb-row-list select option:checked")
    assert option.count() == 1
    assert f"row {row}:" in option.inner_text().replace("\xa0", " ")

    # clicking a point of the overview selects that label row
    points = explorer.locator(".fsnb-overview svg .mark-symbol path")
    points.nth(points.count() // 2).click(force=True)
    clicked = wait_for_row_change(page, after)
    assert clicked != after

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
    assert "<svg" in pictures[0] and f"<b>{clicked}</b>" in pictures[0]

    explorer.scroll_into_view_if_needed()
    screenshot(page, "leakage-explorer")
    assert not page.outside_requests, f"requests left the machine: {page.outside_requests[:5]}"
