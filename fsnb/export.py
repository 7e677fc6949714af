"""Turn a notebook into a plain Python pipeline (``fsnb export NOTEBOOK.ipynb -o PIPELINE.py``).

The script keeps the notebook's own code cells verbatim, turns each fsnb magic into
the API call it stands for, drops what only makes sense in a notebook (``display``,
shell escapes, other magics), and records the fingerprint each ``%training_set -o
VAR`` had when the notebook ran: from the notebook's store (its registry's
training-set records) or, failing that, from the cell's saved output. Running the
script rebuilds everything in a fresh process and fails if a training set changed.

The magic grammars are parsed here with argparse, mirroring ``fsnb.notebook.magics``, so that
exporting needs neither IPython's magic machinery nor a kernel.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import keyword
import math
import os
import re
import shlex
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsnb.config import redact_url
from fsnb.errors import FsnbError

LINE_WIDTH = 100
_KEEP = "<keep the statement>"  # compared by identity in _replace
_FINGERPRINT_RE = re.compile(r"fingerprint(?:\s|:|=|<[^>]*>)*([0-9a-f]{16})\b", re.IGNORECASE)
_FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".csv.gz", ".json", ".jsonl", ".ndjson")
# Magics whose body or argument is Python that the pipeline should still run.
_PYTHON_BODY_MAGICS = {"time", "capture", "prun"}
_SILENT_MAGICS = {"load_ext", "reload_ext", "unload_ext", "matplotlib", "config", "pinfo", "pinfo2", "psearch"}


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
class Pipeline:
    """What export() produced: the script's text and what it contains."""

    notebook: Path
    script: str
    views: list[str] = field(default_factory=list)
    training_sets: dict[str, TrainingSet] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        views = len(dict.fromkeys(self.views))
        sets = len(self.training_sets)
        checked = sum(1 for t in self.training_sets.values() if t.fingerprint)
        return (
            f"{views} feature view{'s' if views != 1 else ''}, {sets} training set{'s' if sets != 1 else ''}"
            f" ({checked} with a recorded fingerprint)"
        )


# -- the magics' grammar -------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ExportError(f"{self.prog}: {message}")


def _parser(prog: str) -> _Parser:
    return _Parser(prog=prog, add_help=False)


def _feature_view_parser() -> _Parser:
    p = _parser("%%feature_view")
    p.add_argument("name")
    p.add_argument("--entity", required=True)
    p.add_argument("--timestamp", default="event_timestamp")
    p.add_argument("--created", default=None)
    p.add_argument("--ttl", default=None)
    p.add_argument("--offline-only", action="store_true")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--description", default="")
    return p


def _training_set_parser() -> _Parser:
    p = _parser("%training_set")
    p.add_argument("labels")
    p.add_argument("features", nargs="+")
    p.add_argument("-o", dest="output", default=None)
    p.add_argument("--timestamp", default="event_timestamp")
    p.add_argument("--as-of-ingestion", action="store_true")
    p.add_argument("--full-names", action="store_true")
    p.add_argument("--explore", action="store_true")
    return p


def _leakage_parser() -> _Parser:
    p = _parser("%leakage")
    p.add_argument("labels")
    p.add_argument("features", nargs="+")
    p.add_argument("--timestamp", default="event_timestamp")
    return p


def _online_parser() -> _Parser:
    p = _parser("%online_features")
    p.add_argument("features", nargs="+")
    p.add_argument("--entity", action="append", required=True)
    p.add_argument("-o", dest="output", default=None)
    return p


def _materialize_parser() -> _Parser:
    p = _parser("%materialize")
    p.add_argument("--start", default=None)
    p.add_argument("--end", default=None)
    p.add_argument("--incremental", action="store_true")
    p.add_argument("--view", action="append", default=None)
    return p


def _fsnb_parser() -> _Parser:
    p = _parser("%fsnb")
    p.add_argument("command", nargs="?", default="store")
    p.add_argument("target", nargs="?")
    p.add_argument("--online", default=None)
    p.add_argument("--log", default=None)
    return p


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:
        raise ExportError(f"cannot read the magic line {line!r}: {exc}") from None


# -- small code writers -----------------------------------------------------------------
def _call(func: str, args: Sequence[str], *, prefix: str = "") -> list[str]:
    """func(args) on one line when it fits, else one argument a line."""
    one = f"{prefix}{func}({', '.join(args)})"
    if len(one) + 4 <= LINE_WIDTH and "\n" not in one:
        return [one]
    lines = [f"{prefix}{func}("]
    for arg in args:
        sub = arg.splitlines()
        lines.append("    " + sub[0])
        lines.extend("    " + s for s in sub[1:-1])
        if len(sub) > 1:
            lines.append("    " + sub[-1])
        lines[-1] += ","
    lines.append(")")
    return lines


def _string(text: str) -> str:
    """text as a Python string literal that evaluates to exactly text, whatever it holds.

    Triple quotes for readable multi-line text when that is exact: only printable
    characters, tabs and newlines (no carriage return, which Python would read as a
    newline; no line or paragraph separator, which str.splitlines() would cut).
    Otherwise json.dumps (double quotes, as ruff/black prefer) for printable text, else
    repr(), which escapes every character that is not printable."""
    multi_line = "\n" in text and '"""' not in text and "\\" not in text and not text.endswith('"')
    if multi_line and all(c.isprintable() or c in "\n\t" for c in text):
        return '"""\\\n' + text + '"""'
    return json.dumps(text, ensure_ascii=False) if text.isprintable() else repr(text)


def _comment(text: str) -> str:
    """text made safe for a ``# ...`` comment: one line, non-printable characters escaped
    (a carriage return would end the comment and make the rest code)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _docstring_text(text: str) -> str:
    """text for the inside of a triple-quoted docstring: quotes, backslashes and every
    non-ASCII or non-printable character escaped, so it can never close the docstring."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_name(text: str) -> bool:
    """An ASCII Python identifier that is not a keyword: the only user text that export
    writes as code. (Python reads identifiers NFKC-normalised, so a non-ASCII name can
    stand for another one: 'ｅｘｅｃ' is exec.)"""
    return _ASCII_NAME.fullmatch(text) is not None and not keyword.iskeyword(text)


def _name(text: str, what: str, cell: _Cell) -> str:
    if not _is_name(text):
        msg = (
            f"cell {cell.index + 1}: {what} {text!r} is not a plain Python name "
            "(ASCII letters, digits and '_', not starting with a digit, not a keyword); rename it and export again"
        )
        raise ExportError(msg)
    return text


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"  # repr(nan) is not Python
    return repr(value)


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_string(i) for i in items) + "]"


def _looks_like_path(text: str) -> bool:
    stripped = text.strip()
    return "\n" not in stripped and " " not in stripped and stripped.lower().endswith(_FILE_SUFFIXES)


def _literal_key(value: str, duck_type: str | None) -> Any:
    """An --entity value as the magic types it: by the key's registered type, else int if digits."""
    family = _type_family(duck_type)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
        if family in (None, "string"):
            return value
    try:
        if family == "int" or (family is None and value.lstrip("-").isdigit()):
            return int(value)
        if family == "float":
            return float(value)
    except ValueError:
        return value
    if family == "bool":
        return value.lower() in ("1", "true", "yes")
    return value


def _type_family(duck_type: str | None) -> str | None:
    if not duck_type:
        return None
    try:
        from fsnb.types import family
    except ImportError:  # pragma: no cover - fsnb.types is part of the core
        return None
    result = family(duck_type)
    return str(result) if result else None


# -- notebook cells -------------------------------------------------------------------------
@dataclass
class _Cell:
    index: int
    source: str
    outputs: list[dict[str, Any]]


def _read_notebook(path: Path) -> tuple[list[_Cell], list[tuple[int, list[str]]]]:
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
    cells: list[_Cell] = []
    headings: list[tuple[int, list[str]]] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cells.append(_Cell(len(cells), cell.source, list(cell.get("outputs", []))))
        elif cell.cell_type == "markdown":
            titles = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            if titles:
                headings.append((len(cells), titles))
    return cells, headings


def _output_text(outputs: Sequence[Mapping[str, Any]]) -> str:
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


def _recorded_training_sets(store: Path | None) -> dict[str, dict[str, Any]]:
    """Training-set records of the notebook's store (registry only: no DuckDB lock)."""
    if store is None or not (store / "registry.sqlite").exists():
        return {}
    from fsnb.registry import Registry

    registry = Registry(store / "registry.sqlite")
    try:
        return {r["name"]: r for r in registry.training_sets()}
    finally:
        registry.close()


def _entity_types(store: Path | None) -> dict[str, str]:
    if store is None or not (store / "registry.sqlite").exists():
        return {}
    from fsnb.registry import Registry

    registry = Registry(store / "registry.sqlite")
    try:
        types: dict[str, str] = {}
        for name in registry.names():
            for key, duck_type in (registry.latest(name).view.entity_types or {}).items():
                types.setdefault(key, duck_type)
        return types
    finally:
        registry.close()


# -- the translator -------------------------------------------------------------------------
class _Translator:
    def __init__(self, notebook: Path, store: Path | None, used_names: set[str]) -> None:
        self.notebook = notebook
        self.store_path = store
        self.store = _free_name(["store", "feature_store", "fsnb_store"], used_names)
        self.sets = _free_name(["training_sets", "built_training_sets", "fsnb_training_sets"], used_names)
        self.used_names = used_names
        self.constants: dict[str, str] = {}  # NAME -> text
        self.views: list[str] = []
        self.training_sets: dict[str, TrainingSet] = {}
        self.warnings: list[str] = []
        self.hoisted: list[str] = []
        self.entity_types = _entity_types(store)

    # -- cells ---------------------------------------------------------------------------
    def cell(self, cell: _Cell) -> str:
        from IPython.core.inputtransformer2 import TransformerManager

        try:
            python = TransformerManager().transform_cell(cell.source)  # type: ignore[no-untyped-call]
        except SyntaxError as exc:
            raise ExportError(f"cell {cell.index + 1}: {exc.msg}") from None
        return self.python(python, cell)

    def python(self, source: str, cell: _Cell) -> str:
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            bad = source.splitlines()[(exc.lineno or 1) - 1] if source.strip() else ""
            if re.search(r"(^|[^\w%])%{1,2}[A-Za-z_]", bad):
                msg = (
                    f"cell {cell.index + 1} line {exc.lineno}: a magic inside an expression cannot be exported; "
                    "put it on a line of its own (x = %magic ...)"
                )
            else:
                msg = f"cell {cell.index + 1} line {exc.lineno}: {exc.msg}; fix the cell and export again"
            raise ExportError(msg) from None
        lines = source.splitlines()
        edits: list[tuple[ast.stmt, list[str]]] = []
        self._collect(tree.body, edits, cell, top=True)
        # Apply from the bottom up so earlier line numbers stay valid.
        for stmt, replacement in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
            lines = _replace(lines, stmt, replacement)
        text = "\n".join(lines).strip("\n")
        return text

    def _collect(self, body: list[ast.stmt], edits: list[tuple[ast.stmt, list[str]]], cell: _Cell, *, top: bool) -> None:
        dropped = 0
        for stmt in body:
            replacement = self._statement(stmt, cell, top=top)
            if replacement is not None:
                if not [r for r in replacement if r.strip() and not r.lstrip().startswith("#")]:
                    dropped += 1
                    if dropped == len(body) and not top:
                        replacement = [*replacement, "pass"]
                edits.append((stmt, replacement))
                continue
            for child in _child_bodies(stmt):
                self._collect(child, edits, cell, top=False)

    def _statement(self, stmt: ast.stmt, cell: _Cell, *, top: bool) -> list[str] | None:
        """The lines replacing stmt, or None to keep it (and look inside it)."""
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            # Star imports are not allowed inside build(): hoist them to the module.
            self.hoisted.append(ast.unparse(stmt))
            return []
        value: ast.expr | None = None
        target: str | None = None
        if isinstance(stmt, ast.Expr):
            value = stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            value, target = stmt.value, ast.unparse(stmt.targets[0])
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            value, target = stmt.value, ast.unparse(stmt.target)
        magic = _ipython_call(value) if value is not None else None
        if magic is not None:
            kind, args = magic
            return self.magic(kind, args, target, cell)
        recorded = _record_call(value)
        if recorded is not None:
            # The notebook recorded a training set through the API: check it like -o VAR.
            name, variable, features = recorded
            ts = TrainingSet(name, features, cell.index)
            self.training_sets[name] = ts
            self._find_fingerprint(ts, cell)
            return [_KEEP, f"{self.sets}[{_string(name)}] = {variable}"]
        if isinstance(stmt, ast.Expr):
            call = stmt.value
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "display":
                return []
            if top and isinstance(call, ast.Name | ast.Attribute | ast.Subscript):
                return []  # a value the notebook showed as the cell's output
        if not _has_compound_body(stmt) and any(_ipython_call(n) for n in ast.walk(stmt) if isinstance(n, ast.expr)):
            msg = (
                f"cell {cell.index + 1} line {stmt.lineno}: a magic inside an expression cannot be exported; "
                "assign its result on a line of its own (x = %magic ...)"
            )
            raise ExportError(msg)
        return None

    # -- magics ----------------------------------------------------------------------------
    def magic(self, kind: str, args: list[str], target: str | None, cell: _Cell) -> list[str]:
        if kind == "system":
            self.warnings.append(f"cell {cell.index + 1}: dropped the shell command !{args[0]}")
            return [f"# notebook only: !{_comment(args[0])}"]
        if kind == "getoutput":
            msg = f"cell {cell.index + 1}: '{target} = !{args[0]}' runs a shell command; write it with subprocess and export again"
            raise ExportError(msg)
        name, line = args[0], args[1]
        body = args[2] if kind == "run_cell_magic" else None
        shown = f"%%{name} {line}".rstrip() if body is not None else f"%{name} {line}".rstrip()
        handler = {
            "feature_view": self.feature_view,
            "training_set": self.training_set,
            "online_features": self.online_features,
            "materialize": self.materialize,
            "fsnb": self.fsnb,
            "leakage": self.leakage,
        }.get(name)
        if handler is not None:
            if (name == "feature_view") != (body is not None):
                msg = f"cell {cell.index + 1}: {shown} is used the wrong way (%%feature_view is a cell magic, the others line magics)"
                raise ExportError(msg)
            return handler(line, body, target, cell)
        if name in _PYTHON_BODY_MAGICS:
            code = body if body is not None else line
            return self.python(code, cell).splitlines()
        if name == "writefile" and body is not None:
            words = _split(line)
            append = "-a" in words or "--append" in words
            path = [w for w in words if not w.startswith("-")]
            if not path:
                raise ExportError(f"cell {cell.index + 1}: %%writefile needs a file name")
            mode = "a" if append else "w"
            return [f"with open({_string(path[0])}, {mode!r}) as f:", f"    f.write({_string(body)})"]
        if name == "env" and "=" in line and body is None:
            key, _, value = line.partition("=")
            return [f"os.environ[{_string(key.strip())}] = {_string(value.strip())}"]
        if name in _SILENT_MAGICS:
            return []
        if target is not None:
            msg = f"cell {cell.index + 1}: {target} = {shown} has no plain-Python equivalent; rewrite it and export again"
            raise ExportError(msg)
        self.warnings.append(f"cell {cell.index + 1}: dropped {shown.splitlines()[0]}")
        return [f"# notebook only: {_comment(shown.splitlines()[0])}"]

    def feature_view(self, line: str, body: str | None, target: str | None, cell: _Cell) -> list[str]:
        a = _feature_view_parser().parse_args(_split(line))
        self._check_name("feature view", a.name, cell)  # what the magic refuses, export refuses
        sql = (body or "").strip()
        if not sql:
            raise ExportError(f"cell {cell.index + 1}: %%feature_view {a.name} has no SQL")
        self.views.append(a.name)
        entities = [e.strip() for e in a.entity.split(",")]
        if _is_name(sql):  # a DataFrame of the notebook, by its name
            query, data = _string(sql), sql
        else:
            const = self._constant(f"{_name(a.name, 'feature view', cell).upper()}_SQL", sql)
            query = const
            if _looks_like_path(sql):
                data = f"fsnb.sources.to_arrow({const})"
            else:
                data = f"fsnb.sources.run_sql({const}, namespace=locals())"
        kwargs = [_string(a.name), f"entities={_list(entities)}", f"timestamp_field={_string(a.timestamp)}"]
        if a.created:
            kwargs.append(f"created_timestamp_field={_string(a.created)}")
        if a.ttl:
            kwargs.append(f"ttl={_string(a.ttl)}")
        if a.offline_only:
            kwargs.append("online=False")
        if a.stream:
            kwargs.append('sync="stream"')
        if a.description:
            kwargs.append(f"description={_string(a.description)}")
        kwargs.append(f"query={query}")
        view = _call("fsnb.FeatureView", kwargs)
        return _call(f"{self.store}.register", ["\n".join(view), data, "replace=True"])

    def training_set(self, line: str, body: str | None, target: str | None, cell: _Cell) -> list[str]:
        a = _training_set_parser().parse_args(_split(line))
        labels = self._labels(a.labels, cell)
        call_args = [labels, _list(a.features)]
        if a.timestamp != "event_timestamp":
            call_args.append(f"timestamp_field={_string(a.timestamp)}")
        if a.full_names:
            call_args.append("full_feature_names=True")
        if a.as_of_ingestion:
            call_args.append("as_of_ingestion=True")
        func = f"{self.store}.get_historical_features"
        if a.output is None:
            # Built (and its errors raised) as in the notebook, the result unused.
            return _call(func, call_args, prefix=f"{target} = " if target is not None else "")
        _name(a.output, "the -o variable", cell)
        self.training_sets[a.output] = TrainingSet(a.output, list(a.features), cell.index)
        self._find_fingerprint(self.training_sets[a.output], cell)
        lines = _call(func, call_args, prefix=f"{a.output} = ")
        # As the magic does: remember the fingerprint and view versions in the store.
        lines += _call(f"{self.store}.record_training_set", [_string(a.output), a.output, _list(a.features)])
        lines.append(f"{self.sets}[{_string(a.output)}] = {a.output}")
        if target is not None:
            lines.append(f"{target} = {a.output}")
        return lines

    def online_features(self, line: str, body: str | None, target: str | None, cell: _Cell) -> list[str]:
        a = _online_parser().parse_args(_split(line))
        rows = []
        for text in a.entity:
            row = {}
            for part in text.split(","):
                key, _, value = part.partition("=")
                row[key.strip()] = _literal_key(value.strip(), self.entity_types.get(key.strip()))
            rows.append("{" + ", ".join(f"{_string(k)}: {_value(v)}" for k, v in row.items()) + "}")
        if a.output is not None:
            _name(a.output, "the -o variable", cell)
        out = target or a.output
        prefix = f"{out} = " if out is not None else ""  # without one: looked up, the result unused
        lines = _call(f"{self.store}.get_online_features", [_list(a.features), "[" + ", ".join(rows) + "]"], prefix=prefix)
        if target is not None and a.output is not None:
            lines.append(f"{a.output} = {target}")
        return lines

    def materialize(self, line: str, body: str | None, target: str | None, cell: _Cell) -> list[str]:
        a = _materialize_parser().parse_args(_split(line))
        kwargs = []
        if a.start and not a.incremental:
            kwargs.append(f"start={_string(a.start)}")
        if a.end:
            kwargs.append(f"end={_string(a.end)}")
        if a.view:
            kwargs.append(f"views={_list(a.view)}")
        func = f"{self.store}.materialize_incremental" if a.incremental else f"{self.store}.materialize"
        return _call(func, kwargs, prefix=f"{target} = " if target else "")

    def fsnb(self, line: str, body: str | None, target: str | None, cell: _Cell) -> list[str]:
        a = _fsnb_parser().parse_args(_split(line))
        prefix = f"{target} = " if target else None
        if a.command == "open":
            backends = ", ".join(f"{k} {redact_url(v)}" for k, v in (("online", a.online), ("log", a.log)) if v)
            if backends:
                self.warnings.append(
                    f"cell {cell.index + 1}: the notebook's store used {backends}; the pipeline's store "
                    "uses its own fsnb.toml (sqlite unless configured)"
                )
            opened = f"{a.target} ({backends})" if backends else a.target
            note = f"# the notebook opened the store {_comment(str(opened))} here; this pipeline uses --store"
            return [note] + ([f"{target} = {self.store}"] if target else [])
        if prefix is None:
            return []
        if a.command == "list":
            return [f"{prefix}{self.store}.list_feature_views()"]
        if a.command == "show":
            return [f"{prefix}{self.store}.get_feature_view({_string(a.target or '')})"]
        return [f"{prefix}{self.store}"]

    def leakage(self, line: str, body: str | None, target: str | None, cell: _Cell) -> list[str]:
        a = _leakage_parser().parse_args(_split(line))
        if target is None:
            return [f"# notebook only (the leakage explorer): %leakage {_comment(line)}"]
        call_args = [self._labels(a.labels, cell), _list(a.features)]
        if a.timestamp != "event_timestamp":
            call_args.append(f"timestamp_field={_string(a.timestamp)}")
        return _call(f"{self.store}.explain_leakage", call_args, prefix=f"{target} = ")

    # -- helpers ---------------------------------------------------------------------------
    def _labels(self, token: str, cell: _Cell) -> str:
        """LABELS as the magic reads it: a notebook variable by its (checked) name, else a path."""
        if _is_name(token):
            return token
        if token.isidentifier():
            _name(token, "the labels variable", cell)  # a non-ASCII name: refused
        return _string(token)

    def _check_name(self, kind: str, name: str, cell: _Cell) -> None:
        from fsnb.definitions import check_name

        try:
            check_name(kind, name)
        except FsnbError as exc:
            raise ExportError(f"cell {cell.index + 1}: {exc}") from None

    def _constant(self, name: str, text: str) -> str:
        for existing, value in self.constants.items():
            if value == text and existing.startswith(name.rsplit("_SQL", 1)[0]):
                return existing
        candidate, n = name, 2
        while candidate in self.constants or candidate in self.used_names:
            candidate, n = f"{name}_{n}", n + 1
        self.constants[candidate] = text
        return candidate

    def _find_fingerprint(self, ts: TrainingSet, cell: _Cell) -> None:
        record = _recorded_training_sets(self.store_path).get(ts.name)
        if record and (ts.features is None or list(record.get("features") or []) == ts.features):
            ts.fingerprint, ts.source = record["fingerprint"][:16], "the notebook's store"
            return
        match = _FINGERPRINT_RE.search(_output_text(cell.outputs))
        if match:
            ts.fingerprint, ts.source = match.group(1).lower(), "the notebook's saved output"
            return
        self.warnings.append(
            f"no fingerprint recorded for training set '{ts.name}' (run the notebook, or pass --store); "
            "the pipeline will build it without checking"
        )


def _free_name(candidates: Sequence[str], used: set[str]) -> str:
    for name in candidates:
        if name not in used:
            return name
    n = 2
    while f"{candidates[-1]}_{n}" in used:
        n += 1
    return f"{candidates[-1]}_{n}"


def _ipython_call(node: ast.expr | None) -> tuple[str, list[str]] | None:
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


def _record_call(node: ast.expr | None) -> tuple[str, str, list[str] | None] | None:
    """(name, variable, features) for STORE.record_training_set("name", variable, [...])."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    if node.func.attr != "record_training_set" or len(node.args) < 2:
        return None
    name, frame = node.args[0], node.args[1]
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str) and isinstance(frame, ast.Name)):
        return None
    features = None
    refs = node.args[2] if len(node.args) > 2 else None
    if isinstance(refs, ast.List) and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in refs.elts):
        features = [e.value for e in refs.elts]  # type: ignore[attr-defined]
    return name.value, frame.id, features


def _child_bodies(stmt: ast.stmt) -> list[list[ast.stmt]]:
    bodies = []
    for name in ("body", "orelse", "finalbody"):
        value = getattr(stmt, name, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            bodies.append(value)
    for handler in getattr(stmt, "handlers", []) or []:
        bodies.append(handler.body)
    for case in getattr(stmt, "cases", []) or []:
        bodies.append(case.body)
    return bodies


def _has_compound_body(stmt: ast.stmt) -> bool:
    return bool(_child_bodies(stmt))


def _replace(lines: list[str], stmt: ast.stmt, replacement: list[str]) -> list[str]:
    """Replace stmt's source span by replacement lines, at the statement's indentation
    (a replacement starting with _KEEP keeps the statement and adds the rest after it)."""
    start, end = stmt.lineno - 1, (stmt.end_lineno or stmt.lineno) - 1
    col, end_col = stmt.col_offset, stmt.end_col_offset or len(lines[end])
    head, tail = lines[start][:col], lines[end][end_col:]
    indent = head if not head.strip() else re.match(r"\s*", lines[start]).group(0)  # type: ignore[union-attr]
    alone = not head.strip() and not tail.strip(" ;\t")
    if replacement and replacement[0] is _KEEP:
        extra = replacement[1:]
        if alone:
            return lines[: end + 1] + [indent + r for r in extra] + lines[end + 1 :]
        return [*lines[:end], lines[end] + "; " + "; ".join(extra), *lines[end + 1 :]]
    if alone:
        new = [indent + r if r else "" for r in replacement]
        return lines[:start] + new + lines[end + 1 :]
    # Shares its line with other statements (a = 1; display(a)): keep the line's shape.
    text = "; ".join(r for r in replacement if r.strip() and not r.lstrip().startswith("#")) or "pass"
    return [*lines[:start], head + text + tail, *lines[end + 1 :]]


def _string_lines(source: str) -> set[int]:
    """1-based numbers of lines that begin inside a multi-line string (never re-indented)."""
    inside: set[int] = set()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return inside
    fstring_start: list[int] = []
    for tok in tokens:
        name = tokenize.tok_name.get(tok.type, "")
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
        elif name == "FSTRING_START":
            fstring_start.append(tok.start[0])
        elif name == "FSTRING_END" and fstring_start:
            first = fstring_start.pop()
            inside.update(range(first + 1, tok.end[0] + 1))
    return inside


def _indent(source: str, prefix: str = "    ") -> list[str]:
    skip = _string_lines(source)
    return [
        line if (i in skip or not line.strip()) else prefix + line
        for i, line in enumerate(source.splitlines(), start=1)
    ]


def _names_used(cells: Sequence[_Cell]) -> set[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    names: set[str] = set()
    manager = TransformerManager()  # type: ignore[no-untyped-call]
    for cell in cells:
        # -o VAR of a magic becomes a variable of build(): keep the store's name off it
        names.update(re.findall(r"(?:^|\s)-o\s*([A-Za-z_][A-Za-z0-9_]*)", cell.source))
        try:
            tree = ast.parse(manager.transform_cell(cell.source))
        except SyntaxError:
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


def notebook_store(notebook: Path, cells: Sequence[_Cell]) -> Path | None:
    """Where the notebook kept its store: its last `%fsnb open PATH`, else $FSNB_STORE,
    else .fsnb beside it (the extension's default, relative to the kernel's folder)."""
    opened = None
    for cell in cells:
        for match in re.finditer(r"^\s*%fsnb\s+open\s+(.+?)\s*$", cell.source, re.MULTILINE):
            words = _split(match.group(1))
            if words:
                opened = words[0]
    base = notebook.parent
    for candidate in (opened, os.environ.get("FSNB_STORE"), ".fsnb"):
        if candidate:
            path = Path(candidate).expanduser()
            path = path if path.is_absolute() else base / path
            if (path / "registry.sqlite").exists():
                return path.resolve()
    return None


# -- the script ---------------------------------------------------------------------------
_HEADER = '''"""Pipeline exported from {notebook} by `fsnb export`.

Rebuilds the notebook's feature views and training sets in a fresh process, then
checks that each training set has the fingerprint it had when the notebook ran.
Exits non-zero, naming the training set, if its data changed.

    python {script} [--store PATH]    # default: $FSNB_STORE, else ./.fsnb
"""
'''

_CHECK = '''

def check_fingerprints({sets}: dict[str, Any]) -> list[str]:
    """Print one line per training set; return the names whose data changed."""
    changed = []
    for name, expected in RECORDED_FINGERPRINTS.items():
        frame = {sets}.get(name)
        if frame is None:
            print(f"training set {{name!r}}: not built")
            changed.append(name)
            continue
        actual = fsnb.fingerprint(frame)
        if expected is None:
            verdict = "built (the notebook recorded no fingerprint)"
        elif actual == expected:
            verdict = "same as in the notebook"
        else:
            verdict = f"CHANGED (the notebook had {{expected}})"
            changed.append(name)
        print(f"training set {{name!r}}: {{frame.height}} rows x {{frame.width}} columns, fingerprint {{actual}}, {{verdict}}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Rebuild the feature views and training sets of {{NOTEBOOK}}.")
    parser.add_argument(
        "--store",
        default=os.environ.get("FSNB_STORE", ".fsnb"),
        help="the fsnb store directory (default: $FSNB_STORE, else ./.fsnb)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="also fail (exit 1) when a training set has no fingerprint from the notebook to check",
    )
    args = parser.parse_args(argv)
    # Notebook code that opens fsnb.FeatureStore(None) follows --store too.
    os.environ["FSNB_STORE"] = os.path.abspath(args.store)
    try:
        with fsnb.FeatureStore(args.store) as {store}:
            print(f"{{NOTEBOOK}}: rebuilding into the store at {{{store}.path}}")
            changed = check_fingerprints(build({store}))
    except fsnb.FsnbError as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        return 1
    if changed:
        names = ", ".join(repr(name) for name in changed)
        print(
            f"error: training set {{names}} differs from the one {{NOTEBOOK}} built "
            "(fingerprint mismatch): its input data or feature definitions changed",
            file=sys.stderr,
        )
        return 1
    # Say what was verified; anything that was not is a warning (an error with --strict).
    total = len(RECORDED_FINGERPRINTS)
    unchecked = [name for name, expected in RECORDED_FINGERPRINTS.items() if not expected]
    if total and not unchecked:
        print(f"ok: {{total}} of {{total}} training set(s) checked against the notebook, all equal")
        return 0
    if not total:
        why = f"{{NOTEBOOK}} builds no training set with %training_set ... -o VAR"
    else:
        names = ", ".join(repr(name) for name in unchecked)
        why = f"the notebook recorded no fingerprint for training set {{names}} (run the notebook, then export again)"
    if len(unchecked) < total:
        print(f"ok: {{total - len(unchecked)}} of {{total}} training set(s) checked against the notebook, all equal")
        print(f"warning: not verified: {{why}}", file=sys.stderr)
    else:
        print(f"warning: nothing was verified: {{why}}", file=sys.stderr)
    return 1 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def export(notebook: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None, script_name: str | None = None) -> Pipeline:
    """Translate a notebook into a pipeline script (see the module docstring)."""
    path = Path(notebook).expanduser().resolve()
    cells, headings = _read_notebook(path)
    store_path = Path(store).expanduser().resolve() if store is not None else notebook_store(path, cells)
    if store is not None and not (store_path / "registry.sqlite").exists():  # type: ignore[operator]
        msg = f"no fsnb store at {store_path}; pass the directory the notebook used (e.g. its .fsnb)"
        raise ExportError(msg)
    translator = _Translator(path, store_path, _names_used(cells))
    body: list[str] = []
    heading_at = dict(headings)
    for cell in cells:
        code = translator.cell(cell)
        titles = heading_at.get(cell.index, [])
        if not code.strip():
            continue
        if body:
            body.append("")
        body.extend(f"    # {_comment(t)}" for t in titles[:1])
        body.extend(_indent(code))
    if not translator.training_sets:
        translator.warnings.append(
            "the notebook builds no training set with %training_set ... -o VAR, so the pipeline "
            "rebuilds it but has no fingerprint to check"
        )
    script_name = script_name or path.with_suffix(".py").name
    out = [_HEADER.format(notebook=_docstring_text(path.name), script=_docstring_text(script_name))]
    out.append("from __future__ import annotations\n")
    out.append("import argparse\nimport os\nimport sys\nfrom typing import Any\n")
    out.append("import fsnb\nimport fsnb.sources\n")
    if translator.hoisted:
        out.append("\n".join(dict.fromkeys(translator.hoisted)) + "\n")
    out.append(f"NOTEBOOK = {_string(path.name)}\n")
    out.append("# What fsnb.fingerprint() gave for each training set when the notebook ran.")
    if translator.training_sets:
        out.append("RECORDED_FINGERPRINTS: dict[str, str | None] = {")
        for ts in translator.training_sets.values():
            if ts.fingerprint:
                out.append(f"    {_string(ts.name)}: {_string(ts.fingerprint)},  # from {ts.source}")
            else:
                out.append(f"    {_string(ts.name)}: None,  # not recorded: run the notebook, then export again")
        out.append("}\n")
    else:
        out.append("RECORDED_FINGERPRINTS: dict[str, str | None] = {}\n")
    for name, text in translator.constants.items():
        out.append(f"{name} = {_string(text)}\n")
    sets = translator.sets
    out.append("")
    out.append(f"def build({translator.store}: fsnb.FeatureStore) -> dict[str, Any]:")
    out.append('    """The notebook\'s code, its fsnb magics as API calls; returns the training sets."""')
    out.append(f"    {sets}: dict[str, Any] = {{}}")
    out.append("")
    out.extend(body)
    out.append("")
    out.append(f"    return {sets}")
    out.append(_CHECK.format(sets=sets, store=translator.store))
    script = "\n".join(out)
    try:
        compile(script, script_name, "exec")
    except SyntaxError as exc:  # a bug of the translator, not the user's: say where
        msg = f"the exported script does not compile ({exc.msg} at line {exc.lineno}); please report this notebook"
        raise ExportError(msg) from None
    return Pipeline(path, script, translator.views, translator.training_sets, translator.warnings)


def write(notebook: str | os.PathLike[str], output: str | os.PathLike[str], *, store: str | os.PathLike[str] | None = None) -> Pipeline:
    """export() and write the script to output."""
    target = Path(output)
    pipeline = export(notebook, store=store, script_name=target.name)
    target.write_text(pipeline.script, encoding="utf-8")
    return pipeline
