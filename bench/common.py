"""Pieces the benchmarks share."""

from __future__ import annotations

import json
from collections.abc import Mapping

# Each key's latest row, encoded as the online store keeps it: the bare engines' side
# of the materialization benchmarks (SQLite and Redis).
LATEST_ROWS_SQL = (
    'SELECT user_id, epoch_us(event_timestamp), clicks, score, country FROM "fv__user_stats" '
    "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_timestamp DESC) = 1"
)


def print_result(result: Mapping[str, object], as_json: bool) -> None:
    """One JSON line (for bench/run.py) or an aligned table (for a person)."""
    if as_json:
        print(json.dumps(result))
        return
    width = max(len(k) for k in result)
    print("\n".join(f"{k:>{width}}: {v}" for k, v in result.items()))
