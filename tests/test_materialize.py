"""Materialization: full and incremental (watermarks), atomic per view."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

import fsnb

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _events(keys, hours_ago, values) -> pl.DataFrame:
    return pl.DataFrame({
        "k": keys, "event_timestamp": [NOW - timedelta(hours=h) for h in hours_ago], "x": values,
    })



@pytest.fixture
def store(online_store):
    """Every test here runs against the SQLite and the Redis online store."""
    return online_store

def test_full_materialize_takes_latest_per_key_up_to_end(store) -> None:
    store.register(fsnb.FeatureView("s", entities=["k"]), _events([1, 1, 2, 2], [10, 5, 8, -3], [1, 2, 3, 4]))
    assert store.materialize() == {"s": 2}
    # key 2's newest row is in the future: not yet current
    assert store.get_online_features(["s:x"], [{"k": 1}, {"k": 2}])["x"] == [2, 3]
    store.materialize(end=NOW + timedelta(hours=4))
    assert store.get_online_features(["s:x"], [{"k": 2}])["x"] == [4]


def test_materialize_window_respects_start(store) -> None:
    store.register(fsnb.FeatureView("s", entities=["k"]), _events([1, 2], [50, 2], [1, 2]))
    store.materialize(start=NOW - timedelta(hours=10))
    assert store.get_online_features(["s:x"], [{"k": 1}, {"k": 2}])["x"] == [None, 2]
    with pytest.raises(fsnb.FsnbError, match="after end"):
        store.materialize(start=NOW, end=NOW - timedelta(days=1))


def test_incremental_uses_watermark_and_catches_late_rows(store) -> None:
    store.register(fsnb.FeatureView("s", entities=["k"]), _events([1, 2], [10, 10], [1, 2]))
    assert store.materialize_incremental() == {"s": 2}
    assert store.materialize_incremental() == {"s": 0}  # nothing new since the watermark
    # a late-arriving row: event time before the watermark, ingested after it
    store.ingest("s", _events([1], [1], [11]))
    assert store.materialize_incremental() == {"s": 1}
    # an old correction never overwrites a newer online value
    store.ingest("s", _events([1], [20], [99]))
    store.materialize_incremental()
    assert store.get_online_features(["s:x"], [{"k": 1}, {"k": 2}])["x"] == [11, 2]


def test_incremental_picks_up_rows_whose_time_has_come(store) -> None:
    store.register(fsnb.FeatureView("s", entities=["k"]), _events([1, 1], [10, -2], [1, 2]))
    store.materialize_incremental()
    assert store.get_online_features(["s:x"], [{"k": 1}])["x"] == [1]
    store.materialize_incremental(end=NOW + timedelta(hours=3))
    assert store.get_online_features(["s:x"], [{"k": 1}])["x"] == [2]


def test_materialize_failure_leaves_online_unchanged(store, monkeypatch) -> None:
    store.register(fsnb.FeatureView("s", entities=["k"]), _events(list(range(100)), [1] * 100, list(range(100))))
    store.materialize()
    store.ingest("s", _events(list(range(100)), [0] * 100, [v + 1000 for v in range(100)]))
    calls = {"n": 0}
    original = store.online.write_rows

    def failing(view, rows, *, fresh=False):
        calls["n"] += 1
        original(view, list(rows)[:10], fresh=fresh)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store.online, "write_rows", failing)
    with pytest.raises(fsnb.FsnbError, match="'s': disk on fire"):
        store.materialize()
    monkeypatch.undo()
    assert calls["n"] == 1
    assert store.get_online_features(["s:x"], [{"k": i} for i in range(100)])["x"] == list(range(100))
    assert store.online.watermark("s")[0] is not None


def test_materialize_shows_progress_on_long_runs(store, capsys) -> None:
    n = 120_000
    store.register(fsnb.FeatureView("s", entities=["k"]), pl.DataFrame({
        "k": list(range(n)), "event_timestamp": [NOW - timedelta(hours=1)] * n, "x": list(range(n)),
    }))
    assert store.materialize() == {"s": n}
    assert "materialize s" in capsys.readouterr().err
