"""binder/ builds what Binder would: a fresh environment from its requirements and
postBuild, in which fsnb imports, JupyterLab lists the fsnb extension and the
quickstart notebook runs.

Slow (a wheel build with the JupyterLab extension): it reuses pip's cache and the
project's labextension/node_modules (so no npm download), nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def working_tree_files() -> list[str]:
    """What a clone would hold: tracked and new files, without ignored ones (.venv, builds)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_repository(target: Path) -> Path:
    for name in working_tree_files():
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest)
    modules = ROOT / "labextension" / "node_modules"
    if modules.is_dir():
        # The npm packages are the registry's, not the recipe's: reuse them.
        (target / "labextension" / "node_modules").symlink_to(modules, target_is_directory=True)
    return target


def binder_env(venv: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER", "FSNB_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    # Jupyter's per-user folders would let this machine's kernels and extensions leak in.
    env["JUPYTER_DATA_DIR"] = str(home / "data")
    env["JUPYTER_CONFIG_DIR"] = str(home / "config")
    env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"{time.monotonic() - started:6.1f} s  {' '.join(command)[:100]}")
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_binder_files_say_what_binder_needs() -> None:
    requirements = (BINDER / "requirements.txt").read_text()
    assert "jupyterlab" in requirements
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "Binder runs postBuild as a program: it must be executable"
    text = post_build.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert 'pip install ".[notebook]"' in text
    assert (BINDER / "runtime.txt").read_text().strip().startswith("python-3.")


@pytest.mark.slow
def test_fresh_binder_environment_runs_the_quickstart(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path / "repo")
    venv = tmp_path / "venv"
    env = binder_env(venv, tmp_path / "jupyter")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)

    # 1. binder/requirements.txt, 2. binder/postBuild, both from the repository root.
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], repo, env)
    built = run(["bash", "binder/postBuild"], repo, env, timeout=900)
    assert "installed" in built.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([str(venv / "bin" / "python"), "-c", "import fsnb, fsnb.cli; print(fsnb.__file__)"], elsewhere, env)
    assert where.stdout.strip().startswith(str(venv)), "fsnb must come from the environment, not a source tree"

    listing = run([str(venv / "bin" / "jupyter"), "labextension", "list"], elsewhere, env)
    output = listing.stdout + listing.stderr
    line = next((ln for ln in output.splitlines() if ln.strip().startswith("fsnb ")), "")
    assert "enabled" in line and "OK" in line, output
    assert str(venv / "share" / "jupyter" / "labextensions") in output
    cli = run([str(venv / "bin" / "fsnb"), "--version"], elsewhere, env)
    assert cli.stdout.strip() == "fsnb 0.1.0"

    # 3. The quickstart runs in a kernel of that environment, in a folder of its own.
    notebook = nbformat.read(str(ROOT / "notebooks" / "quickstart.ipynb"), as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel prefix', sys.prefix)"))
    nbformat.write(notebook, str(elsewhere / "quickstart.ipynb"))
    runner = textwrap.dedent(
        """
        import nbformat
        from nbclient import NotebookClient
        nb = nbformat.read("quickstart.ipynb", as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
        nbformat.write(nb, "quickstart.ipynb")
        """
    )
    run([str(venv / "bin" / "python"), "-c", runner], elsewhere, env)
    executed = nbformat.read(str(elsewhere / "quickstart.ipynb"), as_version=4)
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in executed.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert f"kernel prefix {venv}" in text
    assert f"fsnb: store at {elsewhere / '.fsnb'}" in text
    assert (elsewhere / ".fsnb" / "registry.sqlite").exists()
