"""Run every benchmark in bench/ and print one line each (ratios against the raw engines).

Usage: python -m bench.run [NAME ...]   (NAME: pit, online, materialize, push, load, ...)
Each bench_*.py also runs alone: python bench/bench_pit.py --help.
Results are written to bench/results/latest.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    results = []
    for script in scripts:
        t = time.monotonic()
        proc = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{script.stem}: FAILED\n{proc.stderr[-2000:]}")
            results.append({"bench": script.stem, "ok": False, "error": proc.stderr[-2000:]})
            continue
        result = json.loads(lines[-1])
        result["wall_s"] = round(time.monotonic() - t, 1)
        results.append(result)
        shown = ", ".join(f"{k}={v}" for k, v in result.items() if k not in ("bench",))
        print(f"{result.get('bench', script.stem)}: {shown}", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
