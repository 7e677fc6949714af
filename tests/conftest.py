"""Shared fixtures: a fresh store in tmp_path; under CI=true a skipped test fails the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import fsnb


@pytest.fixture
def store(tmp_path: Path) -> Iterator[fsnb.FeatureStore]:
    s = fsnb.FeatureStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the test session's own, on a free loopback port."""
    from fsnb.testing import RedisMissing, running_redis

    try:
        server_cm = running_redis(tmp_path_factory.mktemp("redis"))
        server = server_cm.__enter__()
    except RedisMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield server.url
    finally:
        server_cm.__exit__(None, None, None)


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
