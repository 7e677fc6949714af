"""Offline rows, the registry version they belong to and the statistics commit together
(fsnb.commit); a failure after the commit point is a warning, repaired at the next open."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

import fsnb
from fsnb.backends import duckdb_write
from fsnb.commit import RegistryBehind
from fsnb.errors import SchemaMismatch, StoreError
from fsnb.registry import Registry


def _batch(i: int, keys: range = range(10)) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "k": list(keys),
            "event_timestamp": [datetime(2024, 1, 1) + timedelta(hours=i, seconds=k) for k in keys],
            "x": [i * 1000 + k for k in keys],
        }
    )


def _disk_full(*_: Any, **__: Any) -> None:
    raise sqlite3.OperationalError("database or disk is full")


def _assert_stats_exact(store: fsnb.FeatureStore, name: str) -> None:
    recount = store.offline.stats(store.get_feature_view(name))
    mirrored = store.stats(name)
    assert {k: mirrored.get(k) for k in recount} == recount


def test_rekey_is_refused_when_the_mirrored_count_is_stale(tmp_path: Path) -> None:
    # A kill after an ingest's commit (old code: before its statistics) left rows 0 in the
    # registry; the guard must ask the offline table, not the mirror.
    with fsnb.FeatureStore(tmp_path / "s") as store:
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(0))
        store.registry.set_stats("v", {"rows": 0, "entities": 0})
        rekeyed = _batch(1).rename({"k": "j"})
        with pytest.raises(SchemaMismatch, match="re-keyed"):
            store.register(fsnb.FeatureView("v", entities=["j"]), rekeyed)
        with pytest.raises(SchemaMismatch, match="re-keyed"):
            store.register(fsnb.FeatureView("v", entities=["j"]))
        assert store.version_of("v") == 1
        assert store.read("v")["k"].null_count() == 0 and len(store.read("v")) == 10


def test_rekey_of_a_view_without_rows_is_allowed(tmp_path: Path) -> None:
    with fsnb.FeatureStore(tmp_path / "s") as store:
        store.register(fsnb.FeatureView("v", entities=["k"]))
        store.registry.set_stats("v", {"rows": 5})  # a wrong mirror does not block it either
        reg = store.register(fsnb.FeatureView("v", entities=["j"]), _batch(0).rename({"k": "j"}))
        assert reg.version == 2 and reg.stats["rows"] == 10


def test_ingest_reports_committed_rows_when_the_registry_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]))  # no schema: the first ingest publishes one
        with monkeypatch.context() as m:
            m.setattr(Registry, "finish_write", _disk_full, raising=False)
            m.setattr(Registry, "set_stats", _disk_full)
            with pytest.warns(RegistryBehind, match="stored"):
                assert store.ingest("v", _batch(0)) == 10
            # Before the commit point a failure is an error, and nothing is written.
            with pytest.raises(StoreError, match=r"nothing written to 'v'.*disk is full"):
                store.ingest("v", _batch(1))
        assert len(store.read("v")) == 10
        # The next write of this process finishes the unfinished ones first.
        assert store.ingest("v", _batch(2)) == 10
        assert len(store.read("v")) == 20
        assert store.registry.pending_writes() == []
        assert store.get_feature_view("v").features is not None
        _assert_stats_exact(store, "v")


def test_register_new_version_survives_a_failed_mirror_and_is_published_at_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(0))
        with monkeypatch.context() as m:
            m.setattr(Registry, "finish_write", _disk_full, raising=False)
            with pytest.warns(RegistryBehind):
                reg = store.register(fsnb.FeatureView("v", entities=["k"], description="two"), _batch(1))
        assert (reg.version, reg.rows_written) == (2, 10)
        assert store.version_of("v") == 1  # not yet published: readers see the old version
        reader = Registry(path / "registry.sqlite", readonly=True)
        assert reader.latest("v").version == 1
        reader.close()
    with fsnb.FeatureStore(path) as store:  # opening finds the pending write, and its rows committed
        assert store.version_of("v") == 2
        assert store.get_feature_view("v").description == "two"
        assert store.registry.pending_writes() == []
        _assert_stats_exact(store, "v")


def test_replace_drop_of_online_values_failing_after_commit_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fsnb.FeatureStore(tmp_path / "s") as store:
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(0))
        store.materialize(end=datetime(2030, 1, 1), progress=False)
        monkeypatch.setattr(type(store.online), "drop", _disk_full)
        with pytest.warns(RegistryBehind, match="online"):
            reg = store.register(fsnb.FeatureView("v", entities=["k"]), _batch(1), replace=True)
        assert reg.rows_written == 10
        assert sorted(store.read("v")["x"].to_list()) == [1000 + k for k in range(10)]


def test_a_failed_offline_write_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(0))
        stats = store.stats("v")

        def fail(*_: Any, **__: Any) -> None:
            raise duckdb.IOException("IO Error: No space left on device")

        monkeypatch.setattr(duckdb_write, "_next_stats", fail)
        with pytest.raises(duckdb.IOException):
            store.register(fsnb.FeatureView("v", entities=["k"], description="two"), _batch(1))
        with pytest.raises(duckdb.IOException):
            store.ingest("v", _batch(2))
        assert store.version_of("v") == 1
        assert store.registry.pending_writes() == []
        assert len(store.read("v")) == 10
        assert store.stats("v") == stats


def test_statistics_are_incremental_and_equal_a_recount(tmp_path: Path) -> None:
    with fsnb.FeatureStore(tmp_path / "s") as store:
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(5))
        store.ingest("v", _batch(5))  # exact duplicates: nothing new
        store.ingest("v", _batch(1, range(5, 15)))  # earlier times, half new keys
        store.ingest("v", _batch(9, range(0, 3)))
        _assert_stats_exact(store, "v")
        assert store.stats("v")["entities"] == 15 and store.stats("v")["rows"] == 23
        # The counted keys live in a keys table, maintained by each write (no recount).
        with store.offline.connect() as con:
            (keys,) = con.execute('SELECT count(*) FROM "_fsnb_keys__v"').fetchall()[0]
        assert keys == 15
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(2, range(3)), replace=True)
        _assert_stats_exact(store, "v")
        assert store.stats("v")["rows"] == 3
        store.delete_feature_view("v")
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(0, range(4)))
        _assert_stats_exact(store, "v")


def test_a_store_without_counted_statistics_is_counted_once(tmp_path: Path) -> None:
    # An older store's meta table has no statistics (NULL): the next write counts them.
    path = tmp_path / "s"
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("v", entities=["k"]), _batch(0))
        store.ingest("v", _batch(1, range(5, 12)))
    con = duckdb.connect(str(path / "offline.duckdb"))
    con.execute('UPDATE _fsnb_offline_meta SET "rows" = NULL, entities = NULL')
    con.execute('DROP TABLE "_fsnb_keys__v"')
    con.close()
    with fsnb.FeatureStore(path) as store:
        store.ingest("v", _batch(2, range(10, 20)))
        _assert_stats_exact(store, "v")
        assert store.stats("v")["entities"] == 20
