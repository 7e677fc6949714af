"""Run a notebook headless with a real kernel and print what it found: ``python -m fsnb.demo NB``.

``make demo`` runs the quickstart this way. Each run uses a fresh store (a temporary
directory, or ``--store``) so the story is the same every time; the notebook file
itself is left untouched unless ``--output`` asks for the executed copy. The transcript
shows every cell whole and everything it printed (tables are never cut); the leakage
explorer's static picture, which a console cannot show, goes to an HTML file
(``--picture``, default ./fsnb-demo-explorer.html) whose path is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PICTURE = "fsnb-demo-explorer.html"
_SNAPSHOT = "fsnb-snapshot"  # the class of the explorer's static picture (fsnb.notebook.explorer_html)


def run_notebook(path: str | os.PathLike[str], store: str | os.PathLike[str], *, timeout: int = 600) -> Any:
    """Execute every cell of the notebook in a fresh python3 kernel; return the executed notebook.

    The kernel starts in the notebook's folder with $FSNB_STORE set to store. Raises
    nbclient's CellExecutionError on the first failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    from fsnb.config import store_path

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    env = {**os.environ, "FSNB_STORE": str(store_path(store))}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        # The kernel's startup warnings (e.g. about TCP on loopback) are noise in a demo;
        # errors still show, and cell errors come back through the notebook anyway.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    client.execute(env=env)
    return nb


def cell_text(cell: Any) -> list[str]:
    """The plain-text lines a cell showed (printed text and text/plain results)."""
    lines: list[str] = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            lines.extend(str(out.get("text", "")).rstrip("\n").splitlines())
        elif out.get("output_type") in ("execute_result", "display_data"):
            text = out.get("data", {}).get("text/plain")
            if text:
                lines.extend(str(text).splitlines())
    return lines


def transcript(nb: Any) -> str:
    """A console transcript: each code cell whole, then everything it showed."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        prompt = f"In [{cell.get('execution_count') or ' '}]: "
        for i, line in enumerate(cell.source.strip().splitlines()):
            parts.append((prompt if i == 0 else "...: ".rjust(len(prompt))) + line)
        parts.extend(f"    {line}" for line in cell_text(cell))
    return "\n".join(parts)


def pictures(nb: Any) -> list[str]:
    """The HTML of the leakage explorer's static pictures the notebook displayed."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if _SNAPSHOT in text:
                found.append(text)
    return found


def write_pictures(nb: Any, path: str | os.PathLike[str], notebook: Path) -> Path | None:
    """Write the explorer's pictures into one HTML page; None when the notebook showed none."""
    found = pictures(nb)
    if not found:
        return None
    import html

    target = Path(path).resolve()
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>fsnb leakage explorer: {html.escape(notebook.name)}</title>"
        "<style>body{font-family:sans-serif;margin:24px;color:#222}code{font-size:90%}"
        "table{border-collapse:collapse}th,td{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}</style>"
        f"</head><body><h1>Leakage explorer ({html.escape(notebook.name)})</h1>"
        + "<hr>".join(found)
        + "</body></html>"
    )
    target.write_text(page, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fsnb.demo", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default="notebooks/quickstart.ipynb")
    parser.add_argument("--store", help="store directory (default: a fresh temporary one)")
    parser.add_argument("--output", help="also write the executed notebook here")
    parser.add_argument("--quiet", action="store_true", help="print only the result line")
    parser.add_argument(
        "--picture", default=PICTURE, help=f"where to write the leakage explorer's picture (default ./{PICTURE})"
    )
    args = parser.parse_args(argv)

    from nbclient.exceptions import CellExecutionError

    notebook = Path(args.notebook)
    if not notebook.is_file():
        print(f"fsnb demo: no notebook at {notebook}; pass the path of an .ipynb file", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fsnb-demo-") as tmp:
        store = args.store or os.path.join(tmp, "store")
        print(f"fsnb demo: running {notebook} in a fresh kernel (store: {store})", flush=True)
        started = time.perf_counter()
        try:
            nb = run_notebook(notebook, store)
        except CellExecutionError as exc:
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            print(f"fsnb demo: {notebook} FAILED", file=sys.stderr)
            print("\n".join(lines[-12:]), file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - started
    if args.output:
        import nbformat

        nbformat.write(nb, args.output)  # type: ignore[no-untyped-call]
    if not args.quiet:
        print(transcript(nb))
    picture = write_pictures(nb, args.picture, notebook)
    if picture is not None:
        print(f"fsnb demo: the leakage explorer's picture (timeline and ROC curves) is in {picture}; open it in a browser")
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"fsnb demo: {notebook} ran {cells} code cells with no errors in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
