"""How online backends hold values: the SQL that encodes a feature or key column for
SQLite and Redis, the decoders that turn a stored value back, and what every reader
needs (shared by fsnb/backends/sqlite_online.py and redis_online.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from fsnb import types
from fsnb.definitions import FeatureView
from fsnb.sqlnames import q
from fsnb.timeutil import duration_us, is_ns

TS, CREATED, SEQ = "_fsnb_ts", "_fsnb_created", "_fsnb_seq"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_us = timedelta(microseconds=1)


# SQLite stores a float NaN as NULL, so fsnb stores it as this text (in Redis too) and
# the readers turn it back into a float NaN: NaN is a value, null is missing.
NAN_TEXT = "NaN"
_NAN = float("nan")
_NAN_OR_DOUBLE = "UNION(n DOUBLE, s VARCHAR)"


def encode_sql(column: str, duck_type: str, *, nan: bool = False) -> str:
    """DuckDB expression turning a column into the value SQLite will hold.

    nan: the column may hold NaN (a float NaN comes out as NAN_TEXT). Only then is
    it asked for: the mixed result is four times slower to fetch.
    """
    fam = types.family(duck_type)
    col = q(column)
    if duck_type.upper() == "DATE":
        return f"CAST({col} AS VARCHAR)"
    if fam == "time":
        return epoch_us_sql(col, duck_type)
    if fam in ("int", "string", "bool"):
        return col
    if fam == "float" and nan and duck_type.upper() in _NAN_TYPES:
        return (
            f"CASE WHEN isnan({col}) THEN union_value(s := '{NAN_TEXT}')::{_NAN_OR_DOUBLE} "
            f"ELSE union_value(n := CAST({col} AS DOUBLE))::{_NAN_OR_DOUBLE} END"
        )
    if fam == "float":
        return f"CAST({col} AS DOUBLE)"
    return f"CAST(to_json({col}) AS VARCHAR)"


_NAN_TYPES = {"FLOAT", "DOUBLE", "REAL"}  # DECIMAL has no NaN


def may_hold_nan(duck_type: str | None) -> bool:
    return (duck_type or "").upper() in _NAN_TYPES


def epoch_us_sql(expr: str, duck_type: str) -> str:
    """Integer microseconds since the epoch of a DuckDB time value, rounded down (so
    ``t >= c`` for a whole microsecond c is exactly ``epoch_us(t) >= c``)."""
    if is_ns(duck_type):
        return f"epoch_us(CAST({expr} AS TIMESTAMP_NS))"
    if duck_type.upper() == "DATE":
        return f"epoch_us(CAST({expr} AS TIMESTAMP))"
    return f"epoch_us(CAST({expr} AS TIMESTAMPTZ))"


def float_value(v: Any) -> Any:
    """A stored float feature value as served (NAN_TEXT is NaN)."""
    return _NAN if v == NAN_TEXT else v


def encode_key_sql(column: str, duck_type: str | None) -> str:
    """DuckDB expression turning an entity column into the key SQLite/Redis hold
    (what fsnb.entity turns a caller's value into): dates as ISO text, timestamps as
    integer microseconds since the epoch (nanoseconds for the _NS types)."""
    col = q(column)
    if duck_type is None or not types.is_time(duck_type):
        return col
    if duck_type.upper() == "DATE":
        return f"CAST({col} AS VARCHAR)"
    if is_ns(duck_type):
        return f"epoch_ns({col})"
    return f"epoch_us({col})"


def decoder(duck_type: str) -> Callable[[Any], Any] | None:
    """Python function turning a stored SQLite value back into the feature's value."""
    fam = types.family(duck_type)
    if duck_type.upper() == "DATE":
        return lambda v: None if v is None else date.fromisoformat(v)
    if fam == "time":
        return lambda v: None if v is None else datetime.fromtimestamp(v / 1_000_000, timezone.utc)
    if fam == "bool":
        return lambda v: None if v is None else bool(v)
    if may_hold_nan(duck_type):
        return float_value
    if fam in ("int", "string", "float"):
        return None
    return lambda v: None if v is None else json.loads(v)


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return duration_us(value - _EPOCH)


def reader_basics(stored: list[str], view: FeatureView, features: list[str], output_names: list[str]) -> dict[str, Any]:
    """What every backend's reader needs: decoders, the TTL in µs, and whether the
    backend already holds every requested feature for the view (stored: its columns)."""
    feature_types = view.feature_types
    ttl = view.ttl
    return {
        "view": view,
        "features": features,
        "output_names": output_names,
        "decoders": [decoder(feature_types.get(f) or "VARCHAR") for f in features],
        # Exact integer microseconds (a float of seconds rounds long TTLs). Stored event
        # times are whole microseconds rounded down, so "ts >= now - ttl" with now in whole
        # microseconds is exactly the offline rule.
        "ttl_us": duration_us(ttl),  # exact integer microseconds
        "exists": bool(stored) and all(f in stored for f in features),
    }
