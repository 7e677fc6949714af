"""Browser-test fixtures: a real JupyterLab on a loopback port, driven by Debian's Chromium.

- ``jupyter_lab`` (session): JupyterLab serving a temporary root directory, with a token,
  the app exposed as ``window.jupyterapp`` and no update/news checks.
- ``browser`` (module): Playwright's Chromium from ``/usr/bin/chromium`` (never downloaded).
- ``lab_page``: a fresh browser context and page; requests that leave the machine are
  refused and recorded in ``page.outside_requests``.
- ``open_notebook(name, cells)``: writes a notebook into the lab root and returns a
  logged-in page showing it with its kernel idle.
- helper fixtures returning functions: ``run_all_cells(page)``, ``wait_for_kernel_idle(page)``,
  ``cell_errors(page)`` (texts of error outputs), ``screenshot(page, name)``.

Screenshots go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
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
STARTUP_TIMEOUT_S = 120
DEFAULT_TIMEOUT_MS = 60_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab."""

    base_url: str
    token: str
    root: Path
    log_path: Path

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def notebook_url(self, name: str) -> str:
        """The notebook alone in a fresh workspace (nothing restored from an earlier test)."""
        workspace = "t" + os.urandom(6).hex()
        return self.url(f"lab/workspaces/{workspace}/tree/{quote(name)}?reset")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab-root")
    private = tmp_path_factory.mktemp("lab-private")
    port, token = free_port(), "fsnb-browser-" + os.urandom(8).hex()
    env = dict(os.environ)
    env.pop("FSNB_STORE", None)  # kernels use each notebook folder's .fsnb
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        JUPYTER_CONFIG_DIR=str(private / "config"),  # no user config; sys-prefix config still applies
        JUPYTERLAB_SETTINGS_DIR=str(private / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(private / "workspaces"),
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1",
    )
    # no "Would you like to get notified about official Jupyter news?" toast over the tests
    labconfig = private / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    # every cell in the DOM (no notebook windowing), so tests can reach any cell and output
    tracker = private / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    log_path = private / "lab.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
            f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            try:
                with urllib.request.urlopen(lab.url("api/status"), timeout=2) as response:
                    json.load(response)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{lab.log_tail()}")
                time.sleep(0.3)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an asyncio loop running in
    # the main thread while it is open, which would break later tests that run a loop.
    from playwright.sync_api import sync_playwright

    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def lab_page(browser: Any, jupyter_lab: Lab) -> Iterator[Any]:
    """A fresh page (own cookies and storage); requests leaving the machine are refused."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page.outside_requests = outside
    page.console_errors = []  # browser console errors and page exceptions, for failure messages
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def write_notebook(path: Path, cells: Sequence[str | tuple[str, str]]) -> Path:
    """A python3 notebook whose cells are code strings, or (cell_type, source) pairs."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        kind, source = ("code", cell) if isinstance(cell, str) else cell
        maker = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(maker(source))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


CURRENT_KERNEL_JS = (
    "(() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " const s = w && w.sessionContext && w.sessionContext.session;"
    " return s && s.kernel ? s.kernel : null; })()"
)


def kernel_idle(page: Any, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Wait until the current notebook's kernel is idle and no cell shows [*] (queued/running)."""
    page.wait_for_function(
        f"""() => {{
            const kernel = {CURRENT_KERNEL_JS};
            if (!kernel || kernel.status !== 'idle') return false;
            const prompts = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt');
            return Array.from(prompts).every(p => !p.textContent.includes('*'));
        }}""",
        timeout=timeout_ms,
    )
    # A finished cell can queue a follow-up request (e.g. a widget or sidebar refresh): settle.
    page.wait_for_timeout(300)
    page.wait_for_function(f"() => {{ const k = {CURRENT_KERNEL_JS}; return k && k.status === 'idle'; }}", timeout=timeout_ms)


def run_all(page: Any, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Run every cell of the current notebook and wait until they are done."""
    # not awaited: the command's promise settles only when the last cell is done
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # the run starts asynchronously: wait until some cell has been queued or has run
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt'))"
        ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))",
        timeout=timeout_ms,
    )
    try:
        kernel_idle(page, timeout_ms)
    except Exception:
        save_screenshot(page, "failed-run-all-cells")
        raise


def error_outputs(page: Any) -> list[str]:
    """Texts of the error outputs in the current notebook (tracebacks, UsageErrors)."""
    return page.locator(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
        " .jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output.jp-mod-error"  # nbformat "error" outputs
    ).all_inner_texts()


def save_screenshot(page: Any, name: str, **kwargs: Any) -> Path:
    """Save a PNG under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path


@pytest.fixture
def open_notebook(jupyter_lab: Lab, lab_page: Any) -> Iterator[Callable[..., Any]]:
    """open_notebook(name, cells=None): write the notebook (if cells are given) into the lab
    root, open it in the page, and return the page once the kernel is idle."""

    def _open(name: str, cells: Sequence[str | tuple[str, str]] | None = None) -> Any:
        if cells is not None:
            write_notebook(jupyter_lab.root / name, cells)
        page = lab_page
        page.goto(jupyter_lab.notebook_url(name))
        try:
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content", state="attached")
            kernel_idle(page)
        except Exception as exc:
            shot = save_screenshot(page, f"failed-open-{Path(name).stem}")
            msg = (
                f"{name} did not open with an idle kernel ({type(exc).__name__}); screenshot {shot}\n"
                f"browser errors: {page.console_errors[:10]}\nserver log:\n{jupyter_lab.log_tail()}"
            )
            raise AssertionError(msg) from None
        return page

    yield _open
    shutdown_sessions(jupyter_lab)


def shutdown_sessions(lab: Lab) -> None:
    """Stop every kernel the lab runs (a test's notebooks must not outlive it)."""
    with urllib.request.urlopen(lab.url("api/sessions"), timeout=10) as response:
        sessions = json.load(response)
    for session in sessions:
        request = urllib.request.Request(lab.url(f"api/sessions/{session['id']}"), method="DELETE")
        with contextlib.suppress(OSError):  # already gone
            urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture
def run_all_cells() -> Callable[..., None]:
    return run_all


@pytest.fixture
def wait_for_kernel_idle() -> Callable[..., None]:
    return kernel_idle


@pytest.fixture
def cell_errors() -> Callable[[Any], list[str]]:
    return error_outputs


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    return save_screenshot
