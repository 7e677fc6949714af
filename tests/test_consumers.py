"""What the consumers of a batch (online SQLite/Redis, offline DuckDB, the log) refuse is
refused before anything is written, and one bad entry or view never blocks the others."""

from __future__ import annotations

import datetime as dt
import sqlite3
import warnings
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import fsnb
from fsnb.backends.sqlite_log import encode_batch
from fsnb.errors import FsnbError, StoreError
from fsnb.sync import push as push_module
from fsnb.sync.log_state import EntrySetAside, view_id

T0 = dt.datetime(2024, 3, 1)


def batch(keys: list[int], values: list[int], **extra: object) -> pl.DataFrame:
    n = len(keys)
    return pl.DataFrame({"k": keys, "event_timestamp": [T0 + dt.timedelta(seconds=i) for i in range(n)], "x": values, **extra})


def two_stream_views(store: fsnb.FeatureStore) -> None:
    for name in ("a", "b"):
        store.register(fsnb.FeatureView(name, entities=["k"], sync="stream"))
    store.push("b", batch([1], [10]))


def one_line_error(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    assert isinstance(excinfo.value, FsnbError), repr(excinfo.value)
    text = str(excinfo.value)
    assert text and "\n" not in text
    return text


BAD_BATCHES = {
    "online time column name": lambda: batch([1], [1], _fsnb_ts=[1]),
    "online created column name, other case": lambda: batch([1], [1], _FSNB_CREATED=[1]),
    "offline sequence column name": lambda: batch([1], [1], _fsnb_seq=[1]),
    "scratch column name": lambda: batch([1], [1], __fsnb_idx=[1]),
    "2,000 features": lambda: pl.DataFrame(
        {"k": [1], "event_timestamp": [T0], **{f"f{i}": [i] for i in range(2000)}}
    ),
    "same name but for case": lambda: batch([1], [1], X=[2]),
    "key column twice but for case": lambda: batch([1], [1], K=[2]),
    "unsigned integer beyond BIGINT": lambda: pa.table(
        {"k": [1], "event_timestamp": pa.array([T0]), "x": pa.array([2**63 + 5], pa.uint64())}
    ),
    "empty column name": lambda: pa.table({"k": [1], "event_timestamp": pa.array([T0]), "": [1]}),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_a_batch_a_consumer_would_refuse_is_refused_before_the_append(online_store: fsnb.FeatureStore, case: str) -> None:
    store = online_store
    two_stream_views(store)
    end = store.parts.log.end_offset()
    with pytest.raises(FsnbError) as excinfo:
        store.push("a", BAD_BATCHES[case]())
    one_line_error(excinfo)
    assert store.parts.log.end_offset() == end  # nothing appended
    # ...so nothing blocks the other views (on main the entry blocked every later push)
    store.push("b", batch([2], [20]))
    assert store.sync()["online"] == 0
    assert store.get_online_features("b:x", [{"k": 1}, {"k": 2}])["x"] == [10, 20]
    assert store.freshness()["set_aside"].to_list() == [0, 0]


@pytest.mark.parametrize("case", [c for c in BAD_BATCHES if c != "unsigned integer beyond BIGINT"])
def test_register_and_ingest_refuse_what_a_store_cannot_hold(store: fsnb.FeatureStore, case: str) -> None:
    store.register(fsnb.FeatureView("b", entities=["k"]), batch([1], [1]))
    with pytest.raises(FsnbError) as excinfo:
        store.register(fsnb.FeatureView("a", entities=["k"]), BAD_BATCHES[case]())
    one_line_error(excinfo)
    assert store.registry.names() == ["b"]
    with pytest.raises(FsnbError) as excinfo:
        store.ingest("b", BAD_BATCHES[case]())
    one_line_error(excinfo)
    assert store.read("b").height == 1


@pytest.mark.parametrize(
    "view",
    [
        dict(entities=["k"], features={"_fsnb_created": "BIGINT"}),
        dict(entities=["_fsnb_ts"], features={"x": "BIGINT"}),
        dict(entities=["k"], timestamp_field="_FSNB_SEQ", features={"x": "BIGINT"}),
        dict(entities=["k"], features={f"f{i}": "BIGINT" for i in range(1997)}),
    ],
)
def test_a_definition_a_store_cannot_hold_is_refused_without_data(store: fsnb.FeatureStore, view: dict[str, object]) -> None:
    with pytest.raises(FsnbError) as excinfo:
        store.register(fsnb.FeatureView("a", **view))  # type: ignore[arg-type]
    one_line_error(excinfo)
    assert store.registry.names() == []


def test_a_wide_view_is_fine_offline_only(store: fsnb.FeatureStore) -> None:
    wide = pl.DataFrame({"k": [1], "event_timestamp": [T0], **{f"f{i}": [i] for i in range(2000)}})
    store.register(fsnb.FeatureView("w", entities=["k"], online=False), wide)
    assert store.read("w").width == 2002
    with pytest.raises(FsnbError, match="online=False"):
        store.register(fsnb.FeatureView("w", entities=["k"], online=True))


def test_an_entry_that_cannot_be_applied_is_set_aside_and_the_others_go_on(online_store: fsnb.FeatureStore) -> None:
    store = online_store
    store.register(fsnb.FeatureView("a", entities=["k"], sync="stream", features={"x": "BIGINT"}))
    store.push("a", batch([1], [1]))
    store.register(fsnb.FeatureView("b", entities=["k"], sync="stream"))
    # An entry no validation would have let through (a store written by an older fsnb,
    # another writer of the log): 'x' is text in a BIGINT view.
    bad = pa.table({"k": [2], "event_timestamp": pa.array([T0]), "x": ["not a number"]})
    log = store.parts.log
    bad_offset = log.append("a", store.version_of("a"), encode_batch(bad), 1, view_id(store.registry, "a") or "")
    with pytest.warns(EntrySetAside, match=f"entry {bad_offset} \\('a'"):
        store.push("b", batch([1], [10]))  # on main: raised, and so did every later push and sync
    store.push("b", batch([2], [20]))
    assert store.get_online_features("b:x", [{"k": 1}, {"k": 2}])["x"] == [10, 20]
    assert store.read("b").height == 2
    assert store.get_online_features("a:x", [{"k": 1}, {"k": 2}])["x"] == [1, None]
    assert store.read("a").height == 1
    assert [(r["consumer"], r["offset"]) for r in store.set_aside()] == [("online", bad_offset), ("offline", bad_offset)]
    fresh = store.freshness()
    assert dict(zip(fresh["view"], fresh["set_aside"], strict=True)) == {"a": 2, "b": 0}
    assert dict(zip(fresh["view"], fresh["online_lag"], strict=True)) == {"a": 0, "b": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.sync()["online"] == 0


def test_a_failure_every_entry_shares_sets_nothing_aside(store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store failing (not the entry): the consumer stops, commits nothing, retries later."""
    two_stream_views(store)
    committed = store.parts.log.committed("online")

    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store.online, "write_rows", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EntrySetAside)
        with pytest.raises(StoreError) as excinfo:
            store.push("a", batch([1], [1]))
        with pytest.raises(StoreError):
            store.push("b", batch([2], [2]))
    assert "disk I/O error" in one_line_error(excinfo)
    assert store.parts.log.committed("online") == committed
    monkeypatch.undo()
    assert store.sync()["online"] == 2
    assert store.set_aside() == []
    assert store.get_online_features("a:x", [{"k": 1}])["x"] == [1]
    assert store.get_online_features("b:x", [{"k": 1}, {"k": 2}])["x"] == [10, 2]


def test_a_failing_view_does_not_stop_materialize_of_the_others(online_store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store = online_store
    for name in ("a", "b", "c"):
        store.register(fsnb.FeatureView(name, entities=["k"]), batch([1], [ord(name)]))
    original = store.online.ensure_table

    def refuse_b(view: fsnb.FeatureView) -> None:
        if view.name == "b":
            raise sqlite3.OperationalError("too many columns on ov__b")
        original(view)

    monkeypatch.setattr(store.online, "ensure_table", refuse_b)
    with pytest.raises(FsnbError) as excinfo:
        store.materialize(end=T0 + dt.timedelta(days=1))
    text = one_line_error(excinfo)
    assert "'b'" in text and "too many columns" in text and "'a'" not in text
    assert excinfo.value.written == {"a": 1, "c": 1}  # type: ignore[attr-defined]
    assert store.get_online_features(["a:x"], [{"k": 1}])["x"] == [ord("a")]
    assert store.get_online_features(["c:x"], [{"k": 1}])["x"] == [ord("c")]
    monkeypatch.undo()
    assert store.materialize(end=T0 + dt.timedelta(days=1)) == {"a": 1, "b": 1, "c": 1}


def test_an_unapplied_push_never_reaches_a_new_view_of_the_same_name(
    online_store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = online_store
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream"))
    with monkeypatch.context() as m:
        m.setattr(push_module, "apply_pending", lambda *args, **kwargs: 0)  # the pushing process dies
        store.push("v", batch([1], [111]))
    store.delete_feature_view("v")
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream"))
    store.push("v", pl.DataFrame({"k": ["new"], "event_timestamp": [T0], "x": [7]}))
    store.sync()
    assert store.read("v").select("k", "x").rows() == [("new", 7)]
    assert store.get_online_features("v:x", [{"k": "new"}])["x"] == [7]
    assert store.get_online_features("v:x", [{"k": "1"}])["x"] == [None]
    # the identity survives new versions: a push to version 1 still applies after version 2
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream", description="v2"))
    store.push("v", pl.DataFrame({"k": ["new"], "event_timestamp": [T0 + dt.timedelta(1)], "x": [8]}))
    assert store.get_online_features("v:x", [{"k": "new"}])["x"] == [8]


def test_a_log_from_before_view_ids_is_still_applied(tmp_path: Path) -> None:
    """Entries written without a view id (an older fsnb) belong to the view of their name."""
    store = fsnb.FeatureStore(tmp_path / "s")
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream"))
    store.push("v", batch([1], [1]))
    log = store.parts.log
    log.append("v", 1, encode_batch(batch([2], [2]).to_arrow()), 1)
    store.sync()
    assert store.get_online_features("v:x", [{"k": 2}])["x"] == [2]
    store.close()


def test_versions_cannot_widen_the_online_table_past_what_it_holds(store: fsnb.FeatureStore) -> None:
    """A new version adds its features to the online table's columns: the sum is checked."""
    store.register(fsnb.FeatureView("v", entities=["k"], features={f"a{i}": "BIGINT" for i in range(1000)}))
    store.materialize()  # an empty view: nothing to copy, no table yet
    store.ingest("v", pl.DataFrame({"k": [1], "event_timestamp": [T0], **{f"a{i}": [i] for i in range(1000)}}))
    store.materialize(end=T0 + dt.timedelta(days=1))
    with pytest.raises(FsnbError, match="kept from earlier versions") as excinfo:
        store.register(fsnb.FeatureView("v", entities=["k"], features={f"b{i}": "BIGINT" for i in range(1000)}))
    one_line_error(excinfo)
    assert store.version_of("v") == 1
