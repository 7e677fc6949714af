"""DuckDB type names, grouped into families that decide what may be stored where."""

from __future__ import annotations

_INT = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT",
}
_FLOAT = {"FLOAT", "DOUBLE", "REAL"}
_STRING = {"VARCHAR", "STRING", "TEXT"}
_TIME = {
    "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "DATE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S",
    "TIMESTAMP_US", "TIMESTAMPTZ_NS",
}


def family(duck_type: str) -> str:
    t = duck_type.upper()
    if t in _INT:
        return "int"
    if t in _FLOAT or t.startswith("DECIMAL"):
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
