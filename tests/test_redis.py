"""Redis as online store and log: a server stopped mid push loop loses nothing acknowledged."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import fsnb

pytestmark = pytest.mark.redis


def _batch(i: int) -> pl.DataFrame:
    return pl.DataFrame({
        "k": [i % 7, (i + 3) % 7],
        "event_timestamp": [datetime(2024, 1, 1) + timedelta(minutes=i)] * 2,
        "x": [i, -i],
    })


def test_stopped_server_gives_a_clear_error_and_acknowledged_batches_survive(tmp_path: Path, persistent_redis) -> None:
    store = fsnb.FeatureStore(tmp_path / "s", online=persistent_redis.url, log=persistent_redis.url)
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream", features={"x": "BIGINT"}))
    acknowledged, failures = [], []
    for i in range(60):
        if i == 25:
            persistent_redis.stop()
        if i == 40:
            persistent_redis.start(persistent=True)
        try:
            store.push("v", _batch(i))
            acknowledged.append(i)
        except fsnb.FsnbError as exc:
            failures.append(str(exc))
    assert len(failures) >= 15  # every push while the server was down failed loudly
    assert all("\n" not in f and persistent_redis.url.split("/")[2] in f for f in failures), failures[:2]
    store.sync()
    offline = store.read("v")
    assert sorted(set(offline["x"].to_list()) & set(range(60))) == acknowledged
    assert len(offline) == 2 * len(acknowledged)  # nothing twice, nothing partial
    assert store.check_skew("v").mismatches == 0
    newest = offline.sort("event_timestamp").group_by("k").last()
    online = store.get_online_features(["v:x"], [{"k": k} for k in newest["k"].to_list()])
    assert online["x"] == newest["x"].to_list()
    store.close()


def test_connection_error_names_the_address(tmp_path: Path) -> None:
    from fsnb.testing import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(fsnb.FsnbError, match=r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0"):
        fsnb.FeatureStore(tmp_path / "s", online=url)


def test_fsnb_toml_configures_both_backends(tmp_path: Path, redis_url) -> None:
    path = tmp_path / "s"
    path.mkdir()
    (path / "fsnb.toml").write_text(f'[online]\nurl = "{redis_url}"\n\n[log]\nurl = "{redis_url}"\n')
    store = fsnb.FeatureStore(path)
    assert type(store.online).__name__ == "RedisOnlineStore"
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream", features={"x": "BIGINT"}))
    store.push("v", _batch(1))
    assert store.get_online_features(["v:x"], [{"k": 1}])["x"] == [1]
    assert store.freshness()["online_lag"].to_list() == [0]
    store.close()
    (path / "fsnb.toml").write_text('online = "mysql://nope"\n')
    with pytest.raises(fsnb.FsnbError, match="not supported; use 'sqlite'"):
        fsnb.FeatureStore(path)


def test_fsnb_open_magic_takes_redis_urls(tmp_path: Path, redis_url) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "fsnb")
    try:
        store = ip.run_line_magic("fsnb", f"open {tmp_path / 's'} --online {redis_url} --log {redis_url}")
        assert type(store.online).__name__ == "RedisOnlineStore"
        assert redis_url in (tmp_path / "s" / "fsnb.toml").read_text()
        with pytest.raises(UsageError, match="go with open"):
            ip.run_line_magic("fsnb", f"list --online {redis_url}")
    finally:
        ip.run_line_magic("unload_ext", "fsnb")
