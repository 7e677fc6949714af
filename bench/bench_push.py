"""Throughput of store.push() against a bare sqlite3 append of the same batches.

Both sides start from the same in-memory Arrow batches of 1,000 rows and make each
batch durable in one fsync'd transaction (SQLite WAL, synchronous=FULL):

- bare:     the rows inserted with sqlite3.executemany (timestamps as int64 microseconds);
- push:     store.push() per batch, each applying to the online and offline stores
            before it returns (opens the offline DuckDB file per call);
- producer: store.push() inside fsnb.streaming.producer(store): every push is durable
            and online when it returns, the offline store is applied in groups.

Usage: python bench/bench_push.py [--batches N] [--rows R] [--json]
Target: producer rows/s >= 1/3 of bare rows/s.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

TARGET = 1 / 3


def make_batches(n_batches: int, rows: int, seed: int = 7) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    start = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)
    batches = []
    for i in range(n_batches):
        ts = start + (i * rows + np.arange(rows, dtype=np.int64)) * 1_000_000
        batches.append(
            pa.table(
                {
                    "user_id": pa.array(rng.integers(0, 10_000, rows), pa.int64()),
                    "event_timestamp": pa.array(ts, pa.timestamp("us", "UTC")),
                    "clicks": pa.array(rng.integers(0, 100, rows), pa.int64()),
                    "score": pa.array(rng.random(rows), pa.float64()),
                }
            )
        )
    return batches


def bare_append(directory: Path, batches: list[pa.Table]) -> float:
    con = sqlite3.connect(directory / "bare.sqlite", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE events (user_id INTEGER, event_us INTEGER, clicks INTEGER, score REAL)")
    t0 = time.perf_counter()
    for b in batches:
        cols = [
            b.column("user_id").to_pylist(),
            b.column("event_timestamp").cast(pa.int64()).to_pylist(),
            b.column("clicks").to_pylist(),
            b.column("score").to_pylist(),
        ]
        con.execute("BEGIN")
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", zip(*cols, strict=True))
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def new_store(directory: Path, first: pa.Table):  # type: ignore[no-untyped-def]
    import fsnb

    store = fsnb.FeatureStore(directory)
    store.register(fsnb.FeatureView("clicks", entities=["user_id"], sync="stream"))
    store.push("clicks", first)  # warm-up: creates the tables, fixes the schema
    return store


def push_each(directory: Path, batches: list[pa.Table], warm: pa.Table) -> float:
    store = new_store(directory, warm)
    t0 = time.perf_counter()
    for b in batches:
        store.push("clicks", b)
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def push_producer(directory: Path, batches: list[pa.Table], warm: pa.Table) -> float:
    from fsnb.streaming import producer

    store = new_store(directory, warm)
    t0 = time.perf_counter()
    with producer(store):
        for b in batches:
            store.push("clicks", b)
    elapsed = time.perf_counter() - t0  # includes the final offline flush
    rows = store.stats("clicks")["rows"]
    store.close()
    expected = sum(b.num_rows for b in batches) + warm.num_rows
    if rows > expected:
        msg = f"offline store holds {rows} rows, more than the {expected} pushed"
        raise SystemExit(msg)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    batches = make_batches(args.batches + 1, args.rows)
    warm, batches = batches[0], batches[1:]
    total = args.batches * args.rows
    with tempfile.TemporaryDirectory(prefix="fsnb-bench-push-") as tmp:
        root = Path(tmp)
        for sub in ("bare", "each", "producer"):
            (root / sub).mkdir()
        bare = bare_append(root / "bare", batches)
        each = push_each(root / "each", batches, warm)
        prod = push_producer(root / "producer", batches, warm)
    result = {
        "batches": args.batches,
        "rows_per_batch": args.rows,
        "bare_rows_per_s": total / bare,
        "push_rows_per_s": total / each,
        "producer_rows_per_s": total / prod,
        "push_ratio": bare / each,
        "producer_ratio": bare / prod,
        "target_ratio": TARGET,
    }
    result["ok"] = result["producer_ratio"] >= TARGET
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bare sqlite3 append   {result['bare_rows_per_s']:>12,.0f} rows/s")
        print(f"push (both stores)    {result['push_rows_per_s']:>12,.0f} rows/s   ratio {result['push_ratio']:.2f}")
        print(f"push in producer()    {result['producer_rows_per_s']:>12,.0f} rows/s   ratio {result['producer_ratio']:.2f}  (target >= {TARGET:.2f})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
