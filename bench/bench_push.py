"""Throughput of store.push() against a bare sqlite3 append of the same batches.

Both sides start from the same in-memory Arrow batches of 1,000 rows and make each
batch durable in one fsync'd transaction (SQLite WAL, synchronous=FULL):

- bare:     the rows inserted with sqlite3.executemany (timestamps as int64 microseconds);
- push:     store.push() per batch, each applying to the online and offline stores
            before it returns (opens the offline DuckDB file per call);
- producer: store.push() inside store.producer(): every push is durable
            and online when it returns, the offline store is applied in groups.

Bare appends and pushes are interleaved batch by batch (a change in machine load hits
both alike); the producer run is repeated and the median ratio reported.

Usage: python bench/bench_push.py [--batches N] [--rows R] [--repeats K] [--json]
Target: producer rows/s >= 1/3 of bare rows/s (exit status 1 otherwise).
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


class BareAppend:
    """The baseline: each batch's rows into a plain table, one fsync'd transaction per batch."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(directory / "bare.sqlite", isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.execute("CREATE TABLE IF NOT EXISTS events (user_id INTEGER, event_us INTEGER, clicks INTEGER, score REAL)")

    def append(self, b: pa.Table) -> None:
        cols = [
            b.column("user_id").to_pylist(),
            b.column("event_timestamp").cast(pa.int64()).to_pylist(),
            b.column("clicks").to_pylist(),
            b.column("score").to_pylist(),
        ]
        self.con.execute("BEGIN")
        self.con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", zip(*cols, strict=True))
        self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()


def new_store(directory: Path, first: pa.Table):  # type: ignore[no-untyped-def]
    import fsnb

    store = fsnb.FeatureStore(directory)
    store.register(fsnb.FeatureView("clicks", entities=["user_id"], sync="stream"))
    store.push("clicks", first)  # warm-up: creates the tables, fixes the schema
    return store


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def run(directory: Path, batches: list[pa.Table], warm: pa.Table, *, session: bool) -> tuple[float, float]:
    """(bare seconds, push seconds) for the same batches, interleaved batch by batch so
    that a change in machine load hits both sides alike."""
    bare = BareAppend(directory)
    store = new_store(directory / "store", warm)
    t_bare = t_push = 0.0
    if session:
        t0 = time.perf_counter()
        ctx = store.producer()
        ctx.__enter__()
        t_push += time.perf_counter() - t0
    for b in batches:
        t_bare += timed(bare.append, b)
        t_push += timed(store.push, "clicks", b)
    if session:
        t_push += timed(ctx.__exit__, None, None, None)  # the final offline flush counts
    rows = store.stats("clicks")["rows"]
    expected = sum(b.num_rows for b in batches) + warm.num_rows
    if rows != expected or store.check_skew("clicks").mismatches:
        msg = f"offline store holds {rows} rows, not the {expected} pushed, or online differs"
        raise SystemExit(msg)
    store.close()
    bare.close()
    return t_bare, t_push


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--each-batches", type=int, default=20, help="batches for the slower per-call push")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    batches = make_batches(args.batches + 1, args.rows)
    warm, batches = batches[0], batches[1:]
    prod_runs, each_runs = [], []
    with tempfile.TemporaryDirectory(prefix="fsnb-bench-push-") as tmp:
        for i in range(args.repeats):
            prod_runs.append(run(Path(tmp) / f"p{i}", batches, warm, session=True))
        each_runs.append(run(Path(tmp) / "each", batches[: args.each_batches], warm, session=False))
    rows = args.batches * args.rows
    ratios = sorted(b / p for b, p in prod_runs)
    median = ratios[len(ratios) // 2]
    b_med, p_med = sorted(prod_runs, key=lambda r: r[0] / r[1])[len(prod_runs) // 2]
    e_bare, e_push = each_runs[0]
    result = {
        "batches": args.batches,
        "rows_per_batch": args.rows,
        "bare_rows_per_s": rows / b_med,
        "producer_rows_per_s": rows / p_med,
        "producer_ratio": median,
        "producer_ratios": ratios,
        "push_rows_per_s": args.each_batches * args.rows / e_push,
        "push_ratio": e_bare / e_push,
        "target_ratio": TARGET,
    }
    result["ok"] = median >= TARGET
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bare sqlite3 append   {result['bare_rows_per_s']:>10,.0f} rows/s")
        print(
            f"push in producer()    {result['producer_rows_per_s']:>10,.0f} rows/s   ratio {median:.2f} "
            f"(median of {', '.join(f'{r:.2f}' for r in ratios)}; target >= {TARGET:.2f})"
        )
        print(f"push, one at a time   {result['push_rows_per_s']:>10,.0f} rows/s   ratio {result['push_ratio']:.2f} (opens the offline database per call)")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
