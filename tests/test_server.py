"""The jupyter-server endpoint behind the JupyterLab sidebar (fsnb/server.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

# pytest-jupyter's server fixtures (jp_fetch, jp_serverapp, ...), imported here rather than
# registered as a plugin so that their autouse fixtures only wrap this module's tests.
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import HTTPClientError

import fsnb

ROOT_SRC = Path(__file__).resolve().parents[1]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    from traitlets.config import Config

    return Config({"ServerApp": {"jpserver_extensions": {"fsnb": True}}})


def events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [42, 42, 42, 17],
            "event_timestamp": [datetime(2024, 3, 1), datetime(2024, 3, 4), datetime(2024, 3, 7), datetime(2024, 2, 10)],
            "login_count": [2, 5, 9, 1],
            "avg_purchase": [10.0, 12.5, 30.0, 5.0],
        }
    )


@pytest.fixture
def root_store(jp_root_dir: Path) -> fsnb.FeatureStore:
    """A store in a notebook folder below the server root, with two views and a training set."""
    store = fsnb.FeatureStore(jp_root_dir / "project" / ".fsnb")
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), events())
    store.register(
        fsnb.FeatureView("clicks", entities=["user_id"], online=False, description="raw clicks"),
        pl.DataFrame({"user_id": [1], "event_timestamp": [datetime(2024, 1, 1)], "clicks": [3]}),
    )
    store.materialize()
    labels = pl.DataFrame({"user_id": [42], "event_timestamp": [datetime(2024, 3, 3)]})
    frame = store.get_historical_features(labels, ["user_stats:login_count"])
    store.record_training_set("train", frame, ["user_stats:login_count"])
    yield store
    store.close()


def run(jp_asyncio_loop: Any, coro: Any) -> Any:
    return jp_asyncio_loop.run_until_complete(coro)


def get_json(jp_asyncio_loop: Any, jp_fetch: Any, path: str, **kwargs: Any) -> dict[str, Any]:
    response = run(jp_asyncio_loop, jp_fetch("fsnb", "api", "store", params={"path": path}, **kwargs))
    assert response.code == 200
    return json.loads(response.body)


def error_of(jp_asyncio_loop: Any, jp_fetch: Any, path: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        run(jp_asyncio_loop, jp_fetch("fsnb", "api", "store", params={"path": path}, **kwargs))
    body = info.value.response.body if info.value.response is not None else b"{}"
    return info.value.code, json.loads(body or b"{}").get("message", "")


def test_listing_matches_the_store(jp_asyncio_loop, jp_fetch, root_store):
    data = get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")
    assert data["path"] == "project/.fsnb"
    assert [v["name"] for v in data["views"]] == sorted(v.name for v in root_store.list_feature_views())
    views = {v["name"]: v for v in data["views"]}
    user = views["user_stats"]
    expected = root_store.get_feature_view("user_stats")
    assert user["version"] == root_store.version_of("user_stats") == 1
    assert user["entities"] == [{"name": "user_id", "type": "BIGINT"}]
    assert user["features"] == [{"name": n, "type": t} for n, t in expected.feature_types.items()]
    assert [f["name"] for f in user["features"]] == ["login_count", "avg_purchase"]
    assert user["ttl"] == "30d"
    assert user["online"] is True and user["stream"] is False
    stats = root_store.stats("user_stats")
    assert user["rows"] == stats["rows"] == 4
    assert user["entity_count"] == 2
    assert user["min_ts"].startswith("2024-02-10") and user["max_ts"].startswith("2024-03-07")
    assert user["online_last_update"] is not None  # materialized above
    assert views["clicks"]["online"] is False and views["clicks"]["ttl"] is None
    assert views["clicks"]["description"] == "raw clicks"
    assert views["clicks"]["online_last_update"] is None
    [train] = data["training_sets"]
    assert train["name"] == "train"
    assert train["fingerprint"] == root_store.list_training_sets()[0]["fingerprint"]


def test_listing_follows_a_new_version(jp_asyncio_loop, jp_fetch, root_store):
    root_store.register(
        fsnb.FeatureView("user_stats", entities=["user_id"], ttl="7d"), events(), replace=True
    )
    user = {v["name"]: v for v in get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")["views"]}["user_stats"]
    assert user["version"] == 2 and user["versions"] == 2 and user["ttl"] == "7d"


def test_absolute_path_inside_root_is_accepted(jp_asyncio_loop, jp_fetch, root_store):
    data = get_json(jp_asyncio_loop, jp_fetch, str(root_store.path))
    assert {v["name"] for v in data["views"]} == {"user_stats", "clicks"}


def test_stream_view_reports_log_lag_and_online_update(jp_asyncio_loop, jp_fetch, root_store):
    from fsnb.backends.sqlite_log import SqliteLog, encode_batch

    view = fsnb.FeatureView("clicks_live", entities=["user_id"], sync="stream")
    root_store.register(view)
    batch = pl.DataFrame({"user_id": [7], "event_timestamp": [datetime(2024, 5, 1)], "clicks": [3]})
    root_store.push("clicks_live", batch)
    root_store.sync()
    live = {v["name"]: v for v in get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")["views"]}["clicks_live"]
    assert live["stream"] is True and live["log_lag"] == 0
    assert live["online_last_update"] is not None
    assert {v["name"]: v for v in get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")["views"]}["user_stats"]["log_lag"] is None

    # a producer that died after appending but before applying leaves entries behind
    log = SqliteLog(root_store.path)
    try:
        for _ in range(2):
            log.append("clicks_live", root_store.version_of("clicks_live"), encode_batch(batch.to_arrow()), 1)
    finally:
        log.close()
    live = {v["name"]: v for v in get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")["views"]}["clicks_live"]
    assert live["log_lag"] == 2
    root_store.sync()
    live = {v["name"]: v for v in get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")["views"]}["clicks_live"]
    assert live["log_lag"] == 0


def test_unauthenticated_request_is_refused(jp_asyncio_loop, jp_fetch, root_store):
    code, _ = error_of(jp_asyncio_loop, jp_fetch, "project/.fsnb", headers={"Authorization": ""})
    assert code == 403
    code, _ = error_of(jp_asyncio_loop, jp_fetch, "project/.fsnb", headers={"Authorization": "token wrong"})
    assert code == 403


@pytest.mark.parametrize(
    "path",
    ["../outside/.fsnb", "project/../../outside/.fsnb", "/tmp", "project/.fsnb/../../.."],
)
def test_paths_outside_the_root_are_refused(jp_asyncio_loop, jp_fetch, jp_root_dir, root_store, path):
    outside = jp_root_dir.parent / "outside" / ".fsnb"
    fsnb.FeatureStore(outside).close()  # a real store there: refused for its place, not its absence
    code, message = error_of(jp_asyncio_loop, jp_fetch, path)
    assert code == 403
    assert "outside the server root" in message


def test_symlink_leaving_the_root_is_refused(jp_asyncio_loop, jp_fetch, jp_root_dir, tmp_path):
    outside = tmp_path / "elsewhere" / ".fsnb"
    fsnb.FeatureStore(outside).close()
    (jp_root_dir / "link").symlink_to(outside.parent)
    code, _ = error_of(jp_asyncio_loop, jp_fetch, "link/.fsnb")
    assert code == 403


def test_missing_store_and_missing_path(jp_asyncio_loop, jp_fetch, jp_root_dir):
    (jp_root_dir / "empty").mkdir()
    code, message = error_of(jp_asyncio_loop, jp_fetch, "empty/.fsnb")
    assert code == 404
    assert "%load_ext fsnb" in message
    assert not (jp_root_dir / "empty" / ".fsnb").exists()  # reading never creates a store
    code, message = error_of(jp_asyncio_loop, jp_fetch, "")
    assert code == 400 and "?path=" in message


INGEST_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta
    import polars as pl
    import fsnb

    store = fsnb.FeatureStore(sys.argv[1])
    view = fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d")
    start = datetime(2024, 4, 1)
    print("ready", flush=True)
    deadline = time.monotonic() + float(sys.argv[2])
    i = 0
    while time.monotonic() < deadline:
        n = 20_000
        store.ingest("user_stats", pl.DataFrame({
            "user_id": [i * n + k for k in range(n)],
            "event_timestamp": [start + timedelta(minutes=i)] * n,
            "login_count": list(range(n)),
            "avg_purchase": [1.0] * n,
        }))
        i += 1
    store.close()
    print("batches", i, flush=True)
    """
)


@pytest.mark.slow
def test_answers_while_another_process_ingests(jp_asyncio_loop, jp_fetch, root_store, tmp_path):
    script = tmp_path / "ingest.py"
    script.write_text(INGEST_SCRIPT)
    root_store.close()  # the writer process owns the store now, as a kernel would
    writer = subprocess.Popen(
        [sys.executable, str(script), str(root_store.path), "6"],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT_SRC), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        rows_seen = []
        latencies = []
        while writer.poll() is None:
            began = time.perf_counter()
            data = get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")
            latencies.append(time.perf_counter() - began)
            rows_seen.append({v["name"]: v["rows"] for v in data["views"]}["user_stats"])
            time.sleep(0.05)
        out, _ = writer.communicate(timeout=60)
        assert writer.returncode == 0, out
    finally:
        if writer.poll() is None:
            writer.kill()
    batches = int(out.split()[-1])
    assert batches >= 2  # the writer really was writing during the requests
    assert len(rows_seen) >= 5
    assert max(latencies) < 2.0, latencies  # never waits for the writer's DuckDB lock
    assert rows_seen == sorted(rows_seen)  # every answer is a consistent, growing snapshot
    final = get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")
    user = {v["name"]: v for v in final["views"]}["user_stats"]
    assert user["rows"] == 4 + batches * 20_000
    assert rows_seen[-1] <= user["rows"]


# -- issue 11: every file the endpoint opens is the file it names, below the root, read-only --


def files_below(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def small_store(path: Path, view: str) -> None:
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView(view, entities=["user_id"]), events())


def test_percent_encoded_directory_is_taken_literally(jp_asyncio_loop, jp_fetch, jp_root_dir):
    # SQLite decodes %2F in a URI: the old unescaped URI opened root/d/../../outside instead
    (jp_root_dir / "d").mkdir()
    small_store(jp_root_dir.parent / "outside", "secret_view")
    small_store(jp_root_dir / "d%2F..%2F..%2Foutside", "inside_view")
    data = get_json(jp_asyncio_loop, jp_fetch, "d%2F..%2F..%2Foutside")
    assert [v["name"] for v in data["views"]] == ["inside_view"]


@pytest.mark.parametrize("name", ["a#b", "a?mode=rwc", "a b%20c"])
def test_uri_characters_in_the_path_neither_misread_nor_create_files(jp_asyncio_loop, jp_fetch, jp_root_dir, name):
    small_store(jp_root_dir / "plain" / ".fsnb", "user_stats")
    (jp_root_dir / "plain").rename(jp_root_dir / name)  # (DuckDB itself mishandles '?' in a path)
    before = files_below(jp_root_dir)
    data = get_json(jp_asyncio_loop, jp_fetch, f"{name}/.fsnb")
    assert [v["name"] for v in data["views"]] == ["user_stats"]
    assert files_below(jp_root_dir) == before  # no stray 'a' database beside the store


def test_reading_a_closed_store_creates_no_file(jp_asyncio_loop, jp_fetch, jp_root_dir):
    small_store(jp_root_dir / "quiet" / ".fsnb", "user_stats")
    before = files_below(jp_root_dir)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)
    for _ in range(2):
        assert [v["name"] for v in get_json(jp_asyncio_loop, jp_fetch, "quiet/.fsnb")["views"]] == ["user_stats"]
    assert files_below(jp_root_dir) == before  # SQLite's mode=ro alone leaves -wal and -shm behind


def test_reading_sees_an_open_writer_latest_commit(jp_asyncio_loop, jp_fetch, root_store):
    assert (root_store.path / "registry.sqlite-wal").exists()  # the kernel holds the store open
    root_store.register(fsnb.FeatureView("later", entities=["user_id"]), events())
    names = {v["name"] for v in get_json(jp_asyncio_loop, jp_fetch, "project/.fsnb")["views"]}
    assert "later" in names


@pytest.mark.parametrize("filename", ["registry.sqlite", "online.sqlite", "registry.sqlite-shm"])
def test_store_file_symlinked_outside_the_root_is_refused(jp_asyncio_loop, jp_fetch, jp_root_dir, tmp_path, filename):
    elsewhere = tmp_path / "elsewhere" / ".fsnb"
    small_store(elsewhere, "secret_view")
    with fsnb.FeatureStore(elsewhere) as other:
        other.materialize()
    (elsewhere / "registry.sqlite-shm").write_bytes(b"")
    store_dir = jp_root_dir / "proj" / ".fsnb"
    small_store(store_dir, "user_stats")
    with fsnb.FeatureStore(store_dir) as store:
        store.materialize()
    (store_dir / filename).unlink(missing_ok=True)
    (store_dir / filename).symlink_to(elsewhere / filename)
    code, message = error_of(jp_asyncio_loop, jp_fetch, "proj/.fsnb")
    assert code == 403
    assert filename in message and "outside the server root" in message
    assert "secret_view" not in message


def test_garbage_definition_is_a_json_error_naming_the_file(jp_asyncio_loop, jp_fetch, jp_root_dir):
    import sqlite3

    store_dir = jp_root_dir / "broken" / ".fsnb"
    small_store(store_dir, "user_stats")
    con = sqlite3.connect(store_dir / "registry.sqlite")
    con.execute("UPDATE views SET definition = '{not json'")
    con.commit()
    con.close()
    code, message = error_of(jp_asyncio_loop, jp_fetch, "broken/.fsnb")
    assert code == 500
    assert "registry.sqlite" in message
    assert "\n" not in message


def test_unexpected_error_is_one_json_line(jp_asyncio_loop, jp_fetch, root_store, monkeypatch):
    import fsnb.server

    def boom(*args: Any) -> None:
        raise RuntimeError("something unforeseen\nsecond line")

    monkeypatch.setattr(fsnb.server, "describe_store", boom)
    code, message = error_of(jp_asyncio_loop, jp_fetch, "project/.fsnb")
    assert code == 500
    assert "RuntimeError" in message and "something unforeseen" in message and "\n" not in message
