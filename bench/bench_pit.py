"""get_historical_features against a hand-written DuckDB ASOF LEFT JOIN on the same data.

Data: --features rows over --entities keys (random event times over a year) and
--labels label rows (random keys, random times). Both sides read the same feature
table from a DuckDB file, the same labels from Parquet, and return a polars frame
with every label row in input order. Each side runs in its own process so that peak
memory (ru_maxrss) is its own; the best of --repeat runs is kept.

Usage: python bench/bench_pit.py [--labels N] [--features N] [--entities N] [--repeat R] [--json]
Targets (DESIGN section 8): time <= 1.3x raw, peak memory <= 1.3x raw.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import polars as pl
from common import print_result

TIME_TARGET = 1.3
MEMORY_TARGET = 1.3

SETUP = textwrap.dedent(
    """
    import sys, numpy as np, polars as pl, duckdb, fsnb
    out, n_labels, n_features, n_entities = sys.argv[1], *map(int, sys.argv[2:5])
    rng = np.random.default_rng(11)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    year = 365 * 86_400 * 1_000_000
    feats = pl.DataFrame({
        "user_id": rng.integers(0, n_entities, n_features),
        "event_timestamp": pl.Series(start + rng.integers(0, year, n_features)).cast(pl.Datetime("us", "UTC")),
        "clicks": rng.integers(0, 1000, n_features),
        "score": rng.random(n_features),
    })
    labels = pl.DataFrame({
        "user_id": rng.integers(0, n_entities, n_labels),
        "event_timestamp": pl.Series(start + rng.integers(0, year, n_labels)).cast(pl.Datetime("us", "UTC")),
        "label": rng.integers(0, 2, n_labels),
    })
    labels.write_parquet(f"{out}/labels.parquet")
    store = fsnb.FeatureStore(f"{out}/store")
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), feats)
    con = duckdb.connect(f"{out}/raw.duckdb")
    con.register("feats", feats.to_arrow())
    con.execute("CREATE TABLE user_stats AS SELECT * FROM feats")
    con.close()
    """
)

RAW = textwrap.dedent(
    """
    import sys, time, resource, duckdb, numpy as np, polars as pl, pyarrow as pa
    out = sys.argv[1]
    labels = pl.read_parquet(f"{out}/labels.parquet")
    t, c = time.perf_counter(), time.process_time()
    con = duckdb.connect(f"{out}/raw.duckdb")
    con.execute("SET TimeZone = 'UTC'")
    keys = labels.select("user_id", "event_timestamp").to_arrow().append_column("row", pa.array(np.arange(labels.height)))
    con.register("l", keys)
    result = pl.from_arrow(con.sql(
        "SELECT f.clicks, f.score FROM l ASOF LEFT JOIN user_stats f "
        "ON l.user_id = f.user_id AND l.event_timestamp >= f.event_timestamp ORDER BY l.row"
    ).to_arrow_table())
    frame = labels.hstack(result)
    con.close()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, frame.height, frame["clicks"].null_count(), cpu)
    """
)

FSNB = textwrap.dedent(
    """
    import sys, time, resource, polars as pl
    from fsnb import FeatureStore  # imports happen before the clock starts, as duckdb's do for the raw side
    out = sys.argv[1]
    labels = pl.read_parquet(f"{out}/labels.parquet")
    t, c = time.perf_counter(), time.process_time()
    store = FeatureStore(f"{out}/store")
    frame = store.get_historical_features(labels, ["user_stats:clicks", "user_stats:score"])
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, frame.height, frame["clicks"].null_count(), cpu)
    """
)


def _run(code: str, *args: str) -> tuple[float, int, int, int, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    secs, rss, rows, nulls, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(secs), int(rss), int(rows), int(nulls), float(cpu)


def run(labels: int, features: int, entities: int, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", SETUP, tmp, str(labels), str(features), str(entities)], check=True)
        raw_runs, fsnb_runs = [], []
        for _ in range(repeat):  # interleaved, so drift on a noisy machine hits both sides
            raw_runs.append(_run(RAW, tmp))
            fsnb_runs.append(_run(FSNB, tmp))
    raw_t = min(r[0] for r in raw_runs)
    ours_t = min(r[0] for r in fsnb_runs)
    raw_m = min(r[1] for r in raw_runs)
    ours_m = min(r[1] for r in fsnb_runs)
    assert raw_runs[0][2:4] == fsnb_runs[0][2:4], (raw_runs[0], fsnb_runs[0])  # same rows, same nulls
    raw_c, ours_c = min(r[4] for r in raw_runs), min(r[4] for r in fsnb_runs)
    return {
        "bench": "get_historical_features",
        "size": f"{labels:,} labels x {features:,} feature rows ({entities:,} entities)",
        "raw_s": round(raw_t, 3),
        "fsnb_s": round(ours_t, 3),
        "time_ratio": round(ours_t / raw_t, 2),
        # CPU seconds of all the process's threads: steadier than wall time on a loaded machine.
        "raw_cpu_s": round(raw_c, 3),
        "fsnb_cpu_s": round(ours_c, 3),
        "cpu_ratio": round(ours_c / raw_c, 2),
        "raw_peak_mb": round(raw_m / 1024),
        "fsnb_peak_mb": round(ours_m / 1024),
        "memory_ratio": round(ours_m / raw_m, 2),
        "ok": ours_t / raw_t <= TIME_TARGET and ours_m / raw_m <= MEMORY_TARGET,
        "target": f"time <= {TIME_TARGET}x, memory <= {MEMORY_TARGET}x",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.labels, args.features, args.entities, args.repeat)
    print_result(result, args.json)


if __name__ == "__main__":
    np.seterr(all="ignore")
    pl.Config.set_tbl_rows(5)
    main()
