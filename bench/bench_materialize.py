"""materialize() against a bare DuckDB latest-per-key query plus sqlite3.executemany.

Same offline data (--rows rows over --entities keys) for both. The bare side runs
the latest-per-key query on the DuckDB file and inserts the rows into a fresh
SQLite table (WAL, one transaction, same columns and primary key); fsnb
materializes into its own fresh online store. Rounds are interleaved; best kept.

Usage: python bench/bench_materialize.py [--rows N] [--entities N] [--repeat R] [--json]
Target (DESIGN section 8): at most 2x the bare path.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from common import LATEST_ROWS_SQL, print_result

import fsnb

TARGET = 2.0


def setup(directory: Path, rows: int, entities: int) -> fsnb.FeatureStore:
    rng = np.random.default_rng(9)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    frame = pl.DataFrame({
        "user_id": rng.integers(0, entities, rows),
        "event_timestamp": pl.Series(
            np.datetime64(start.replace(tzinfo=None), "us") + rng.integers(0, 300 * 86_400, rows).astype("timedelta64[s]")
        ).dt.replace_time_zone("UTC"),
        "clicks": rng.integers(0, 1000, rows),
        "score": rng.random(rows),
        "country": rng.choice(["fr", "de", "us", "jp"], rows),
    })
    store = fsnb.FeatureStore(directory / "store")
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), frame)
    return store


def bare(store: fsnb.FeatureStore, target: Path) -> float:
    t = time.perf_counter()
    con = duckdb.connect(str(store.path / "offline.duckdb"))
    rows = con.sql(
        LATEST_ROWS_SQL
    ).fetchall()
    con.close()
    lite = sqlite3.connect(target, isolation_level=None)
    lite.execute("PRAGMA journal_mode=WAL")
    lite.execute("PRAGMA synchronous=NORMAL")
    lite.execute("CREATE TABLE t (user_id, ts INTEGER, clicks, score, country, PRIMARY KEY (user_id)) WITHOUT ROWID")
    lite.execute("BEGIN")
    lite.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    lite.execute("COMMIT")
    lite.close()
    return time.perf_counter() - t


def ours(store: fsnb.FeatureStore) -> float:
    store.online.drop("user_stats")
    t = time.perf_counter()
    written = store.materialize(end=datetime(2030, 1, 1, tzinfo=timezone.utc), progress=False)
    elapsed = time.perf_counter() - t
    assert written["user_stats"] > 0
    return elapsed


def run(rows: int, entities: int, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        store = setup(Path(tmp), rows, entities)
        bare_t, ours_t = [], []
        for i in range(repeat):
            target = Path(tmp) / f"bare{i}.sqlite"
            bare_t.append(bare(store, target))
            ours_t.append(ours(store))
        got = store.get_online_features(["user_stats:clicks"], [{"user_id": 1}])["clicks"]
        lite = sqlite3.connect(Path(tmp) / "bare0.sqlite")
        assert got == [lite.execute("SELECT clicks FROM t WHERE user_id = 1").fetchone()[0]]
        lite.close()
        store.close()
    b, o = min(bare_t), min(ours_t)
    return {
        "bench": "materialize",
        "size": f"{rows:,} rows / {entities:,} entities",
        "bare_s": round(b, 3),
        "fsnb_s": round(o, 3),
        "ratio": round(o / b, 2),
        "fsnb_rows_per_s": round(entities / o),
        "ok": o / b <= TARGET,
        "target": f"<= {TARGET}x bare",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rows, args.entities, args.repeat)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
