"""How long `import fsnb` + `%load_ext fsnb` take in a fresh IPython (DESIGN section 8: < 0.3 s).

Each run is a new Python process: IPython's shell is created first (a notebook kernel
already has one), then the clock covers `import fsnb` and `%load_ext fsnb` only. The
store holds a few views so the load message reads a real registry. Also shown: the
first magic that opens the store (DuckDB, polars, Arrow load there, not at load time).

Usage: python bench/bench_load.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_S = 0.3

PROBE = """
import json, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
config = Config()
config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
t0 = time.perf_counter()
import fsnb
t1 = time.perf_counter()
shell.run_line_magic("load_ext", "fsnb")
t2 = time.perf_counter()
shell.run_line_magic("fsnb", "list")
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load_ext": t2 - t1, "first_magic": t3 - t2}))
"""

SEED = """
import datetime as dt, polars as pl, fsnb
store = fsnb.FeatureStore()
for i in range(3):
    store.register(fsnb.FeatureView(f"view_{i}", entities=["user_id"]), pl.DataFrame(
        {"user_id": [1, 2], "event_timestamp": [dt.datetime(2024, 1, 1)] * 2, "x": [1.0, 2.0]}))
"""


def measure(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="fsnb-bench-load-") as tmp:
        env = {**os.environ, "FSNB_STORE": str(Path(tmp) / "store")}
        subprocess.run([sys.executable, "-c", SEED], check=True, env=env)
        samples = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", PROBE], check=True, env=env, capture_output=True, text=True
            ).stdout
            samples.append(json.loads(out.strip().splitlines()[-1]))
    total = [s["import"] + s["load_ext"] for s in samples]
    return {
        "runs": runs,
        "import_s": statistics.median(s["import"] for s in samples),
        "load_ext_s": statistics.median(s["load_ext"] for s in samples),
        "import_plus_load_p50_s": statistics.median(total),
        "import_plus_load_max_s": max(total),
        "first_magic_p50_s": statistics.median(s["first_magic"] for s in samples),
        "target_s": TARGET_S,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.runs)
    ok = result["import_plus_load_p50_s"] < TARGET_S
    if args.json:
        print(json.dumps({**result, "ok": ok}))
    else:
        print(
            f"import fsnb + %load_ext fsnb: p50 {result['import_plus_load_p50_s'] * 1000:.0f} ms "
            f"(import {result['import_s'] * 1000:.0f} ms, load_ext {result['load_ext_s'] * 1000:.0f} ms; "
            f"max {result['import_plus_load_max_s'] * 1000:.0f} ms over {args.runs} runs), "
            f"target < {TARGET_S * 1000:.0f} ms: {'OK' if ok else 'TOO SLOW'}"
        )
        print(f"first magic (opens DuckDB/polars/Arrow): p50 {result['first_magic_p50_s'] * 1000:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
