"""Small writers of Python source for the exported script: calls, exact literals, safe
comments and docstrings, checked names, and splicing replacement lines into a cell.

Every piece of user text reaches the script through one of these: as a literal that
evaluates to exactly that text, an escaped comment, or an ASCII identifier checked by
``is_name`` (see ``docs/architecture.md``, export)."""

from __future__ import annotations

import ast
import io
import json
import keyword
import math
import re
import tokenize
from collections.abc import Sequence
from typing import Any

from fsnb.export.notebook import Cell, ExportError

LINE_WIDTH = 100
KEEP = "<keep the statement>"  # compared by identity in splice
_FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".csv.gz", ".json", ".jsonl", ".ndjson")


# -- small code writers -----------------------------------------------------------------
def call(func: str, args: Sequence[str], *, prefix: str = "") -> list[str]:
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


def string(text: str) -> str:
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


def comment(text: str) -> str:
    """text made safe for a ``# ...`` comment: one line, non-printable characters escaped
    (a carriage return would end the comment and make the rest code)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def docstring_text(text: str) -> str:
    """text for the inside of a triple-quoted docstring: quotes, backslashes and every
    non-ASCII or non-printable character escaped, so it can never close the docstring."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_name(text: str) -> bool:
    """An ASCII Python identifier that is not a keyword: the only user text that export
    writes as code. (Python reads identifiers NFKC-normalised, so a non-ASCII name can
    stand for another one: 'ｅｘｅｃ' is exec.)"""
    return _ASCII_NAME.fullmatch(text) is not None and not keyword.iskeyword(text)


def checked_name(text: str, what: str, cell: Cell) -> str:
    if not is_name(text):
        msg = (
            f"cell {cell.index + 1}: {what} {text!r} is not a plain Python name "
            "(ASCII letters, digits and '_', not starting with a digit, not a keyword); rename it and export again"
        )
        raise ExportError(msg)
    return text


def literal(value: Any) -> str:
    """value (str, bool, number, None or a list of them) as an exact Python literal."""
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, str):
        return string(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"  # repr(nan) is not Python
    return repr(value)


def str_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(string(i) for i in items) + "]"


def looks_like_path(text: str) -> bool:
    stripped = text.strip()
    return "\n" not in stripped and " " not in stripped and stripped.lower().endswith(_FILE_SUFFIXES)


def free_name(candidates: Sequence[str], used: set[str]) -> str:
    for name in candidates:
        if name not in used:
            return name
    n = 2
    while f"{candidates[-1]}_{n}" in used:
        n += 1
    return f"{candidates[-1]}_{n}"


def child_bodies(stmt: ast.stmt) -> list[list[ast.stmt]]:
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


def has_compound_body(stmt: ast.stmt) -> bool:
    return bool(child_bodies(stmt))


def splice(lines: list[str], stmt: ast.stmt, replacement: list[str]) -> list[str]:
    """Replace stmt's source span by replacement lines, at the statement's indentation
    (a replacement starting with KEEP keeps the statement and adds the rest after it)."""
    start, end = stmt.lineno - 1, (stmt.end_lineno or stmt.lineno) - 1
    col, end_col = stmt.col_offset, stmt.end_col_offset or len(lines[end])
    head, tail = lines[start][:col], lines[end][end_col:]
    indent = head if not head.strip() else re.match(r"\s*", lines[start]).group(0)  # type: ignore[union-attr]
    alone = not head.strip() and not tail.strip(" ;\t")
    if replacement and replacement[0] is KEEP:
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


def string_lines(source: str) -> set[int]:
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


def indent(source: str, prefix: str = "    ") -> list[str]:
    skip = string_lines(source)
    return [
        line if (i in skip or not line.strip()) else prefix + line
        for i, line in enumerate(source.splitlines(), start=1)
    ]


