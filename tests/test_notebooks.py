"""`make demo` runs the quickstart in a real kernel and prints what it found."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from fsnb import demo

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def test_the_quickstart_exists() -> None:
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


# Every notebook of notebooks/ is executed once by a real kernel, in
# tests/test_export.py::test_project_notebook_exports_and_reproduces (which then exports
# and re-runs it); the demo's own way of running one is tested here.


def test_make_demo_runs_the_quickstart_and_prints_the_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    executed, picture = tmp_path / "out.ipynb", tmp_path / "explorer.html"
    quickstart = NOTEBOOKS[0].parent / "quickstart.ipynb"
    args = [str(quickstart), "--store", str(tmp_path / "s"), "--output", str(executed), "--picture", str(picture)]
    code = demo.main(args)
    out = capsys.readouterr().out
    assert code == 0
    # every line of every cell is shown (the %training_set line is the second of its cell)
    assert "   ...: %training_set labels user_stats:login_count user_stats:avg_purchase -o train" in out
    # outputs are not cut: the whole %fsnb list table is there, down to its last row
    assert "more lines)" not in out
    # the explorer's picture (timeline and ROC curves, as SVG) is written and its path printed
    assert f"picture (timeline and ROC curves) is in {picture}" in out
    page = picture.read_text()
    assert page.count("<svg") >= 2 and "What the leak does to a model" in page and "login_count for user_id=42" in page
    assert f"fsnb: store at {tmp_path / 's'} (0 feature views)" in out
    assert "point-in-time login_count = 2, naive join = 9" in out
    assert "online after %materialize: 9" in out
    assert "with no errors" in out.splitlines()[-1]
    nb = nbformat.read(executed, as_version=4)
    html = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("Training set" in h and "33.3%" in h for h in html)  # the rich summary was displayed
    assert any("Feature view <code>user_stats</code>" in h for h in html)


def test_demo_reports_a_failing_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%load_ext fsnb\n"), nbformat.v4.new_code_cell("%fsnb show nope")])
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(broken, path)
    assert demo.main([str(path), "--store", str(tmp_path / "s"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "no feature view 'nope'" in err


def test_demo_needs_a_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err
