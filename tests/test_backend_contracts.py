"""The backend contracts (fsnb/backends/contracts.py), checked by behaviour: the same
tests run against every online backend (SQLite, Redis) and every feature log (SQLite,
Redis). A new backend joins by adding itself to the fixtures below."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import fsnb
from fsnb.backends.contracts import FeatureLog, OnlineBackend, decode_batch, encode_batch
from fsnb.errors import StoreError

HOUR_US = 3_600_000_000
NOW_US = 1_700_000_000 * 1_000_000


def _view(**kwargs: object) -> fsnb.FeatureView:
    defaults: dict[str, object] = {"entities": ["k"], "features": {"x": "BIGINT", "y": "VARCHAR"}, "entity_types": {"k": "BIGINT"}}
    defaults.update(kwargs)
    return fsnb.FeatureView("v", **defaults)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "redis"])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineBackend]:
    backend: OnlineBackend
    if request.param == "sqlite":
        from fsnb.backends.sqlite_online import OnlineStore

        backend = OnlineStore(tmp_path / "online.sqlite")
    else:
        from fsnb.backends.redis_online import RedisOnlineStore

        backend = RedisOnlineStore(request.getfixturevalue("redis_url"), namespace=uuid.uuid4().hex[:12])
    yield backend
    backend.close()


@pytest.fixture(params=["sqlite", "redis"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureLog]:
    backend: FeatureLog
    if request.param == "sqlite":
        from fsnb.backends.sqlite_log import SqliteLog

        backend = SqliteLog(tmp_path)
    else:
        from fsnb.backends.redis_log import RedisLog

        backend = RedisLog(request.getfixturevalue("redis_url"), namespace=uuid.uuid4().hex[:12], directory=tmp_path)
    yield backend
    backend.close()


def _write(online: OnlineBackend, view: fsnb.FeatureView, rows: list[tuple[object, ...]]) -> None:
    online.begin()
    online.write_rows(view, rows)
    online.commit()


# -- the online store ------------------------------------------------------------------
def test_online_an_unknown_view_is_empty(online: OnlineBackend) -> None:
    assert online.columns("v") == []
    assert online.count("v") == 0
    assert online.is_empty("v")
    assert online.latest_event_us("v") is None
    assert online.watermark("v") == (None, None)
    assert online.last_update("v") is None
    assert online.dump(_view()) == []


def test_online_upserts_keep_the_newest_value(online: OnlineBackend) -> None:
    view = _view()
    online.ensure_table(view)
    assert {"x", "y"} <= set(online.columns("v"))
    assert online.is_empty("v")
    _write(online, view, [(1, NOW_US, 0, 1, 10, "a"), (2, NOW_US - HOUR_US, 0, 2, 20, "b")])
    # Older (event time), same time but older created, and an exact replay: none replace.
    _write(online, view, [(1, NOW_US - 1, 0, 9, 11, "old"), (2, NOW_US - HOUR_US, -1, 9, 21, "older")])
    _write(online, view, [(1, NOW_US, 0, 1, 10, "a")])
    # Same event and created time, later sequence: replaces.
    _write(online, view, [(2, NOW_US - HOUR_US, 0, 3, 22, "c")])
    assert sorted(online.dump(view)) == [(1, NOW_US, 10, "a"), (2, NOW_US - HOUR_US, 22, "c")]
    assert online.count("v") == 2
    assert not online.is_empty("v")
    assert online.latest_event_us("v") == NOW_US


def test_online_reader_serves_values_missing_keys_and_ttl(online: OnlineBackend) -> None:
    view = _view(ttl=timedelta(minutes=30))
    online.ensure_table(view)
    _write(online, view, [(1, NOW_US, 0, 1, 10, "a"), (2, NOW_US - HOUR_US, 0, 2, 20, "b")])
    reader = online.reader(view, ["x", "y"], ["x", "y"])
    assert reader.exists
    assert reader.read([[1, 2, 3]], NOW_US) == [[10, None, None], ["a", None, None]]  # 2 expired, 3 absent
    assert reader.read([[1]], NOW_US) == [[10], ["a"]]
    assert reader.read([[2]], NOW_US - HOUR_US) == [[20], ["b"]]
    assert online.reader(view, ["z"], ["z"]).exists is False
    assert online.reader(view, ["z"], ["z"]).read([[1, 2]], NOW_US) == [[None, None]]


def test_online_rollback_leaves_values_and_watermark(online: OnlineBackend) -> None:
    view = _view()
    online.ensure_table(view)
    _write(online, view, [(1, NOW_US, 0, 1, 10, "a")])
    online.begin()
    online.set_watermark("v", NOW_US, 2)
    online.commit()
    assert online.watermark("v") == (NOW_US, 2)
    assert online.last_update("v") is not None
    online.begin()
    online.write_rows(view, [(1, NOW_US + 1, 0, 5, 99, "new"), (7, NOW_US, 0, 6, 70, "g")])
    online.set_watermark("v", NOW_US + 1, 7)
    online.rollback()
    assert online.dump(view) == [(1, NOW_US, 10, "a")]
    assert online.watermark("v") == (NOW_US, 2)


def test_online_new_features_and_drop(online: OnlineBackend) -> None:
    view = _view()
    online.ensure_table(view)
    _write(online, view, [(1, NOW_US, 0, 1, 10, "a")])
    wider = _view(features={"x": "BIGINT", "y": "VARCHAR", "z": "DOUBLE"})
    online.ensure_table(wider)
    online.forget_columns()
    assert "z" in online.columns("v")
    assert online.reader(wider, ["x", "z"], ["x", "z"]).read([[1]], NOW_US) == [[10], [None]]
    online.set_watermark("v", NOW_US, 2)
    online.drop("v")
    assert online.columns("v") == []
    assert online.count("v") == 0
    assert online.watermark("v") == (None, None)
    assert online.reader(view, ["x"], ["x"]).read([[1]], NOW_US) == [[None]]


# -- the feature log -------------------------------------------------------------------
def _payload(n: int) -> bytes:
    return encode_batch(pa.table({"k": list(range(n))}))


def test_log_starts_empty(log: FeatureLog) -> None:
    assert isinstance(log.log_id, str) and log.log_id
    assert isinstance(log.reuses_appended, bool)
    assert (log.end_offset(), log.start_offset(), log.size()) == (0, 1, 0)
    assert log.read_from(1) == []
    assert log.pending(0) == []
    assert log.committed("online") == log.committed("offline") == 0
    assert log.last_appended_us("v") is None
    assert log.first_offset_since(0) is None
    assert log.get_setting("retention") is None


def test_log_appends_in_order_and_reads_back(log: FeatureLog) -> None:
    offsets = [log.append("v", 1, _payload(2), 2, "id-v"), log.append("w", 3, _payload(1), 1), log.append("v", 1, _payload(3), 3, "id-v")]
    assert offsets == [1, 2, 3]
    assert (log.end_offset(), log.start_offset(), log.size()) == (3, 1, 3)
    entries = log.read_from(2)
    assert [(e.offset, e.view, e.version, e.rows, e.view_id) for e in entries] == [(2, "w", 3, 1, ""), (3, "v", 1, 3, "id-v")]
    assert decode_batch(entries[1].payload).column("k").to_pylist() == [0, 1, 2]
    assert entries[1].table().num_rows == 3
    assert [e.offset for e in log.read_from(1, limit=2)] == [1, 2]
    assert log.pending(1) == [(2, "w", 1), (3, "v", 3)]
    last = log.last_appended_us("v")
    assert last is not None and log.first_offset_since(last) in (1, 3)
    assert log.first_offset_since(last + 10**9) is None


def test_log_commits_never_move_back(log: FeatureLog) -> None:
    for _ in range(3):
        log.append("v", 1, _payload(1), 1)
    with log.consumer_lock("online"), log.consumer_lock("online"):  # re-entrant in one thread
        assert [e.offset for e in log.read_from(1)] == [1, 2, 3]
        log.commit("online", 2)
        log.commit("online", 1)
    assert log.committed("online") == 2
    assert log.committed("offline") == 0
    with log.consumer_lock("online"):
        assert [e.offset for e in log.read_from(log.committed("online") + 1)] == [3]


def test_log_truncation_never_reuses_offsets(log: FeatureLog) -> None:
    for _ in range(3):
        log.append("v", 1, _payload(1), 1)
    assert log.truncate_before(3) == 2
    assert (log.start_offset(), log.end_offset(), log.size()) == (3, 3, 1)
    assert [e.offset for e in log.read_from(1)] == [3]
    assert log.append("v", 1, _payload(1), 1) == 4
    log.truncate_before(5)
    assert (log.start_offset(), log.end_offset(), log.size()) == (5, 4, 0)


def test_log_settings(log: FeatureLog) -> None:
    log.set_setting("retention", "a")
    log.set_setting("retention", "b")
    assert log.get_setting("retention") == "b"
    assert log.get_setting("other") is None


# -- Redis without its client package --------------------------------------------------
def test_a_missing_redis_package_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    (tmp_path / "fsnb.toml").write_text('[online]\nurl = "redis://:secret@localhost:1/0"\n')
    with pytest.raises(StoreError) as caught:
        fsnb.FeatureStore(tmp_path)
    message = str(caught.value)
    assert "pip install fsnb[redis]" in message
    assert "\n" not in message
    assert "secret" not in message
    (tmp_path / "fsnb.toml").write_text('[log]\nurl = "redis://localhost:1/0"\n')
    with pytest.raises(StoreError, match=r"pip install fsnb\[redis\]"):
        fsnb.FeatureStore(tmp_path)


# -- where the backends sit ------------------------------------------------------------
_ABOVE = ("fsnb.store", "fsnb.parts", "fsnb.sync", "fsnb.notebook", "fsnb.leakage", "fsnb.server", "fsnb.export", "fsnb.cli", "fsnb.demo", "fsnb.retrieval")


def _imports(path: Path) -> set[str]:
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_backends_import_nothing_above_them_and_not_each_other() -> None:
    folder = Path(fsnb.__file__).parent / "backends"
    offenders = []
    for path in sorted(folder.glob("*.py")):
        for module in _imports(path):
            if module.startswith(_ABOVE):
                offenders.append(f"{path.name} imports {module}")
            # Shared pieces live in contracts, online_values, consumer_locks, redis_common:
            # one backend never reaches into another's module.
            if path.stem.startswith("redis_") and module.startswith(("fsnb.backends.sqlite_", "fsnb.backends.duckdb_")):
                offenders.append(f"{path.name} imports {module}")
            if path.stem.startswith("sqlite_") and module.startswith(("fsnb.backends.redis_", "fsnb.backends.duckdb_")):
                offenders.append(f"{path.name} imports {module}")
    assert offenders == []
