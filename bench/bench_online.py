"""get_online_features against a bare sqlite3 primary-key lookup of the same rows.

Both sides read the same online table (the one fsnb materialized), in one process,
interleaved in rounds so that machine noise hits both alike. Single entity: p50 of
per-call latency over random keys. Batch: 1,000 random entities in one call.

Usage: python bench/bench_online.py [--entities N] [--calls N] [--json]
Targets (DESIGN section 8): single p50 <= 2.5x bare; 1,000 entities < 3 ms.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
from common import print_result

import fsnb

SINGLE_TARGET = 2.5
BATCH_TARGET_MS = 3.0
FEATURES = ["clicks", "score", "country"]


def setup(directory: Path, entities: int) -> fsnb.FeatureStore:
    rng = np.random.default_rng(5)
    now = datetime.now(timezone.utc)
    frame = pl.DataFrame({
        "user_id": np.arange(entities),
        "event_timestamp": [now - timedelta(minutes=int(m)) for m in rng.integers(1, 10_000, entities)],
        "clicks": rng.integers(0, 1000, entities),
        "score": rng.random(entities),
        "country": rng.choice(["fr", "de", "us", "jp"], entities),
    })
    store = fsnb.FeatureStore(directory / "store")
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), frame)
    store.materialize(progress=False)
    return store


def run(entities: int, calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        store = setup(Path(tmp), entities)
        refs = [f"user_stats:{f}" for f in FEATURES]
        bare = sqlite3.connect(store.path / "online.sqlite", isolation_level=None)
        bare_sql = 'SELECT "_fsnb_ts", "clicks", "score", "country" FROM "ov__user_stats" WHERE "user_id" = ?'
        rng = random.Random(3)
        keys = [rng.randrange(entities) for _ in range(calls)]
        ns = time.perf_counter_ns
        bare_lat, ours_lat = [], []
        for _ in range(3):  # warm both paths
            store.get_online_features(refs, [{"user_id": keys[0]}])
            bare.execute(bare_sql, (keys[0],)).fetchone()
        for start in range(0, calls, 1000):  # interleaved rounds
            chunk = keys[start : start + 1000]
            for k in chunk:
                t = ns()
                bare.execute(bare_sql, (k,)).fetchone()
                bare_lat.append(ns() - t)
            for k in chunk:
                t = ns()
                store.get_online_features(refs, [{"user_id": k}])
                ours_lat.append(ns() - t)
        got = store.get_online_features(refs, [{"user_id": keys[0]}])
        row = bare.execute(bare_sql, (keys[0],)).fetchone()
        assert got["clicks"] == [row[1]] and got["country"] == [row[3]]
        batch_ms, bare_batch_ms = [], []
        for i in range(60):
            ids = [rng.randrange(entities) for _ in range(1000)]
            rows = [{"user_id": k} for k in ids]
            t = ns()
            out = store.get_online_features(refs, rows)
            batch_ms.append((ns() - t) / 1e6)
            assert len(out["clicks"]) == 1000
            marks = ",".join("?" * len(ids))
            t = ns()
            bare.execute(f'SELECT "user_id", "_fsnb_ts", "clicks", "score", "country" FROM "ov__user_stats" WHERE "user_id" IN ({marks})', ids).fetchall()
            bare_batch_ms.append((ns() - t) / 1e6)
            del i
        bare.close()
        store.close()
    p50_bare = statistics.median(bare_lat) / 1000
    p50_ours = statistics.median(ours_lat) / 1000
    batch = statistics.median(batch_ms)
    return {
        "bench": "get_online_features",
        "size": f"{entities:,} entities, {calls:,} single calls, 60 batches of 1,000",
        "bare_p50_us": round(p50_bare, 1),
        "fsnb_p50_us": round(p50_ours, 1),
        "single_ratio": round(p50_ours / p50_bare, 2),
        "fsnb_p99_us": round(float(np.percentile(ours_lat, 99)) / 1000, 1),
        "batch_1000_ms": round(batch, 2),
        "bare_batch_1000_ms": round(statistics.median(bare_batch_ms), 2),
        "ok": p50_ours / p50_bare <= SINGLE_TARGET and batch < BATCH_TARGET_MS,
        "target": f"single p50 <= {SINGLE_TARGET}x bare, 1,000 entities < {BATCH_TARGET_MS} ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.entities, args.calls)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
