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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") == "true" and reporter is not None:
        skipped = reporter.stats.get("skipped", [])
        if skipped:
            reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; every component must be installed", red=True)
            session.exitstatus = 1
