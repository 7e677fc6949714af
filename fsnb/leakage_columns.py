"""The names the leakage analysis gives its columns, and how it writes a horizon: what the
report (fsnb/leakage.py), its SQL (fsnb/leakage_sql.py) and the explorer share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fsnb.definitions import FeatureView

# Suffixes of the per-feature columns of LeakageReport.rows.
NAIVE, LEAKED, PIT_TIME, NAIVE_TIME, HORIZON, LATE = (
    "__naive",
    "__leaked",
    "__pit_time",
    "__naive_time",
    "__horizon",
    "__late",
)


@dataclass(frozen=True)
class ExplainedFeature:
    """One explained feature: its output column and where it comes from."""

    name: str  # column name in LeakageReport.rows
    view: FeatureView
    feature: str  # the feature's name inside the view
    numeric: bool


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return "–"
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            amount = seconds / size
            return f"{amount:.0f}{unit}" if amount == int(amount) or abs(amount) >= 10 else f"{amount:.1f}{unit}"
    return f"{seconds:g}s"
