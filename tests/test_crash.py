"""SIGKILL in the middle of an ingest or a materialization: all or nothing survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

import fsnb

pytestmark = pytest.mark.slow

ROWS = 1_500_000

CHILD = textwrap.dedent(
    """
    import sys, datetime as dt, polars as pl, fsnb
    store = fsnb.FeatureStore(sys.argv[1])
    n, start = int(sys.argv[3]), int(sys.argv[4])
    frame = pl.DataFrame({
        "k": pl.int_range(start, start + n, eager=True) % 200_000,
        "event_timestamp": pl.datetime_range(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1) + dt.timedelta(seconds=n - 1), "1s", eager=True),
        "x": pl.int_range(start, start + n, eager=True),
    })
    print("ready", flush=True)
    if sys.argv[2] == "ingest":
        store.ingest("v", frame)
    else:
        store.materialize(end=dt.datetime(2030, 1, 1), progress=False)
    print("done", flush=True)
    """
)


def _run_child(path: Path, action: str, n: int, start: int, kill_after: float | None) -> bool:
    """Run the child; SIGKILL it kill_after seconds after it is ready. True if it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), action, str(n), str(start)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    if kill_after is None:
        proc.wait(timeout=300)
        return proc.returncode == 0
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode == 0


def _timed(path: Path, action: str, n: int, start: int) -> float:
    t = time.monotonic()
    assert _run_child(path, action, n, start, None)
    return time.monotonic() - t


def test_sigkill_during_ingest_leaves_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]))
    duration = _timed(path, "ingest", ROWS, 0)  # a full ingest, to aim the kills
    expected = ROWS
    rng = random.Random(1)
    outcomes: set[str] = set()
    attempt = 0
    while attempt < 3 or ("nothing" not in outcomes and attempt < 10):  # until a kill lands mid-ingest
        attempt += 1
        start = attempt * ROWS
        finished = _run_child(path, "ingest", ROWS, start, kill_after=rng.uniform(0.05, 0.8) * duration)
        with fsnb.FeatureStore(path) as store:
            rows = store.read("v")
        if len(rows) == expected + ROWS:
            expected += ROWS
            outcomes.add("all")
        else:
            assert len(rows) == expected, f"partial ingest survived: {len(rows)} rows"
            assert not finished
            outcomes.add("nothing")
        # what is there is exactly whole batches
        assert rows["x"].n_unique() == len(rows)
    assert "nothing" in outcomes  # at least one kill landed mid-ingest


def test_sigkill_during_materialize_leaves_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]))
    assert _run_child(path, "ingest", ROWS, 0, None)
    t = time.monotonic()
    assert _run_child(path, "materialize", 0, 0, None)
    duration = time.monotonic() - t
    with fsnb.FeatureStore(path) as store:
        full = sorted(store.online.dump(store.get_feature_view("v")))
        store.online.drop("v")
    assert len(full) == 200_000
    rng = random.Random(2)
    killed_mid = False
    attempts = 0
    while attempts < 3 or (not killed_mid and attempts < 10):  # keep aiming until a kill lands mid-write
        attempts += 1
        finished = _run_child(path, "materialize", 0, 0, kill_after=rng.uniform(0.05, 0.7) * duration)
        with fsnb.FeatureStore(path) as store:
            got = sorted(store.online.dump(store.get_feature_view("v")))
            if got:
                assert got == full
                store.online.drop("v")
            else:
                killed_mid = killed_mid or not finished
                assert store.online.watermark("v") == (None, None)
    assert killed_mid


def test_store_reopens_after_kill_and_accepts_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]))
    _run_child(path, "ingest", ROWS, 0, kill_after=0.5)
    with fsnb.FeatureStore(path) as store:
        before = len(store.read("v"))
        store.ingest("v", pl.DataFrame({"k": [1], "event_timestamp": [datetime(2025, 1, 1)], "x": [-1]}))
        assert len(store.read("v")) == before + 1
