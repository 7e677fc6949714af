"""The Redis online store against bare redis-py on the same keys, same server, same run.

- single entity: store.get_online_features for one key vs a bare HGETALL of its hash;
- 1,000 entities: one call vs a bare pipeline of 1,000 HGETALLs;
- materialize 1M rows / 100K entities: store.materialize() vs the bare DuckDB
  latest-per-key query plus pipelined HSETs of the same rows.

Starts its own redis-server on a free loopback port (Debian's redis-server).
Usage: python bench/bench_redis.py [--rows N] [--entities N] [--calls N] [--json]
Targets (issue 8): reads within 1.5x bare; materialize within 2x bare.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import redis
from common import LATEST_ROWS_SQL, print_result

import fsnb
from fsnb.backends.redis_online import entity_key
from fsnb.testing import running_redis

READ_TARGET = 1.5
MATERIALIZE_TARGET = 2.0
FEATURES = ["clicks", "score", "country"]


def make_frame(rows: int, entities: int) -> pl.DataFrame:
    rng = np.random.default_rng(9)
    start = np.datetime64("2024-01-01T00:00:00", "us")
    return pl.DataFrame({
        "user_id": rng.integers(0, entities, rows),
        "event_timestamp": pl.Series(start + rng.integers(0, 300 * 86_400, rows).astype("timedelta64[s]")).dt.replace_time_zone("UTC"),
        "clicks": rng.integers(0, 1000, rows),
        "score": rng.random(rows),
        "country": rng.choice(["fr", "de", "us", "jp"], rows),
    })


def bare_materialize(store: fsnb.FeatureStore, client: redis.Redis) -> float:
    t = time.perf_counter()
    con = duckdb.connect(str(store.path / "offline.duckdb"))
    rows = con.sql(
        LATEST_ROWS_SQL
    ).fetchall()
    con.close()
    pipe = client.pipeline(transaction=False)
    for i, (k, ts, clicks, score, country) in enumerate(rows):
        pipe.hset(f"bare:{k}", mapping={"_t": ts, "clicks": clicks, "score": score, "country": country})
        if i % 4000 == 3999:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - t


def run(rows: int, entities: int, calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as server:
        client = redis.Redis.from_url(server.url)
        store = fsnb.FeatureStore(Path(tmp) / "store", online=server.url)
        store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), make_frame(rows, entities))
        end = datetime(2030, 1, 1, tzinfo=timezone.utc)
        bare_m, ours_m = [], []
        for _ in range(2):
            client.flushdb()
            store.online.forget_columns()
            bare_m.append(bare_materialize(store, client))
            t = time.perf_counter()
            store.materialize(end=end, progress=False)
            ours_m.append(time.perf_counter() - t)

        refs = [f"user_stats:{f}" for f in FEATURES]
        prefix = store.online._prefix("user_stats")
        rng = random.Random(3)
        keys = [rng.randrange(entities) for _ in range(calls)]
        ns = time.perf_counter_ns
        bare_lat, ours_lat = [], []
        for start in range(0, calls, 500):
            chunk = keys[start : start + 500]
            for k in chunk:
                name = entity_key(prefix, (k,))
                t = ns()
                client.hgetall(name)
                bare_lat.append(ns() - t)
            for k in chunk:
                t = ns()
                store.get_online_features(refs, [{"user_id": k}])
                ours_lat.append(ns() - t)
        bare_b, ours_b = [], []
        for _ in range(40):
            ids = [rng.randrange(entities) for _ in range(1000)]
            names = [entity_key(prefix, (k,)) for k in ids]
            t = ns()
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(name)
            pipe.execute()
            bare_b.append(ns() - t)
            t = ns()
            out = store.get_online_features(refs, [{"user_id": k} for k in ids])
            ours_b.append(ns() - t)
            assert len(out["clicks"]) == 1000
        store.close()
    single = statistics.median(ours_lat) / statistics.median(bare_lat)
    batch = statistics.median(ours_b) / statistics.median(bare_b)
    mat = min(ours_m) / min(bare_m)
    return {
        "bench": "redis_online",
        "size": f"{rows:,} rows / {entities:,} entities; {calls:,} single reads; 40 x 1,000",
        "bare_p50_us": round(statistics.median(bare_lat) / 1000, 1),
        "fsnb_p50_us": round(statistics.median(ours_lat) / 1000, 1),
        "single_ratio": round(single, 2),
        "bare_batch_ms": round(statistics.median(bare_b) / 1e6, 2),
        "fsnb_batch_ms": round(statistics.median(ours_b) / 1e6, 2),
        "batch_ratio": round(batch, 2),
        "bare_materialize_s": round(min(bare_m), 2),
        "fsnb_materialize_s": round(min(ours_m), 2),
        "materialize_ratio": round(mat, 2),
        "ok": single <= READ_TARGET and batch <= READ_TARGET and mat <= MATERIALIZE_TARGET,
        "target": f"reads <= {READ_TARGET}x, materialize <= {MATERIALIZE_TARGET}x",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rows, args.entities, args.calls)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
