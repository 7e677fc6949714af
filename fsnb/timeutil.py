"""Time values at fsnb's edges: naive means UTC, aware is converted to UTC."""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from typing import Any

from fsnb.errors import InvalidData


def utc(value: Any, what: str = "time") -> datetime:
    """Turn a datetime, date, ISO string or pandas/numpy timestamp into an aware UTC datetime."""
    if value is None:
        msg = f"{what} is missing"
        raise InvalidData(msg)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            msg = f"cannot read {what} {value!r}; write it like 2024-03-01 or 2024-03-01T12:00:00"
            raise InvalidData(msg) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        msg = f"{what} must be a datetime, a date or an ISO string, not {type(value).__name__}"
        raise InvalidData(msg)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_us() -> int:
    """The current time as integer microseconds since the epoch (how the stores keep time)."""
    return time.time_ns() // 1000


def is_ns(duck_type: str) -> bool:
    """Does a DuckDB time type keep nanoseconds?"""
    return duck_type.upper() in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS")
