"""SIGKILL in the middle of an ingest or a materialization: all or nothing survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
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


# -- random kills of many small operations ------------------------------------------------
# One "zygote" process imports fsnb once and forks a child per run, so a kill costs a
# fork, not an interpreter start. Each child performs operations start, start+1, ... and
# appends i to a progress file after operation i returned; the parent SIGKILLs it at a
# random moment, reopens the store and checks that the state is exactly the first n
# operations, with n the acknowledged count or one more (killed after the work, before
# the acknowledgement).

ZYGOTE = textwrap.dedent(
    """
    import json, os, sys, datetime as dt
    import polars as pl
    import pandas, pyarrow.compute, dateutil.parser, sqlite3  # what the first operation imports
    import fsnb, fsnb.store, fsnb.validation, fsnb.sync.materialize, fsnb.backends.sqlite_log

    def batch(i, keys=20):
        return pl.DataFrame({
            "k": list(range(keys)),
            "event_timestamp": [dt.datetime(2024, 1, 1) + dt.timedelta(hours=i, seconds=k) for k in range(keys)],
            "x": [i * 1000 + k for k in range(keys)],
        })

    def run(kind, path, start, progress):
        store = fsnb.FeatureStore(path)
        with store.offline.connect():  # the first open is slow: warm up before the clock starts
            pass
        batch(0).to_arrow()
        print("started", flush=True)
        out = open(progress, "a")
        def ack(i):
            out.write(f"{i}\\n"); out.flush()
        i = start
        if kind == "producer":
            with store.producer(offline_every=3):
                while True:
                    store.push("s", batch(i)); ack(i); i += 1
        while True:
            if kind == "register":
                store.register(fsnb.FeatureView("v", entities=["k"], description=f"d{i}"), batch(i))
            elif kind == "ingest":
                store.ingest("v", batch(i))
            elif kind == "materialize":
                if i % 2 == 0:
                    store.ingest("v", batch(i // 2))
                else:
                    store.materialize_incremental(end=dt.datetime(2030, 1, 1), progress=False)
            elif kind == "push":
                store.push("s", batch(i))
            ack(i)
            i += 1

    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                run(**job)
            except BaseException:
                import traceback; traceback.print_exc()
            finally:
                os._exit(1)
        print(pid, flush=True)
        sys.stdin.readline()  # "reap"
        os.waitpid(pid, 0)
        print("reaped", flush=True)
    """
)

KEYS = 20


class Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.out, self.inp = self.proc.stdout, self.proc.stdin
        assert self.out.readline().strip() == "ready"

    def kill_after(self, seconds: float, **job: object) -> None:
        import json

        self.inp.write(json.dumps(job) + "\n")
        self.inp.flush()
        lines = {self.out.readline().strip(), self.out.readline().strip()}  # the pid, and the child's "started"
        assert "started" in lines, lines
        pid = int(next(ln for ln in lines if ln != "started"))
        time.sleep(seconds)
        os.kill(pid, signal.SIGKILL)
        self.inp.write("reap\n")
        self.inp.flush()
        assert self.out.readline().strip() == "reaped"

    def close(self) -> None:
        self.inp.write("quit\n")
        self.inp.flush()
        self.proc.wait(timeout=30)


def _acked(progress: Path) -> int:
    """How many operations the children acknowledged (the last one written + 1)."""
    lines = [ln for ln in progress.read_text().splitlines() if ln.strip()] if progress.exists() else []
    return int(lines[-1]) + 1 if lines else 0


def _offline_rows(path: Path, name: str) -> pl.DataFrame:
    """The view's committed rows, read straight from DuckDB (no fsnb recovery)."""
    import duckdb

    con = duckdb.connect(str(path / "offline.duckdb"), read_only=True)
    try:
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [f"fv__{name}"]).fetchall()
        if not exists[0][0]:
            return pl.DataFrame({"x": []}, schema={"x": pl.Int64})
        return pl.from_arrow(con.sql(f'SELECT x FROM "fv__{name}"').to_arrow_table())  # type: ignore[return-value]
    finally:
        con.close()


def _check_batches(rows: pl.DataFrame, n: int) -> None:
    """The rows are exactly batches 0..n-1."""
    assert len(rows) == n * KEYS, f"{len(rows)} rows, expected {n} whole batches"
    assert sorted(rows["x"].to_list()) == sorted(i * 1000 + k for i in range(n) for k in range(KEYS))


def _check_stats(store: fsnb.FeatureStore, name: str) -> None:
    """The mirrored statistics equal a recount of the rows that are there."""
    view = store.get_feature_view(name)
    recount = store.offline.stats(view)
    mirrored = store.stats(name)
    if not recount["rows"]:
        assert not mirrored.get("rows"), mirrored
        return
    for key in ("rows", "entities", "min_ts", "max_ts", "last_ingested"):
        assert mirrored.get(key) == recount.get(key), (key, mirrored, recount)


def _kill_loop(tmp_path: Path, kind: str, kills: int, check: Callable[[Path, int], int], seed: int) -> int:
    """Run kills children of kind; check(path, acked) validates the state and returns
    the operation the next child starts at. Returns how many kills interrupted work."""
    path = tmp_path / "s"
    progress = tmp_path / "progress"
    zygote = Zygote()
    rng = random.Random(seed)
    start = 0
    try:
        for _ in range(kills):
            zygote.kill_after(rng.uniform(0.0, 0.5), kind=kind, path=str(path), start=start, progress=str(progress))
            start = check(path, _acked(progress))
            progress.write_text(f"{start - 1}\n" if start else "")
    finally:
        zygote.close()
    return start


def test_random_kills_of_register_with_data(tmp_path: Path) -> None:
    def check(path: Path, acked: int) -> int:
        from fsnb.registry import Registry

        # What a registry-only reader (server endpoint, fsnb list) sees before anyone recovers.
        if (path / "registry.sqlite").exists():
            reader = Registry(path / "registry.sqlite", readonly=True)
            shown = reader.latest("v").version if reader.has("v") else 0
            reader.close()
        else:
            shown = 0
        n = len(_offline_rows(path, "v")) // KEYS
        assert n in (acked, acked + 1)
        _check_batches(_offline_rows(path, "v"), n)
        assert shown <= n, f"the registry shows version {shown} with only {n} batches committed"
        with fsnb.FeatureStore(path) as store:
            if n:
                latest = store.registry.latest("v")
                assert (latest.version, latest.view.description) == (n, f"d{n - 1}")
                _check_stats(store, "v")
            else:
                assert not store.registry.has("v")
            assert store.registry.pending_writes() == []
        return n

    assert _kill_loop(tmp_path, "register", 31, check, seed=11) > 3


def test_random_kills_of_ingest(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]))  # no schema: the first ingest fixes it in place

    def check(path: Path, acked: int) -> int:
        from fsnb.registry import Registry

        reader = Registry(path / "registry.sqlite", readonly=True)
        shown = reader.latest("v").view
        reader.close()
        n = len(_offline_rows(path, "v")) // KEYS
        assert n in (acked, acked + 1)
        _check_batches(_offline_rows(path, "v"), n)
        assert shown.features is None or n > 0, "the schema fix is visible without its rows"
        with fsnb.FeatureStore(path) as store:
            latest = store.registry.latest("v")
            assert latest.version == 1
            assert (latest.view.features is not None) == (n > 0)
            _check_stats(store, "v")
        return n

    assert _kill_loop(tmp_path, "ingest", 31, check, seed=12) > 3


def test_random_kills_of_ingest_and_materialize(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"], features={"x": "BIGINT"}, entity_types={"k": "BIGINT"}))

    def online_batches(store: fsnb.FeatureStore) -> int:
        """Which clean run of materializations the online values equal (batches seen)."""
        got = sorted((r[0], r[2]) for r in store.online.dump(store.get_feature_view("v")))
        if not got:
            return 0
        q = got[0][1] // 1000 + 1
        assert got == [(k, (q - 1) * 1000 + k) for k in range(KEYS)], got
        return q

    def check(path: Path, acked: int) -> int:
        rows = _offline_rows(path, "v")
        b = len(rows) // KEYS
        _check_batches(rows, b)
        with fsnb.FeatureStore(path) as store:
            _check_stats(store, "v")
            q = online_batches(store)
            assert q in (b, b - 1)
            done = 2 * b - (q != b)  # operations that took effect
            assert done in (acked, acked + 1)
        return done

    assert _kill_loop(tmp_path, "materialize", 31, check, seed=13) > 6


def _stream_check(path: Path, acked: int) -> int:
    with fsnb.FeatureStore(path) as store:
        # Before replaying the log: whatever the offline consumer wrote is whole, with its statistics.
        assert len(_offline_rows(path, "s")) % KEYS == 0
        _check_stats(store, "s")
        store.sync()
        rows = _offline_rows(path, "s")
        n = len(rows) // KEYS
        assert n in (acked, acked + 1)
        _check_batches(rows, n)
        _check_stats(store, "s")
        got = sorted((r[0], r[2]) for r in store.online.dump(store.get_feature_view("s")))
        assert got == ([(k, (n - 1) * 1000 + k) for k in range(KEYS)] if n else [])
    return n


_quiet_log = pytest.mark.filterwarnings("ignore::fsnb.sync.log_state.UncommittedLog")  # expected after each kill


def _stream_store(path: Path) -> None:
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("s", entities=["k"], sync="stream", features={"x": "BIGINT"}, entity_types={"k": "BIGINT"}))


@_quiet_log
def test_random_kills_of_push(tmp_path: Path) -> None:
    _stream_store(tmp_path / "s")
    assert _kill_loop(tmp_path, "push", 31, _stream_check, seed=14) > 3


@_quiet_log
def test_random_kills_of_a_producer_session(tmp_path: Path) -> None:
    _stream_store(tmp_path / "s")
    assert _kill_loop(tmp_path, "producer", 31, _stream_check, seed=15) > 3
