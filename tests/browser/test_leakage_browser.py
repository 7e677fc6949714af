"""notebooks/leakage.ipynb in a real JupyterLab, driven in Debian's Chromium with no internet.

The server and browser fixtures live here (not in conftest.py) so this file stands on its own.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free loopback port, serving a copy of the leakage notebook."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "leakage.ipynb", root / "leakage.ipynb")
    port, token = _free_port(), "fsnb-leakage-test"
    # Render every cell (no windowing, so all outputs are in the page) and ask no news question.
    settings = root / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
        JUPYTERLAB_SETTINGS_DIR=str(root / "settings"),
    )
    log = open(root / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
            f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
            time.sleep(0.3)
    yield {"base": base, "token": token, "root": root}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})

        def only_loopback(route):
            host = urlparse(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:  # nothing may come from a CDN: refuse, and remember the attempt
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        page = context.new_page()
        page.outside_requests = outside  # type: ignore[attr-defined]
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        yield page
        # keep what the browser saw, pass or fail
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "leakage-notebook-last.png"), full_page=True)
        (ARTIFACTS / "leakage-browser-console.log").write_text("\n".join(console))
        context.close()
        browser.close()


def test_leakage_notebook_explorer(lab, page):
    page.set_default_timeout(120_000)
    page.goto(f"{lab['base']}/lab/tree/leakage.ipynb?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    explorer = page.locator(".fsnb-explorer")
    explorer.wait_for(state="visible")
    # both Altair charts drawn by the offline vega bundle
    page.wait_for_function(
        "() => document.querySelectorAll('.fsnb-explorer .vega-embed canvas, .fsnb-explorer .vega-embed svg').length >= 2"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')].every(p => !p.innerText.includes('*'))"
    )

    # the summary numbers: the report table and the explorer header agree
    report = page.locator(".fsnb-leakage-report table tbody tr").first
    cells = report.locator("td").all_inner_texts()
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

    # both charts are drawn (the offline vega bundle ran), the timeline with its legend
    assert explorer.locator(".fsnb-overview").locator("canvas, svg").first.is_visible()
    assert explorer.locator(".fsnb-timeline").locator("canvas, svg").first.is_visible()
    # the static snapshot exists in the output but stays hidden next to the live widget
    assert page.locator(".fsnb-snapshot").count() == 1
    assert not page.locator(".fsnb-snapshot").is_visible()

    selected = explorer.locator(".fsnb-vectors b").first
    before = selected.inner_text()
    assert re.fullmatch(r"Row \d+", before)
    explorer.get_by_role("button", name=re.compile("next leaky row")).click()
    page.wait_for_function(
        "(before) => document.querySelector('.fsnb-explorer .fsnb-vectors b').innerText !== before", arg=before
    )
    after = selected.inner_text()
    assert after != before
    # the picker list follows the selection
    row = int(after.split()[1])
    selected_option = explorer.locator(".fsnb-row-list select option:checked")
    assert selected_option.count() == 1
    assert f"row {row}:" in selected_option.inner_text().replace("\xa0", " ")

    # the static snapshot follows the selection, and a saved notebook keeps it
    page.wait_for_function(
        "(after) => document.querySelector('.fsnb-snapshot .fsnb-vectors b').textContent === after", arg=after
    )
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    saved = lab["root"] / "leakage.ipynb"
    deadline = time.monotonic() + 30
    while f"<b>{after}</b>" not in saved.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    import nbformat

    outputs = [o for c in nbformat.read(saved, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    pictures = [o["data"]["text/html"] for o in outputs if "fsnb-snapshot" in o.get("data", {}).get("text/html", "")]
    assert len(pictures) == 1
    assert "<svg" in pictures[0] and f"<b>{after}</b>" in pictures[0]

    ARTIFACTS.mkdir(exist_ok=True)
    explorer.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "leakage-explorer.png"), full_page=False)
    assert not page.outside_requests, f"requests left the machine: {page.outside_requests[:5]}"
