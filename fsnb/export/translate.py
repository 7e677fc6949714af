"""The translator: a notebook's code cells become the statements of the pipeline's
``build()``, each fsnb magic the library call it stands for.

Magic lines are parsed by the magics' own grammar (fsnb.notebook.grammar), so a line
export accepts is a line the magic accepts, and a flag that is a plain keyword of the
library call (grammar.KEYWORDS) is written without export knowing it."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from typing import Any

from fsnb.config import redact_url
from fsnb.errors import FsnbError
from fsnb.export.code import (
    KEEP,
    call,
    checked_name,
    child_bodies,
    comment,
    free_name,
    has_compound_body,
    is_name,
    literal,
    looks_like_path,
    splice,
    str_list,
    string,
)
from fsnb.export.notebook import (
    FINGERPRINT_RE,
    Cell,
    ExportError,
    TrainingSet,
    entity_types,
    ipython_call,
    needs_ipython,
    output_text,
    parse_magic,
    python_of,
    recorded_training_sets,
)

# Magics whose body or argument is Python that the pipeline should still run.
_PYTHON_BODY_MAGICS = {"time", "capture", "prun"}
_SILENT_MAGICS = {"load_ext", "reload_ext", "unload_ext", "matplotlib", "config", "pinfo", "pinfo2", "psearch"}


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:
        raise ExportError(f"cannot read the magic line {line!r}: {exc}") from None


class Translator:
    def __init__(self, notebook: Path, store: Path | None, used_names: set[str]) -> None:
        self.notebook = notebook
        self.store_path = store
        self.store = free_name(["store", "feature_store", "fsnb_store"], used_names)
        self.sets = free_name(["training_sets", "built_training_sets", "fsnb_training_sets"], used_names)
        self.used_names = used_names
        self.constants: dict[str, str] = {}  # NAME -> text
        self.views: list[str] = []
        self.training_sets: dict[str, TrainingSet] = {}
        self.warnings: list[str] = []
        self.offline: str | None = None  # the engine the notebook's %fsnb open chose (the pipeline's default)
        self.hoisted: list[str] = []
        self.grammar = needs_ipython()

    # -- cells ---------------------------------------------------------------------------
    def cell(self, cell: Cell) -> str:
        return self.python(python_of(cell), cell)

    def python(self, source: str, cell: Cell) -> str:
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
            lines = splice(lines, stmt, replacement)
        text = "\n".join(lines).strip("\n")
        return text

    def _collect(self, body: list[ast.stmt], edits: list[tuple[ast.stmt, list[str]]], cell: Cell, *, top: bool) -> None:
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
            for child in child_bodies(stmt):
                self._collect(child, edits, cell, top=False)

    def _statement(self, stmt: ast.stmt, cell: Cell, *, top: bool) -> list[str] | None:
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
        magic = ipython_call(value) if value is not None else None
        if magic is not None:
            kind, args = magic
            return self.magic(kind, args, target, cell)
        recorded = record_call(value)
        if recorded is not None:
            # The notebook recorded a training set through the API: check it like -o VAR.
            name, variable, features = recorded
            ts = TrainingSet(name, features, cell.index)
            self.training_sets[name] = ts
            self._find_fingerprint(ts, cell)
            return [KEEP, f"{self.sets}[{string(name)}] = {variable}"]
        if isinstance(stmt, ast.Expr):
            call = stmt.value
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "display":
                return []
            if top and isinstance(call, ast.Name | ast.Attribute | ast.Subscript):
                return []  # a value the notebook showed as the cell's output
        if not has_compound_body(stmt) and any(ipython_call(n) for n in ast.walk(stmt) if isinstance(n, ast.expr)):
            msg = (
                f"cell {cell.index + 1} line {stmt.lineno}: a magic inside an expression cannot be exported; "
                "assign its result on a line of its own (x = %magic ...)"
            )
            raise ExportError(msg)
        return None

    # -- magics ----------------------------------------------------------------------------
    def magic(self, kind: str, args: list[str], target: str | None, cell: Cell) -> list[str]:
        if kind == "system":
            self.warnings.append(f"cell {cell.index + 1}: dropped the shell command !{args[0]}")
            return [f"# notebook only: !{comment(args[0])}"]
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
            return [f"with open({string(path[0])}, {mode!r}) as f:", f"    f.write({string(body)})"]
        if name == "env" and "=" in line and body is None:
            key, _, value = line.partition("=")
            return [f"os.environ[{string(key.strip())}] = {string(value.strip())}"]
        if name in _SILENT_MAGICS:
            return []
        if target is not None:
            msg = f"cell {cell.index + 1}: {target} = {shown} has no plain-Python equivalent; rewrite it and export again"
            raise ExportError(msg)
        self.warnings.append(f"cell {cell.index + 1}: dropped {shown.splitlines()[0]}")
        return [f"# notebook only: {comment(shown.splitlines()[0])}"]

    def feature_view(self, line: str, body: str | None, target: str | None, cell: Cell) -> list[str]:
        a = parse_magic("feature_view", line, cell)
        self._check_name("feature view", a.name, cell)  # what the magic refuses, export refuses
        sql = (body or "").strip()
        if not sql:
            raise ExportError(f"cell {cell.index + 1}: %%feature_view {a.name} has no SQL")
        self.views.append(a.name)
        if is_name(sql):  # a DataFrame of the notebook, by its name
            query, data = string(sql), sql
        else:
            const = self._constant(f"{checked_name(a.name, 'feature view', cell).upper()}_SQL", sql)
            query = const
            if looks_like_path(sql):
                data = f"fsnb.sources.to_arrow({const})"
            else:
                data = f"fsnb.sources.run_sql({const}, namespace=locals())"
        kwargs = [string(a.name), f"entities={str_list(a.entities)}", *self._keywords("feature_view", a)]
        if a.offline_only:
            kwargs.append("online=False")
        if a.stream:
            kwargs.append('sync="stream"')
        if a.aggregations:
            aggs = [f"fsnb.Aggregation({literal(g.column)}, {literal(g.function)}, {literal(g.window_text)}, name={literal(g.name)})"
                    for g in a.aggregations]
            kwargs.append(f"aggregations=[{', '.join(aggs)}]")
        kwargs.append(f"query={query}")
        view = call("fsnb.FeatureView", kwargs)
        return call(f"{self.store}.register", ["\n".join(view), data, "replace=True"])

    def training_set(self, line: str, body: str | None, target: str | None, cell: Cell) -> list[str]:
        a = parse_magic("training_set", line, cell)
        labels = self._labels(a.labels, cell)
        call_args = [labels, str_list(a.features), *self._keywords("training_set", a)]
        func = f"{self.store}.get_historical_features"
        if a.output is None:
            # Built (and its errors raised) as in the notebook, the result unused.
            return call(func, call_args, prefix=f"{target} = " if target is not None else "")
        checked_name(a.output, "the -o variable", cell)
        self.training_sets[a.output] = TrainingSet(a.output, list(a.features), cell.index)
        self._find_fingerprint(self.training_sets[a.output], cell)
        lines = call(func, call_args, prefix=f"{a.output} = ")
        # As the magic does: remember the fingerprint and view versions in the store.
        lines += call(f"{self.store}.record_training_set", [string(a.output), a.output, str_list(a.features)])
        lines.append(f"{self.sets}[{string(a.output)}] = {a.output}")
        if target is not None:
            lines.append(f"{target} = {a.output}")
        return lines

    def online_features(self, line: str, body: str | None, target: str | None, cell: Cell) -> list[str]:
        a = parse_magic("online_features", line, cell)
        key_types = entity_types(self.store_path, a.features)
        rows = []
        for text in a.entity:
            row = self._magic_value("%online_features", cell, self.grammar.entity_row, text, key_types)
            rows.append("{" + ", ".join(f"{string(k)}: {literal(v)}" for k, v in row.items()) + "}")
        if a.output is not None:
            checked_name(a.output, "the -o variable", cell)
        out = target or a.output
        prefix = f"{out} = " if out is not None else ""  # without one: looked up, the result unused
        lines = call(f"{self.store}.get_online_features", [str_list(a.features), "[" + ", ".join(rows) + "]"], prefix=prefix)
        if target is not None and a.output is not None:
            lines.append(f"{a.output} = {target}")
        return lines

    def materialize(self, line: str, body: str | None, target: str | None, cell: Cell) -> list[str]:
        a = parse_magic("materialize", line, cell)  # refuses --start with --incremental, as the magic
        kwargs = self._keywords("materialize", a)
        func = f"{self.store}.materialize_incremental" if a.incremental else f"{self.store}.materialize"
        return call(func, kwargs, prefix=f"{target} = " if target else "")

    def fsnb(self, line: str, body: str | None, target: str | None, cell: Cell) -> list[str]:
        a = parse_magic("fsnb", line, cell)
        prefix = f"{target} = " if target else None
        if a.command == "open":
            backends = ", ".join(f"{k} {redact_url(v)}" for k, v in (("online", a.online), ("log", a.log), ("warehouse", a.warehouse)) if v)
            if a.offline:
                from fsnb.config import check_engine

                self.offline = check_engine(a.offline, f"cell {cell.index + 1}: %fsnb open --offline")
            if backends:
                self.warnings.append(
                    f"cell {cell.index + 1}: the notebook's store used {backends}; the pipeline's store "
                    "uses its own fsnb.toml (sqlite unless configured"
                    + (", and a warehouse in the store directory unless --warehouse is given)" if self.offline == "spark" else ")")
                )
            opened = f"{a.target} ({backends})" if backends else a.target
            note = f"# the notebook opened the store {comment(str(opened))} here; this pipeline uses --store"
            return [note] + ([f"{target} = {self.store}"] if target else [])
        if prefix is None:
            return []
        if a.command == "list":
            return [f"{prefix}{self.store}.list_feature_views()"]
        if a.command == "show":
            return [f"{prefix}{self.store}.get_feature_view({string(a.target or '')})"]
        return [f"{prefix}{self.store}"]

    def leakage(self, line: str, body: str | None, target: str | None, cell: Cell) -> list[str]:
        a = parse_magic("leakage", line, cell)
        if target is None:
            return [f"# notebook only (the leakage explorer): %leakage {comment(line)}"]
        call_args = [self._labels(a.labels, cell), str_list(a.features), *self._keywords("leakage", a)]
        return call(f"{self.store}.explain_leakage", call_args, prefix=f"{target} = ")

    # -- helpers ---------------------------------------------------------------------------
    def _keywords(self, magic: str, args: Any) -> list[str]:
        """KEYWORD=literal for each flag of the grammar that is a plain library keyword and
        was given a value other than its default (the magic passes the same ones)."""
        return [f"{kw}={literal(value)}" for kw, value in self.grammar.keywords(magic, args, changed=True).items()]

    def _magic_value(self, magic: str, cell: Cell, read: Any, *args: Any) -> Any:
        """read(*args) with the magic's UsageError as this cell's ExportError."""
        from IPython.core.error import UsageError

        try:
            return read(*args)
        except UsageError as exc:
            raise ExportError(f"cell {cell.index + 1}: {magic}: {exc}") from None

    def _labels(self, token: str, cell: Cell) -> str:
        """LABELS as the magic reads it: a notebook variable by its (checked) name, else a path."""
        if is_name(token):
            return token
        if token.isidentifier():
            checked_name(token, "the labels variable", cell)  # a non-ASCII name: refused
        return string(token)

    def _check_name(self, kind: str, name: str, cell: Cell) -> None:
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

    def _find_fingerprint(self, ts: TrainingSet, cell: Cell) -> None:
        record = recorded_training_sets(self.store_path).get(ts.name)
        if record and (ts.features is None or list(record.get("features") or []) == ts.features):
            ts.fingerprint, ts.source = record["fingerprint"][:16], "the notebook's store"
            return
        match = FINGERPRINT_RE.search(output_text(cell.outputs))
        if match:
            ts.fingerprint, ts.source = match.group(1).lower(), "the notebook's saved output"
            return
        self.warnings.append(
            f"no fingerprint recorded for training set '{ts.name}' (run the notebook, or pass --store); "
            "the pipeline will build it without checking"
        )


def record_call(node: ast.expr | None) -> tuple[str, str, list[str] | None] | None:
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


