"""The online store: latest value per entity, idempotent upserts, TTL at read time."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

import fsnb
from fsnb.backends.sqlite_online import TS

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)



@pytest.fixture
def store(online_store):
    """Every test here runs against the SQLite and the Redis online store."""
    return online_store

def test_online_equals_offline_point_in_time_now_for_every_entity(store) -> None:
    rng = random.Random(7)
    rows = 3000
    frame = pl.DataFrame({
        "user_id": [rng.randrange(400) for _ in range(rows)],
        "region": [rng.choice(["eu", "us"]) for _ in range(rows)],
        # hours in the past (up to 60 days) and a few in the future, whole hours so TTL edges are clear
        "event_timestamp": [NOW - timedelta(hours=rng.randrange(-48, 24 * 60)) for _ in range(rows)],
        "clicks": [rng.randrange(100) for _ in range(rows)],
        "score": [rng.random() for _ in range(rows)],
        "vip": [rng.random() < 0.5 for _ in range(rows)],
        "name": [rng.choice(["a", "b", None]) for _ in range(rows)],
        "seen": [NOW - timedelta(days=rng.randrange(9)) for _ in range(rows)],
    })
    store.register(fsnb.FeatureView("u", entities=["user_id", "region"], ttl="30d"), frame)
    written = store.materialize()
    assert written["u"] > 0
    keys = frame.select("user_id", "region").unique().sort("user_id", "region")
    labels = keys.with_columns(event_timestamp=pl.lit(datetime.now(timezone.utc)))
    offline = store.get_historical_features(labels, ["u:*"])
    online = store.get_online_features(["u:*"], keys.to_dicts())
    assert online["user_id"] == keys["user_id"].to_list()
    expired = 0
    for f in ["clicks", "score", "vip", "name", "seen"]:
        assert online[f] == offline[f].to_list(), f
    expired = sum(v is None for v in online["clicks"])
    assert 0 < expired < len(keys)  # the TTL really cut some entities off


def test_unknown_entity_gives_none_and_order_is_kept(store) -> None:
    store.register(
        fsnb.FeatureView("s", entities=["user_id"]),
        pl.DataFrame({"user_id": [1, 2], "event_timestamp": [NOW, NOW], "x": [10, 20]}),
    )
    store.materialize()
    got = store.get_online_features(["s:x"], [{"user_id": 2}, {"user_id": 99}, {"user_id": 1}, {"user_id": 2}])
    assert got == {"user_id": [2, 99, 1, 2], "x": [20, None, 10, 20]}
    assert store.get_online_features(["s:x"], [{"user_id": 1}]) == {"user_id": [1], "x": [10]}


def test_upserts_never_replace_newer_values_and_are_idempotent(store) -> None:
    view = fsnb.FeatureView("s", entities=["k"])
    store.register(view, pl.DataFrame({"k": [1], "event_timestamp": [NOW], "x": [1]}))
    store.materialize()
    view = store.get_feature_view("s")
    newer = (1, 2_000_000_000_000_000, 0, 5, 3)
    older = (1, 1_000_000_000_000_000, 0, 9, 4)
    store.online.begin()
    store.online.write_rows(view, [newer, older, older, newer])
    store.online.commit()
    assert store.online.dump(view) == [(1, newer[1], 3)]


def test_ttl_is_enforced_at_read_time(store) -> None:
    store.register(
        fsnb.FeatureView("s", entities=["k"], ttl="2h"),
        pl.DataFrame({"k": [1, 2], "event_timestamp": [NOW - timedelta(hours=5), NOW - timedelta(minutes=30)], "x": [1, 2]}),
    )
    store.materialize()
    assert store.get_online_features(["s:x"], [{"k": 1}, {"k": 2}])["x"] == [None, 2]
    # the value is still stored: it is the read that hides it
    assert len(store.online.dump(store.get_feature_view("s"))) == 2


def test_batch_of_thousand_entities_is_one_query(store) -> None:
    store.register(
        fsnb.FeatureView("s", entities=["k"]),
        pl.DataFrame({"k": list(range(2000)), "event_timestamp": [NOW] * 2000, "x": list(range(2000))}),
    )
    store.materialize()
    rows = [{"k": i} for i in range(0, 2000, 2)]
    store.get_online_features(["s:x"], rows[:2])  # readers built before counting
    if hasattr(store.online, "con"):  # SQLite: count statements
        statements: list[str] = []
        store.online.con.set_trace_callback(statements.append)
        got = store.get_online_features(["s:x"], rows)
        store.online.con.set_trace_callback(None)
        trips = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
    else:  # Redis: count commands and pipelines sent
        sent = []
        original = store.online._call
        store.online._call = lambda fn, *a, **k: (sent.append(fn), original(fn, *a, **k))[1]
        got = store.get_online_features(["s:x"], rows)
        store.online._call = original
        trips = len(sent)
    assert got["x"] == list(range(0, 2000, 2))
    assert trips == 1


def test_offline_only_view_cannot_be_served(store) -> None:
    store.register(
        fsnb.FeatureView("s", entities=["k"], online=False),
        pl.DataFrame({"k": [1], "event_timestamp": [NOW], "x": [1]}),
    )
    assert store.materialize() == {}
    with pytest.raises(fsnb.FsnbError, match="offline-only"):
        store.get_online_features(["s:x"], [{"k": 1}])


def test_online_reads_see_another_process_materialize(tmp_path) -> None:
    a = fsnb.FeatureStore(tmp_path / "s")
    a.register(fsnb.FeatureView("s", entities=["k"]), pl.DataFrame({"k": [1], "event_timestamp": [NOW], "x": [1]}))
    b = fsnb.FeatureStore(tmp_path / "s")
    assert b.get_online_features(["s:x"], [{"k": 1}])["x"] == [None]
    a.materialize()
    assert b.get_online_features(["s:x"], [{"k": 1}])["x"] == [1]


def test_online_table_keeps_event_time_column() -> None:
    assert TS.startswith("_fsnb")
