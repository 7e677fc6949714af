"""Time values at fsnb's edges: naive means UTC, aware is converted to UTC."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from typing import Any, overload

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


def utc_ns(value: Any, what: str = "time") -> int:
    """Like utc(), as integer nanoseconds since the epoch, keeping a pandas or numpy
    timestamp's nanoseconds."""
    import numpy as np

    if isinstance(value, np.datetime64):
        if np.isnat(value):
            msg = f"{what} is missing"
            raise InvalidData(msg)
        return int(value.astype("datetime64[ns]").astype(np.int64))
    nanos = 0
    if type(value).__name__ == "Timestamp" and hasattr(value, "nanosecond"):
        nanos = int(value.nanosecond)
    aware = utc(value.replace(nanosecond=0) if nanos else value, what)
    delta = aware - _EPOCH
    return duration_us(delta) * 1000 + nanos


@overload
def duration_us(delta: timedelta) -> int: ...


@overload
def duration_us(delta: None) -> None: ...


def duration_us(delta: timedelta | None) -> int | None:
    """A duration as whole microseconds (integer arithmetic, exact for any timedelta; a
    timedelta holds whole microseconds); None stays None (no TTL)."""
    return None if delta is None else delta // _MICROSECOND


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_us() -> int:
    """The current time as integer microseconds since the epoch (how the stores keep time)."""
    return time.time_ns() // 1000


def is_ns(duck_type: str) -> bool:
    """Does a DuckDB time type keep nanoseconds?"""
    return duck_type.upper() in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS")



# What a nanosecond time can hold (DuckDB's TIMESTAMP_NS: a signed 64-bit count).
NS_RANGE = "1677-09-22 to 2262-04-11"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NS_LO = duration_us(datetime(1677, 9, 22, tzinfo=timezone.utc) - _EPOCH) * 1000
_NS_HI = duration_us(datetime(2262, 4, 11, tzinfo=timezone.utc) - _EPOCH) * 1000
_STEP = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def outside_ns_range(column: Any) -> str | None:
    """The first value of an Arrow date/timestamp column that a nanosecond time cannot
    hold (as text), or None when every value fits (checked on the min and max only)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_timestamp(t):
        if t.unit == "ns":
            return None
        step, ints = _STEP[t.unit], column.cast(pa.int64())
    elif pa.types.is_date32(t):
        step, ints = 86_400 * 1_000_000_000, column.cast(pa.int32())
    elif pa.types.is_date64(t):
        step, ints = 1_000_000, column.cast(pa.int64())
    else:
        return None
    bounds = pc.min_max(ints)
    for which in ("min", "max"):
        value = bounds[which].as_py()
        if value is not None and not _NS_LO <= value * step < _NS_HI:
            shown = column.filter(pc.equal(ints, value))[0]
            return str(shown.as_py())
    return None


def format_ttl(ttl: timedelta | None) -> str:
    """The shortest of "30d"/"12h"/"90m"/"45s" that states ttl exactly."""
    if ttl is None:
        return "none"
    seconds = ttl.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_duration(value: timedelta | None, none: str = "–") -> str:
    """A duration in its largest unit ("4d", "1.5h", "90s"); ``none`` for no duration."""
    if value is None:
        return none
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            amount = seconds / size
            return f"{amount:.0f}{unit}" if amount == int(amount) or abs(amount) >= 10 else f"{amount:.1f}{unit}"
    return f"{seconds:g}s"
