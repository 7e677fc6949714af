"""The names the leakage analysis gives its columns, and how it writes a horizon: what the
report (fsnb/leakage.py), its SQL (fsnb/leakage_sql.py) and the explorer share."""

from __future__ import annotations

from dataclasses import dataclass

from fsnb.definitions import FeatureView
from fsnb.timeutil import format_duration as format_duration  # re-exported: the report's horizons

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


