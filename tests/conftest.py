"""Shared fixtures: a fresh store in tmp_path; under CI=true a skipped test fails the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fsnb
from fsnb.testing import RedisMissing, RedisServer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[fsnb.FeatureStore]:
    s = fsnb.FeatureStore(tmp_path / "store")
    yield s
    s.close()


def _start_redis(directory: Path, *, persistent: bool = False) -> RedisServer:
    """A started private redis-server; a missing binary fails the test under CI=true, else skips it."""
    server = RedisServer(directory)
    try:
        server.start(persistent=persistent)
    except RedisMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the test session's own, on a free loopback port."""
    server = _start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own that keeps every acknowledged write (AOF, fsync always)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = _start_redis(directory, persistent=True)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def online_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[fsnb.FeatureStore]:
    """A fresh store whose online side is SQLite or Redis (fsnb.toml says which, so
    every process opening the directory agrees)."""
    path = tmp_path / "store"
    path.mkdir()
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        (path / "fsnb.toml").write_text(f'[online]\nurl = "{url}"\n')
    s = fsnb.FeatureStore(path)
    yield s
    s.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") == "true" and reporter is not None:
        skipped = reporter.stats.get("skipped", [])
        if skipped:
            reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; every component must be installed", red=True)
            session.exitstatus = 1


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local SparkSession for the test session (local[2], 2 shuffle partitions, no UI,
    loopback). Its JVM runs in a non-UTC zone on purpose: fsnb must not depend on it.
    Missing pyspark or Java fails the run under CI=true, else skips."""
    from fsnb.backends.spark_util import local_session
    from fsnb.errors import FsnbError

    try:
        session = local_session(2, {"spark.driver.extraJavaOptions": "-Duser.timezone=America/Los_Angeles"})
    except FsnbError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield session
    session.stop()
