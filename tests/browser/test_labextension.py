"""fsnb's JupyterLab extension in a real JupyterLab: SQL highlighting of %%feature_view
cells and the Feature Store sidebar (listing, refresh after a run, click to insert)."""

from __future__ import annotations

import re
from typing import Any

import fsnb

FEATURE_VIEW_CELL = (
    "%%feature_view user_stats --entity user_id --timestamp event_timestamp\n"
    "SELECT user_id, event_timestamp, login_count, avg_purchase\n"
    "FROM events\n"
    "WHERE login_count > 0"
)
# Python that contains the same words: they must not be styled as SQL keywords.
PYTHON_CELL = "SELECT, FROM = 'SELECT', 'FROM'\nimport math"
QUICKSTART_CELLS = [
    "%load_ext fsnb",
    (
        "import datetime as dt\n"
        "import polars as pl\n"
        "events = pl.DataFrame({\n"
        "    'user_id': [42, 42, 42, 17],\n"
        "    'event_timestamp': [dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 7), dt.datetime(2024, 2, 10)],\n"
        "    'login_count': [2, 5, 9, 1],\n"
        "    'avg_purchase': [10.0, 12.5, 30.0, 5.0],\n"
        "})"
    ),
    FEATURE_VIEW_CELL,
    PYTHON_CELL,
    "%materialize",
    (
        "labels = pl.DataFrame({'user_id': [42], 'event_timestamp': [dt.datetime(2024, 3, 3)]})\n"
        "%training_set labels user_stats:login_count -o train"
    ),
    "",  # where the sidebar inserts a feature reference
]

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def cell(page: Any, index: int) -> Any:
    return page.locator(f"{NOTEBOOK} .jp-CodeCell").nth(index)


def token_style(page: Any, cell_index: int, word: str) -> dict[str, Any] | None:
    """Class, color and weight of the innermost element holding `word` in a cell's editor."""
    return cell(page, cell_index).locator(".cm-content").evaluate(
        """(content, word) => {
            const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                const at = node.textContent.indexOf(word);
                if (at < 0) continue;
                const el = node.parentElement;
                const style = getComputedStyle(el);
                return {
                    tag: el.tagName, cls: el.className, text: el.textContent,
                    color: style.color, weight: style.fontWeight,
                    language: content.dataset.language || null,
                    editorClass: content.closest('.cm-editor').className,
                };
            }
            return null;
        }""",
        word,
    )


def test_feature_view_cells_are_sql_and_python_cells_stay_python(open_notebook, screenshot):
    page = open_notebook("highlight.ipynb", QUICKSTART_CELLS)
    page.wait_for_selector(".cm-content[data-language='sql']")

    select_sql = token_style(page, 2, "SELECT")
    where_sql = token_style(page, 2, "WHERE")
    select_py = token_style(page, 3, "SELECT")
    import_py = token_style(page, 3, "import")
    assert select_sql and where_sql and select_py and import_py

    # the feature view cell is parsed by CodeMirror's SQL language; the Python cells are not
    assert select_sql["language"] == "sql"
    assert "fsnb-feature-view-sql" in select_sql["editorClass"]
    assert select_py["language"] == "python" == token_style(page, 1, "import")["language"]
    assert "fsnb-feature-view-sql" not in select_py["editorClass"]

    # SQL keywords are their own tokens, styled like JupyterLab's keywords (as Python's `import`)
    assert select_sql["tag"] == "SPAN" and select_sql["text"] == "SELECT" and select_sql["cls"]
    assert where_sql["text"] == "WHERE" and where_sql["cls"] == select_sql["cls"]
    assert import_py["text"] == "import"
    assert select_sql["color"] == import_py["color"] and select_sql["weight"] == import_py["weight"]
    # the same word in a Python cell is a plain name, not a keyword
    assert select_py["color"] != select_sql["color"]
    assert select_py["cls"] != select_sql["cls"]

    # typing the magic into a Python cell switches it to SQL; removing it switches back
    python_cell = cell(page, 3)
    python_cell.locator(".cm-content").click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("%%feature_view tmp --entity a\n")
    page.wait_for_function(
        "(el) => el.dataset.language === 'sql'", arg=python_cell.locator(".cm-content").element_handle()
    )
    assert token_style(page, 3, "SELECT")["color"] == select_sql["color"]
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "(el) => el.dataset.language === 'python'", arg=python_cell.locator(".cm-content").element_handle()
    )
    cell(page, 2).scroll_into_view_if_needed()
    screenshot(page, "labextension-sql-highlighting")


def open_sidebar(page: Any) -> Any:
    tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[title='Feature Store']")
    tab.click()
    sidebar = page.locator("#fsnb-feature-store")
    sidebar.wait_for(state="visible")
    return sidebar


def test_sidebar_lists_the_store_and_inserts_feature_references(
    open_notebook, jupyter_lab, run_all_cells, cell_errors, screenshot
):
    page = open_notebook("project/sidebar.ipynb", QUICKSTART_CELLS)
    sidebar = open_sidebar(page)
    # before any cell ran there is no store in the notebook's folder yet
    sidebar.locator(".fsnb-message").wait_for()
    assert not sidebar.locator(".fsnb-view").count()

    run_all_cells(page)
    assert not cell_errors(page), cell_errors(page)
    assert (jupyter_lab.root / "project" / ".fsnb" / "registry.sqlite").is_file()

    # the sidebar refreshed by itself after the cells ran
    view = sidebar.locator(".fsnb-view[data-view='user_stats']")
    view.wait_for()
    assert sidebar.locator(".fsnb-store-path").inner_text().endswith("project/.fsnb")
    features = view.locator("button.fsnb-feature")
    assert features.all_inner_texts() == ["login_count", "avg_purchase"]
    assert [f.get_attribute("data-ref") for f in features.all()] == [
        "user_stats:login_count",
        "user_stats:avg_purchase",
    ]
    assert view.locator(".fsnb-type").all_inner_texts() == ["BIGINT", "DOUBLE"]
    assert view.locator(".fsnb-fact-entities").inner_text() == "user_id (BIGINT)"
    assert view.locator(".fsnb-fact-rows").inner_text().startswith("4")
    assert view.locator(".fsnb-fact-time").inner_text() == "2024-02-10 → 2024-03-07"
    assert view.locator(".fsnb-fact-online").inner_text() != "updated never"  # %materialize ran
    assert view.locator(".fsnb-badge").first.inner_text() == "v1"
    # the training set recorded by %training_set -o, with its fingerprint
    store = fsnb.FeatureStore(jupyter_lab.root / "project" / ".fsnb")
    try:
        [recorded] = store.list_training_sets()
    finally:
        store.close()
    fingerprint = sidebar.locator(".fsnb-training-set[data-training-set='train'] .fsnb-fingerprint")
    assert fingerprint.get_attribute("title") == recorded["fingerprint"]
    assert fingerprint.inner_text() == recorded["fingerprint"][:12]

    # click a feature: its reference lands at the cursor of the active (last, empty) cell
    target = cell(page, len(QUICKSTART_CELLS) - 1)
    target.locator(".cm-content").click()
    page.keyboard.type("refs = ['")
    view.locator("button.fsnb-feature[data-ref='user_stats:login_count']").click()
    page.keyboard.type("']")
    page.wait_for_function(
        "(el) => el.textContent.includes('user_stats:login_count')",
        arg=target.locator(".cm-content").element_handle(),
    )
    assert target.locator(".cm-content").inner_text() == "refs = ['user_stats:login_count']"
    screenshot(page, "labextension-sidebar")

    # a new version shows up after the cell that defines it runs
    redefine = cell(page, len(QUICKSTART_CELLS) - 1)
    redefine.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.type(
        "%%feature_view user_stats --entity user_id --timestamp event_timestamp --ttl 30d\n"
        "SELECT user_id, event_timestamp, login_count, avg_purchase FROM events"
    )
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "() => { const b = document.querySelector(\"#fsnb-feature-store .fsnb-view[data-view='user_stats'] .fsnb-badge\");"
        " return b && b.textContent === 'v2'; }"
    )
    assert view.locator(".fsnb-fact-ttl").inner_text() == "30d"

    # a view defined by another process appears when the refresh button is pressed
    other = fsnb.FeatureStore(jupyter_lab.root / "project" / ".fsnb")
    try:
        other.register(fsnb.FeatureView("from_elsewhere", entities=["user_id"], features={"x": "BIGINT"}))
    finally:
        other.close()
    sidebar.locator("button.fsnb-refresh").click()
    sidebar.locator(".fsnb-view[data-view='from_elsewhere']").wait_for()
    assert sidebar.locator(".fsnb-view-name").all_inner_texts() == ["from_elsewhere", "user_stats"]

    # the sidebar follows the store the kernel uses, not only the notebook folder's .fsnb
    last = cell(page, len(QUICKSTART_CELLS) - 1)
    last.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("%fsnb open other_store")
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "() => (document.querySelector('#fsnb-feature-store .fsnb-store-path') || {}).textContent"
        "?.endsWith('project/other_store')"
    )
    sidebar.get_by_text("No feature views yet").wait_for()
    assert not sidebar.locator(".fsnb-view").count()
    assert not page.outside_requests, page.outside_requests[:5]


LONG_VIEW = "customer_engagement_rolling_window_statistics_by_region"
LONG_FEATURE = "sessions_in_the_last_seven_days_excluding_weekends"
SIDEBAR_CELLS = [
    # a store outside the folder JupyterLab serves: the sidebar says so and how to fix it
    "import tempfile\nimport fsnb\noutside = fsnb.FeatureStore(tempfile.mkdtemp(prefix='fsnb-outside-'))",
    (
        "import datetime as dt\nimport polars as pl\n"
        "outside.close()\ndel outside\n"
        "store = fsnb.FeatureStore('.fsnb')\n"
        "events = pl.DataFrame({'user_id': [1, 2], 'event_timestamp': [dt.datetime(2024, 2, 10, 18, 30), dt.datetime(2024, 3, 7, 9, 15)],"
        f" '{LONG_FEATURE}': [3, 4]}})\n"
        f"store.register(fsnb.FeatureView('{LONG_VIEW}', entities=['user_id']), events)"
    ),
]


def refresh_sidebar(page: Any, sidebar: Any) -> None:
    """Press refresh and wait until that refresh (and any the finished cell queued) has drawn."""
    page.wait_for_timeout(300)
    before = int(sidebar.get_attribute("data-refreshed") or 0)
    sidebar.locator("button.fsnb-refresh").click()
    page.wait_for_function(
        "(before) => { const s = document.querySelector('#fsnb-feature-store');"
        " return Number(s.dataset.refreshed || 0) > before && !s.classList.contains('fsnb-loading'); }",
        arg=before,
    )
    page.wait_for_timeout(300)


def test_sidebar_explains_outside_root_and_fits_long_names(open_notebook, run_all_cells, wait_for_kernel_idle, screenshot):
    page = open_notebook("sizes/sidebar-sizes.ipynb", SIDEBAR_CELLS)
    page.set_viewport_size({"width": 1280, "height": 900})
    sidebar = open_sidebar(page)
    # run the first cell only: the kernel's store is now a temporary directory
    cell(page, 0).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    wait_for_kernel_idle(page)
    refresh_sidebar(page, sidebar)
    outside = sidebar.locator(".fsnb-outside-root")
    outside.wait_for()
    text = outside.inner_text()
    assert "outside the folder JupyterLab serves" in text
    assert "%fsnb open .fsnb" in text  # how to fix it
    assert re.search(r"Server: \S", text)  # the server's own reason, read from its JSON
    assert sidebar.locator(".fsnb-store-path").inner_text().split("/")[-1].startswith("fsnb-outside-")
    screenshot(page, "labextension-sidebar-outside-root")

    # then a store inside the root, with names longer than the sidebar is wide
    cell(page, 1).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    wait_for_kernel_idle(page)
    refresh_sidebar(page, sidebar)
    view = sidebar.locator(f".fsnb-view[data-view='{LONG_VIEW}']")
    view.wait_for()
    name = view.locator(".fsnb-view-name")
    feature = view.locator("button.fsnb-feature")
    for node, full in ((name, LONG_VIEW), (feature, LONG_FEATURE)):
        style = node.evaluate(
            "(n) => ({overflow: getComputedStyle(n).textOverflow, cut: n.scrollWidth > n.clientWidth, title: n.title})"
        )
        assert style["overflow"] == "ellipsis" and style["cut"], style  # ends in "…"
        assert full in style["title"]  # the tooltip shows the whole name
    # dates never wrap inside: each time is one line box
    times = view.locator(".fsnb-fact-time .fsnb-nowrap")
    assert times.all_inner_texts() == ["2024-02-10 18:30:00", "2024-03-07 09:15:00"]
    assert all(t.evaluate("(n) => n.getClientRects().length") == 1 for t in times.all())
    # readable at JupyterLab's normal sizes, and nothing sticks out sideways
    size = view.locator(".fsnb-fact-time").evaluate("(n) => parseFloat(getComputedStyle(n).fontSize)")
    assert size >= 12
    assert sidebar.evaluate("(s) => s.scrollWidth <= s.clientWidth")
    screenshot(page, "labextension-sidebar-long-names", clip=sidebar.bounding_box())
