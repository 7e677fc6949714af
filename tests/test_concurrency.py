"""Two processes on one store (one ingesting, one reading online and the registry), and
one store object shared by threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import fsnb

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent(
    """
    import sys, datetime as dt, polars as pl, fsnb
    store = fsnb.FeatureStore(sys.argv[1])
    offset = int(sys.argv[2])
    for i in range(25):
        frame = pl.DataFrame({
            "k": list(range(200)),
            "event_timestamp": [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=offset + i)] * 200,
            "x": [offset + i] * 200,
        })
        assert store.ingest("v", frame) == 200
        store.materialize_incremental(end=dt.datetime(2030, 1, 1), progress=False)
    print("writer ok", flush=True)
    """
)

READER = textwrap.dedent(
    """
    import sys, time, fsnb
    store = fsnb.FeatureStore(sys.argv[1])
    reads = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = store.registry.names()
        assert names == ["v"], names
        got = store.get_online_features(["v:x"], [{"k": i} for i in range(0, 200, 7)])
        assert len(got["x"]) == 29
        reads += 1
        if reads >= 300 and all(v is not None for v in got["x"]):
            break
    print("reader ok", reads, flush=True)
    """
)


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_writer_and_reader_processes_share_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"], features={"x": "BIGINT"}))
    writer = _start(WRITER, str(path), "0")
    reader = _start(READER, str(path))
    w_out, w_err = writer.communicate(timeout=240)
    r_out, r_err = reader.communicate(timeout=240)
    assert writer.returncode == 0, w_err
    assert reader.returncode == 0, r_err
    assert "writer ok" in w_out and "reader ok" in r_out
    with fsnb.FeatureStore(path) as store:
        assert len(store.read("v")) == 25 * 200
        assert store.get_online_features(["v:x"], [{"k": 5}])["x"] == [24]


def test_two_writers_are_serialized(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"], features={"x": "BIGINT"}))
    writers = [_start(WRITER, str(path), str(offset)) for offset in (0, 1000)]
    for w in writers:
        _out, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    with fsnb.FeatureStore(path) as store:
        frame = store.read("v")
        assert len(frame) == 2 * 25 * 200
        assert frame.group_by("x").len()["len"].to_list() == [200] * 50


def test_a_held_store_gives_a_clear_error_after_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"], features={"x": "BIGINT"}))
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time, fsnb
            store = fsnb.FeatureStore(sys.argv[1])
            with store.offline.connect():
                print("holding", flush=True)
                time.sleep(30)
        """), str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        impatient = fsnb.FeatureStore(path, lock_timeout=0.5)
        frame = pl.DataFrame({"k": [1], "event_timestamp": [datetime(2024, 1, 1)], "x": [1]})
        with pytest.raises(fsnb.StoreBusy, match=r"held by another process \(PID \d+\)"):
            impatient.ingest("v", frame)
        # the registry and the online store stay readable meanwhile
        assert impatient.registry.names() == ["v"]
        assert impatient.get_online_features(["v:x"], [{"k": 1}]) == {"k": [1], "x": [None]}
    finally:
        holder.kill()
        holder.wait()



# -- one store object, many threads ----------------------------------------------------
KEYS = 20_000  # a materialization long enough for readers to run while it writes


def _rounds_frame(round_: int, keys: int = KEYS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "k": list(range(keys)),
            "event_timestamp": [datetime(2024, 1, 1) + timedelta(minutes=round_)] * keys,
            "x": [round_] * keys,
        }
    )


def test_one_store_object_serves_reader_threads_while_it_writes(online_store: fsnb.FeatureStore) -> None:
    """Reader threads (online, historical, listing) on the object the main thread
    ingests, materializes and pushes through: no error, and only committed values
    (on one shared SQLite connection, readers saw half a materialization, or failed
    with "not an error" / "another row available")."""
    store = online_store
    store.register(fsnb.FeatureView("m", entities=["k"]), _rounds_frame(0))
    store.register(fsnb.FeatureView("s", entities=["k"], sync="stream"))
    store.push("s", _rounds_frame(0, 50))
    store.materialize(end=datetime(2030, 1, 1), progress=False)
    labels = pl.DataFrame({"k": [1, 2, 3], "event_timestamp": [datetime(2025, 1, 1)] * 3})
    spread = [{"k": k} for k in range(0, KEYS, 997)]
    rounds = 3
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def reader(n: int) -> None:
        try:
            while not stop.is_set():
                many = store.get_online_features("m:x", spread)["x"]
                assert len(set(many)) == 1 and 0 <= many[0] < rounds, many  # one whole materialization
                one = store.get_online_features(["m:x"], [{"k": n}])["x"]
                assert one[0] is not None and 0 <= one[0] < rounds, one
                reads[0] += 1
                if n:
                    continue  # the others hammer the online store; this one does the rest
                streamed = store.get_online_features("s:x", [{"k": k} for k in range(10)])["x"]
                assert len(set(streamed)) == 1 and 0 <= streamed[0] < rounds, streamed  # one whole push
                assert [v.name for v in store.list_feature_views()] == ["m", "s"]
                hist = store.get_historical_features(labels, ["m:x"])
                assert hist.height == 3 and all(0 <= v < rounds for v in hist["x"]), hist
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        for r in range(1, rounds):
            store.ingest("m", _rounds_frame(r))
            store.materialize(end=datetime(2030, 1, 1), progress=False)
            store.push("s", _rounds_frame(r, 50))
            if errors:
                break
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, repr(errors[0])
    assert reads[0] > 0
    assert store.get_online_features("m:x", [{"k": 3}])["x"] == [rounds - 1]
    assert store.get_online_features("s:x", [{"k": 3}])["x"] == [rounds - 1]
