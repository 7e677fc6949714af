"""DuckDB type names, grouped into families that decide what may be stored where.

Type names are pasted into DuckDB SQL (``CAST(x AS <type>)``, ``CREATE TABLE``), and
some come from files fsnb did not write (a shared ``registry.sqlite``). So every type
name is parsed by ``parse_type`` against a closed grammar and re-emitted in a canonical
spelling built only from fsnb's own words, numbers in range and quoted field names;
text that is not a type fsnb stores is refused, never passed on.
"""

from __future__ import annotations

import re
from typing import NoReturn

from fsnb.errors import InvalidDefinition

_INT = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT",
}
_FLOAT = {"FLOAT", "DOUBLE", "REAL"}
_STRING = {"VARCHAR", "STRING", "TEXT"}
_DECIMAL = re.compile(r"DECIMAL\([0-9]{1,2},[0-9]{1,2}\)")  # parse_type's spelling, bounds checked there
_TIME = {
    "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "DATE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S",
    "TIMESTAMP_US", "TIMESTAMPTZ_NS",
}


def family(duck_type: str) -> str:
    t = duck_type.upper()
    if t in _INT:
        return "int"
    if t in _FLOAT or _DECIMAL.fullmatch(t):
        return "float"
    if t in _STRING:
        return "string"
    if t == "BOOLEAN":
        return "bool"
    if t in _TIME:
        return "time"
    return t


def is_time(duck_type: str) -> bool:
    return family(duck_type) == "time"


def storable_as(new: str, registered: str) -> bool:
    """Can a column of type new be stored in a column declared as registered, without loss?"""
    fn, fr = family(new), family(registered)
    if fn == fr:
        return True
    return fn == "int" and fr == "float"


def key_compatible(new: str, registered: str) -> bool:
    """Keys must be in the same family: 42 never equals '42'."""
    return family(new) == family(registered)


def normalize(duck_type: str) -> str:
    """The type fsnb stores for a column of the given input type."""
    t = duck_type.upper()
    if family(t) == "time":
        if t == "DATE":
            return "DATE"
        return "TIMESTAMPTZ_NS" if t in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS") else "TIMESTAMPTZ"
    if t in ("STRING", "TEXT"):
        return "VARCHAR"
    if t == "REAL":
        return "FLOAT"
    return duck_type


# -- the grammar -----------------------------------------------------------------------
# Each accepted spelling -> the name DuckDB itself reports for that type.
_NAMES = {
    "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN", "LOGICAL": "BOOLEAN",
    "TINYINT": "TINYINT", "INT1": "TINYINT",
    "SMALLINT": "SMALLINT", "INT2": "SMALLINT", "SHORT": "SMALLINT",
    "INTEGER": "INTEGER", "INT": "INTEGER", "INT4": "INTEGER", "SIGNED": "INTEGER",
    "BIGINT": "BIGINT", "INT8": "BIGINT", "LONG": "BIGINT",
    "HUGEINT": "HUGEINT", "INT128": "HUGEINT",
    "UTINYINT": "UTINYINT", "USMALLINT": "USMALLINT", "UINTEGER": "UINTEGER",
    "UBIGINT": "UBIGINT", "UHUGEINT": "UHUGEINT",
    "FLOAT": "FLOAT", "FLOAT4": "FLOAT", "REAL": "FLOAT",
    "DOUBLE": "DOUBLE", "FLOAT8": "DOUBLE",
    "VARCHAR": "VARCHAR", "STRING": "VARCHAR", "TEXT": "VARCHAR", "CHAR": "VARCHAR", "BPCHAR": "VARCHAR",
    "BLOB": "BLOB", "BYTEA": "BLOB", "BINARY": "BLOB", "VARBINARY": "BLOB",
    "UUID": "UUID",
    "DATE": "DATE",
    "TIME": "TIME", "TIME_NS": "TIME_NS",
    "INTERVAL": "INTERVAL",
    "TIMESTAMP": "TIMESTAMP", "DATETIME": "TIMESTAMP", "TIMESTAMP_US": "TIMESTAMP",
    "TIMESTAMP_S": "TIMESTAMP_S", "TIMESTAMP_MS": "TIMESTAMP_MS", "TIMESTAMP_NS": "TIMESTAMP_NS",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS": "TIMESTAMPTZ_NS",
}
# Multi-word spellings: first word -> (following words, canonical name).
_PHRASES = {
    "TIMESTAMP": ((("WITH", "TIME", "ZONE"), "TIMESTAMP WITH TIME ZONE"), (("WITHOUT", "TIME", "ZONE"), "TIMESTAMP")),
    "DOUBLE": ((("PRECISION",), "DOUBLE"),),
}
_REFUSED_HINT = {
    "ENUM": "store categories as VARCHAR",
    "UNION": "split it into one feature per member",
}
_MAX_TEXT = 4000  # a type longer than this is not one fsnb wrote
_MAX_DEPTH = 16
_TOKEN = re.compile(r'\s*(?:([A-Za-z_][A-Za-z0-9_]*)|([0-9]{1,6})|("(?:[^"]|"")*")|([(),\[\]]))')


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []  # (kind, value): word (upper-cased), num, quoted, punct
        self.raw: list[str] = []  # each token as written (a bare STRUCT field name keeps its case)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                self.fail()
            word, num, quoted, punct = m.groups()
            if word is not None:
                self.tokens.append(("word", word.upper()))
            elif num is not None:
                self.tokens.append(("num", num))
            elif quoted is not None:
                self.tokens.append(("quoted", quoted[1:-1].replace('""', '"')))
            else:
                self.tokens.append(("punct", punct))
            self.raw.append(m.group(0).strip())
            pos = m.end()
        self.i = 0

    def fail(self, hint: str = "") -> NoReturn:
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        msg = f"{shown!r} is not a column type fsnb stores; " + (
            hint or "use a DuckDB type such as BIGINT, DOUBLE, DECIMAL(18,3), VARCHAR, BOOLEAN, TIMESTAMP, a list (BIGINT[]), STRUCT(...) or MAP(..., ...)"
        )
        raise InvalidDefinition(msg)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            self.fail()
        self.i += 1
        return tok[1]

    def at(self, kind: str, value: str) -> bool:
        return self.peek() == (kind, value)

    def number(self, lo: int, hi: int, what: str) -> int:
        n = int(self.take("num"))
        if not lo <= n <= hi:
            self.fail(f"{what} must be between {lo} and {hi}")
        return n

    def type(self, depth: int = 0) -> str:
        if depth > _MAX_DEPTH:
            self.fail(f"types nest at most {_MAX_DEPTH} levels deep")
        out = self.base(depth)
        while self.at("punct", "["):
            self.take("punct", "[")
            if self.at("punct", "]"):
                out += "[]"
            else:
                out += f"[{self.number(1, 100_000, 'an ARRAY size')}]"
            self.take("punct", "]")
        return out

    def base(self, depth: int) -> str:
        tok = self.peek()
        if tok == ("quoted", "NULL"):
            self.i += 1
            return '"NULL"'
        word = self.take("word")
        if word in ("DECIMAL", "NUMERIC"):
            width, scale = 18, 3
            if self.at("punct", "("):
                self.take("punct", "(")
                width, scale = self.number(1, 38, "a DECIMAL width"), 0
                if self.at("punct", ","):
                    self.take("punct", ",")
                    scale = self.number(0, 38, "a DECIMAL scale")
                self.take("punct", ")")
                if scale > width:
                    self.fail("a DECIMAL scale cannot be greater than its width")
            return f"DECIMAL({width},{scale})"
        if word == "STRUCT":
            self.take("punct", "(")
            fields: list[str] = []
            seen: set[str] = set()
            while True:
                kind, name = self.peek() or ("", "")
                if kind not in ("word", "quoted"):
                    self.fail()
                if kind == "word":  # a bare field name keeps its spelling, not the upper-cased token
                    name = self.raw[self.i]
                self.i += 1
                if not name or "\x00" in name or name.lower() in seen:
                    self.fail("STRUCT field names must be non-empty and distinct; rename the fields")
                seen.add(name.lower())
                fields.append(f'"{name.replace(chr(34), chr(34) * 2)}" {self.type(depth + 1)}')
                if self.at("punct", ")"):
                    break
                self.take("punct", ",")
            self.take("punct", ")")
            return f"STRUCT({', '.join(fields)})"
        if word == "MAP":
            self.take("punct", "(")
            key = self.type(depth + 1)
            self.take("punct", ",")
            value = self.type(depth + 1)
            self.take("punct", ")")
            return f"MAP({key}, {value})"
        for words, canonical in _PHRASES.get(word, ()):
            ahead = self.tokens[self.i : self.i + len(words)]
            if ahead == [("word", w) for w in words]:
                self.i += len(words)
                return canonical
        if word not in _NAMES:
            self.fail()
        if word in ("VARCHAR", "CHAR", "BPCHAR") and self.at("punct", "("):  # a length DuckDB ignores
            self.take("punct", "(")
            self.number(1, 999_999, "a VARCHAR length")
            self.take("punct", ")")
        return _NAMES[word]


def parse_type(text: object) -> str:
    """The canonical, safe-to-paste spelling of a DuckDB type name; InvalidDefinition otherwise.

    Accepts BOOLEAN, the integer family, FLOAT/DOUBLE/REAL, DECIMAL(p,s) (1 <= p <= 38,
    0 <= s <= p), VARCHAR/STRING/TEXT, BLOB, UUID, DATE, TIME, INTERVAL, every TIMESTAMP
    variant DuckDB reports (TIMESTAMP_S/_MS/_NS, WITH TIME ZONE, TIMESTAMPTZ_NS), lists
    ``T[]`` and arrays ``T[n]``, ``STRUCT(name T, ...)`` and ``MAP(K, V)``. ENUM and
    UNION are refused.
    """
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_TEXT:
        shown = repr(text) if not isinstance(text, str) or len(text) <= 80 else repr(text[:77] + "...")
        msg = f"{shown} is not a column type fsnb stores; use a DuckDB type such as BIGINT, DOUBLE or VARCHAR"
        raise InvalidDefinition(msg)
    refused = re.match(r"\s*([A-Za-z]+)", text)
    if refused and refused.group(1).upper() in _REFUSED_HINT:
        msg = f"{text[:80]!r} is not a column type fsnb stores; {_REFUSED_HINT[refused.group(1).upper()]}"
        raise InvalidDefinition(msg)
    parser = _Parser(text)
    out = parser.type()
    if parser.peek() is not None:
        parser.fail()
    return out
