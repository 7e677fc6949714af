"""register() of a new view with data against a bare DuckDB insert of the same Arrow table.

Data: --rows feature rows over --entities keys (random event times over a year), read
from one Parquet file by both sides before their clocks start (as are the imports).
The raw side opens a new DuckDB file, creates a table from the Arrow table and closes
it; fsnb opens a new store and registers a view with the same table (validation, the
registry's commit protocol, duplicate and tie checks, statistics) and closes it. Each
run is its own process, on an empty directory; both sides must store every row.

Usage: python bench/bench_ingest.py [--rows N] [--entities N] [--repeat R] [--json]
Target (docs/architecture.md, speed): time <= 2x raw (wall; CPU seconds shown too).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap

from common import print_result

TIME_TARGET = 2.0

SETUP = textwrap.dedent(
    """
    import sys, numpy as np, polars as pl
    out, n_rows, n_entities = sys.argv[1], *map(int, sys.argv[2:4])
    rng = np.random.default_rng(7)
    start = np.datetime64("2024-01-01T00:00:00", "us").astype(np.int64)
    pl.DataFrame({
        "user_id": rng.integers(0, n_entities, n_rows),
        "event_timestamp": pl.Series(start + rng.integers(0, 365 * 86_400 * 1_000_000, n_rows)).cast(pl.Datetime("us", "UTC")),
        "clicks": rng.integers(0, 1000, n_rows),
        "score": rng.random(n_rows),
    }).write_parquet(f"{out}/features.parquet")
    """
)

RAW = textwrap.dedent(
    """
    import sys, time, shutil, pathlib, duckdb, pyarrow.parquet as pq
    out, run = sys.argv[1], sys.argv[2]
    table = pq.read_table(f"{out}/features.parquet")
    target = pathlib.Path(out) / f"raw{run}.duckdb"
    t, c = time.perf_counter(), time.process_time()
    con = duckdb.connect(str(target))
    con.register("batch", table)
    con.execute("CREATE TABLE user_stats AS SELECT * FROM batch")
    con.close()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    con = duckdb.connect(str(target), read_only=True)
    (rows,) = con.execute("SELECT count(*) FROM user_stats").fetchall()[0]
    con.close()
    target.unlink()
    print(elapsed, cpu, rows)
    """
)

FSNB = textwrap.dedent(
    """
    import sys, time, shutil, pathlib, duckdb, pyarrow.parquet as pq
    from fsnb import FeatureStore, FeatureView  # imports happen before the clock starts, as duckdb's do for the raw side
    out, run = sys.argv[1], sys.argv[2]
    table = pq.read_table(f"{out}/features.parquet")
    target = pathlib.Path(out) / f"store{run}"
    t, c = time.perf_counter(), time.process_time()
    with FeatureStore(target) as store:
        store.register(FeatureView("user_stats", entities=["user_id"]), table)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    con = duckdb.connect(str(target / "offline.duckdb"), read_only=True)
    (rows,) = con.execute('SELECT count(*) FROM "fv__user_stats"').fetchall()[0]
    con.close()
    shutil.rmtree(target)
    print(elapsed, cpu, rows)
    """
)


def _run(code: str, *args: str) -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    secs, cpu, rows = out.stdout.strip().splitlines()[-1].split()
    return float(secs), float(cpu), int(rows)


def run(rows: int, entities: int, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="fsnb-bench-ingest-") as tmp:
        subprocess.run([sys.executable, "-c", SETUP, tmp, str(rows), str(entities)], check=True)
        raw_runs, fsnb_runs = [], []
        for i in range(repeat):  # interleaved, so drift on a noisy machine hits both sides
            raw_runs.append(_run(RAW, tmp, str(i)))
            fsnb_runs.append(_run(FSNB, tmp, str(i)))
    assert {r[2] for r in raw_runs} == {r[2] for r in fsnb_runs} == {rows}, (raw_runs, fsnb_runs)
    raw_t, ours_t = min(r[0] for r in raw_runs), min(r[0] for r in fsnb_runs)
    raw_c, ours_c = min(r[1] for r in raw_runs), min(r[1] for r in fsnb_runs)
    return {
        "bench": "register_ingest",
        "size": f"{rows:,} rows ({entities:,} entities)",
        "raw_s": round(raw_t, 3),
        "fsnb_s": round(ours_t, 3),
        "time_ratio": round(ours_t / raw_t, 2),
        # CPU seconds of all the process's threads: steadier than wall time on a loaded machine.
        "raw_cpu_s": round(raw_c, 3),
        "fsnb_cpu_s": round(ours_c, 3),
        "cpu_ratio": round(ours_c / raw_c, 2),
        "ok": ours_t / raw_t <= TIME_TARGET,
        "target": f"time <= {TIME_TARGET}x",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print_result(run(args.rows, args.entities, args.repeat), args.json)


if __name__ == "__main__":
    main()
