"""store.explain_leakage() against the matching get_historical_features, and the explorer's open time.

Data: --features rows over --entities keys (random event times over a year), --labels
label rows (random keys and times, a 0/1 label). Runs alternate (historical features,
report) --repeat times in one process and the best of each is kept. Then the explorer
is opened on the report (after one warm-up open that pays the one-time imports and
the JavaScript bundle), and the size of what its charts send to the browser is measured.

Usage: python bench/bench_leakage.py [--labels N] [--features N] [--entities N] [--repeat R] [--json]
Targets (issue 4): report <= 3x get_historical_features; explorer opens in < 1 s and
sends a sample (kilobytes), never every label row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import polars as pl

TIME_TARGET = 3.0
OPEN_TARGET_S = 1.0


def run(labels: int, features: int, entities: int, repeat: int) -> dict[str, object]:
    import fsnb

    rng = np.random.default_rng(4)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    year = 365 * 86_400 * 1_000_000
    feats = pl.DataFrame(
        {
            "user_id": rng.integers(0, entities, features),
            "event_timestamp": pl.Series(start + rng.integers(0, year, features)).cast(pl.Datetime("us", "UTC")),
            "clicks": rng.integers(0, 1000, features),
            "score": rng.random(features),
        }
    )
    label_frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, entities, labels),
            "event_timestamp": pl.Series(start + rng.integers(0, year, labels)).cast(pl.Datetime("us", "UTC")),
            "label": rng.integers(0, 2, labels),
        }
    )
    refs = ["user_stats:clicks", "user_stats:score"]
    with tempfile.TemporaryDirectory() as tmp:
        store = fsnb.FeatureStore(f"{tmp}/store")
        store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), feats)
        joins, reports = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            frame = store.get_historical_features(label_frame, refs)
            joins.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = store.explain_leakage(label_frame, refs)
            reports.append(time.perf_counter() - t)
        assert report.rows.height == frame.height == labels
        assert report.rows["clicks"].equals(frame["clicks"])  # the report's PIT values are the training set's
        report.explorer()  # warm-up: imports, JavaScript bundle, renderer
        t = time.perf_counter()
        explorer = report.explorer()
        open_s = time.perf_counter() - t
        sent = len(json.dumps(explorer.overview.spec)) + len(json.dumps(explorer.timeline.spec))
        store.close()
    ratio = min(reports) / min(joins)
    return {
        "bench": "explain_leakage",
        "size": f"{labels:,} labels x {features:,} feature rows ({entities:,} entities), 2 features",
        "historical_s": round(min(joins), 3),
        "report_s": round(min(reports), 3),
        "time_ratio": round(ratio, 2),
        "explorer_open_s": round(open_s, 3),
        "explorer_chart_kb": round(sent / 1024, 1),
        "ok": ratio <= TIME_TARGET and open_s <= OPEN_TARGET_S,
        "target": f"report <= {TIME_TARGET}x historical features, explorer open <= {OPEN_TARGET_S}s",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    result = run(args.labels, args.features, args.entities, args.repeat)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
