"""How much of the consumed feature log to keep, and dropping the rest.

The offline store is the history: entries every consumer committed are dropped unless
the retention settings keep them; unconsumed entries are never dropped
(docs/architecture.md, "Streaming").
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from fsnb.backends.sqlite_log import CONSUMERS
from fsnb.errors import InvalidData
from fsnb.timeutil import now_us

if TYPE_CHECKING:
    from fsnb.backends.contracts import FeatureLog

_RETENTION = "retention"  # log setting: JSON {"keep_entries": int, "keep_seconds": float}


def set_retention(log: FeatureLog, *, keep_entries: Any = 0, keep_seconds: Any = 0.0) -> None:
    """Keep the last ``keep_entries`` consumed entries and those younger than ``keep_seconds``."""
    if isinstance(keep_entries, bool) or not isinstance(keep_entries, int) or keep_entries < 0:
        msg = f"keep_entries must be a whole number of entries >= 0, not {keep_entries!r}"
        raise InvalidData(msg)
    if (
        isinstance(keep_seconds, bool)
        or not isinstance(keep_seconds, int | float)
        or not math.isfinite(keep_seconds)
        or keep_seconds < 0
    ):
        msg = f"keep_seconds must be a number of seconds >= 0, not {keep_seconds!r}"
        raise InvalidData(msg)
    log.set_setting(_RETENTION, json.dumps({"keep_entries": int(keep_entries), "keep_seconds": float(keep_seconds)}))


def retention(log: FeatureLog) -> dict[str, float]:
    """The retention settings (both 0 unless set_retention changed them)."""
    raw = log.get_setting(_RETENTION)
    return json.loads(raw) if raw else {"keep_entries": 0, "keep_seconds": 0.0}


def compact(log: FeatureLog) -> int:
    """Drop log entries both consumers committed, within the retention settings."""
    policy = retention(log)
    cut = min(log.committed(c) for c in CONSUMERS) + 1
    cut = min(cut, log.end_offset() - int(policy["keep_entries"]) + 1)
    if policy["keep_seconds"]:
        cutoff = now_us() - int(policy["keep_seconds"] * 1_000_000)
        young = log.first_offset_since(cutoff)
        if young is not None:
            cut = min(cut, young)
    if cut <= log.start_offset():
        return 0
    return log.truncate_before(cut)
