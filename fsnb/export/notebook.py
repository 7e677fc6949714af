"""What export reads from a notebook: its code cells and headings, the magics in a cell,
the store it used, and the fingerprints its training sets had (store records or saved
outputs). Nothing here writes code."""

from __future__ import annotations

import argparse
import ast
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsnb.errors import FsnbError

FINGERPRINT_RE = re.compile(r"fingerprint(?:\s|:|=|<[^>]*>)*([0-9a-f]{16})\b", re.IGNORECASE)


class ExportError(FsnbError):
    """A notebook cannot be turned into a pipeline (unreadable, or a magic it cannot translate)."""


@dataclass
class TrainingSet:
    """One ``%training_set ... -o NAME`` of the notebook and the fingerprint it had there."""

    name: str
    features: list[str] | None
    cell: int
    fingerprint: str | None = None
    source: str = "not recorded"


@dataclass
class Cell:
    index: int
    source: str
    outputs: list[dict[str, Any]]


def needs_ipython() -> Any:
    """fsnb.notebook.grammar (IPython's magic machinery), or a one-line ExportError."""
    try:
        from fsnb.notebook import grammar
    except ImportError:
        msg = "fsnb export needs IPython to read the magics; pip install 'fsnb[notebook]'"
        raise ExportError(msg) from None
    return grammar


def python_of(cell: Cell) -> str:
    """The cell as the Python IPython runs (magics become get_ipython() calls)."""
    needs_ipython()
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return str(TransformerManager().transform_cell(cell.source))  # type: ignore[no-untyped-call]
    except SyntaxError as exc:
        raise ExportError(f"cell {cell.index + 1}: {exc.msg}") from None


def parse_magic(name: str, line: str, cell: Cell) -> argparse.Namespace:
    """A magic's line parsed by the magic's own grammar; its mistakes as ExportError."""
    grammar = needs_ipython()
    from IPython.core.error import UsageError

    try:
        return grammar.parse(name, line)  # type: ignore[no-any-return]
    except UsageError as exc:
        msg = f"cell {cell.index + 1}: %{grammar.PARSERS[name].prog}: {exc}"
        raise ExportError(msg) from None


def ipython_call(node: ast.expr | None) -> tuple[str, list[str]] | None:
    """('run_line_magic', [name, line]) for get_ipython().run_line_magic('name', 'line') etc."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    owner = node.func.value
    if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "get_ipython"):
        return None
    kind = node.func.attr
    if kind not in ("run_line_magic", "run_cell_magic", "system", "getoutput"):
        return None
    values = []
    for arg in node.args:
        if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
            return None
        values.append(arg.value)
    return kind, values


def fsnb_magics(cell: Cell) -> Iterator[tuple[str, argparse.Namespace]]:
    """(name, parsed line) of each fsnb magic in the cell that parses (others are skipped:
    the translator reports them when it reaches them)."""
    grammar = needs_ipython()
    try:
        tree = ast.parse(python_of(cell))
    except (SyntaxError, ExportError):
        return
    for node in ast.walk(tree):
        call = ipython_call(node) if isinstance(node, ast.expr) else None
        if call is None or call[0] not in ("run_line_magic", "run_cell_magic") or call[1][0] not in grammar.NAMES:
            continue
        try:
            yield call[1][0], parse_magic(call[1][0], call[1][1], cell)
        except ExportError:
            continue


def read_notebook(path: Path) -> tuple[list[Cell], list[tuple[int, list[str]]]]:
    """Code cells, and markdown headings (with the index of the code cell they precede)."""
    try:
        import nbformat
    except ImportError:
        msg = "fsnb export needs nbformat; pip install 'fsnb[notebook]'"
        raise ExportError(msg) from None
    if not path.exists():
        msg = f"no notebook at {path}; check the path"
        raise ExportError(msg)
    try:
        nb = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:
        msg = f"cannot read {path} as a notebook: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        raise ExportError(msg) from None
    cells: list[Cell] = []
    headings: list[tuple[int, list[str]]] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cells.append(Cell(len(cells), cell.source, list(cell.get("outputs", []))))
        elif cell.cell_type == "markdown":
            titles = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            if titles:
                headings.append((len(cells), titles))
    return cells, headings


def output_text(outputs: Sequence[Mapping[str, Any]]) -> str:
    texts: list[str] = []
    for out in outputs:
        if out.get("output_type") == "stream":
            texts.append(str(out.get("text", "")))
        data = out.get("data") or {}
        for mime in ("text/plain", "text/html"):
            value = data.get(mime)
            if value:
                texts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(texts)


def recorded_training_sets(store: Path | None) -> dict[str, dict[str, Any]]:
    """Training-set records of the notebook's store (registry only: no DuckDB lock)."""
    if store is None or not (store / "registry.sqlite").exists():
        return {}
    from fsnb.registry import Registry

    registry = Registry(store / "registry.sqlite")
    try:
        return {r["name"]: r for r in registry.training_sets()}
    finally:
        registry.close()


def entity_types(store: Path | None, features: Sequence[str]) -> dict[str, str]:
    """The registered key types of the views these feature references name, as the magic
    reads them (empty when the store or a view is not there: keys typed from their text)."""
    if store is None or not (store / "registry.sqlite").exists():
        return {}
    from fsnb.registry import Registry

    views = dict.fromkeys(ref.partition(":")[0].strip() for ref in features)
    registry = Registry(store / "registry.sqlite")
    try:
        types: dict[str, str] = {}
        for name in views:
            if not registry.has(name):
                return {}
            latest = registry.latest(name).view
            for key in latest.entity_columns:
                registered = (latest.entity_types or {}).get(key)
                if registered:
                    types.setdefault(key, registered)
        return types
    finally:
        registry.close()


def names_used(cells: Sequence[Cell]) -> set[str]:
    """Every name the notebook's code binds or reads, and its magics' -o variables."""
    names: set[str] = set()
    for cell in cells:
        # -o VAR of a magic becomes a variable of build(): keep the store's name off it
        names.update(str(args.output) for _, args in fsnb_magics(cell) if getattr(args, "output", None))
        try:
            tree = ast.parse(python_of(cell))
        except (SyntaxError, ExportError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
    return names


def notebook_store(notebook: Path, cells: Sequence[Cell]) -> Path | None:
    """Where the notebook kept its store: its last `%fsnb open PATH`, else $FSNB_STORE,
    else .fsnb beside it (the extension's default, relative to the kernel's folder)."""
    from fsnb.config import DEFAULT_STORE, STORE_ENV, store_path

    opened = None
    for cell in cells:
        for name, args in fsnb_magics(cell):
            if name == "fsnb" and args.command == "open":
                opened = args.target
    for candidate in (opened, os.environ.get(STORE_ENV), DEFAULT_STORE):
        if candidate:
            path = store_path(candidate, base=notebook.parent)
            if (path / "registry.sqlite").exists():
                return path
    return None
