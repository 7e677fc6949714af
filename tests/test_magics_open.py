"""%fsnb open: check first, write fsnb.toml only once the store opened, keep the old store on failure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import fsnb
from fsnb.notebook.magics import FsnbMagics
from fsnb.testing import free_port


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("FSNB_STORE", str(tmp_path / "first"))
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "fsnb")
    shell.user_ns["events"] = pl.DataFrame(
        {"user_id": [1, 2], "event_timestamp": [datetime(2024, 1, 1), datetime(2024, 1, 2)], "n": [3, 4]}
    )
    shell.run_cell_magic("feature_view", "counts --entity user_id", "SELECT * FROM events")
    yield shell
    shell.run_line_magic("unload_ext", "fsnb")


def magics_of(ip: InteractiveShell) -> FsnbMagics:
    return ip.magics_manager.registry["FsnbMagics"]  # type: ignore[no-any-return]


def files_below(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_still_on_first(ip: InteractiveShell, tmp_path: Path, before: object) -> None:
    assert magics_of(ip).path == tmp_path / "first"
    assert magics_of(ip).store is before  # the very same open store
    assert [v.name for v in ip.run_line_magic("fsnb", "list")] == ["counts"]


@pytest.mark.parametrize(
    "url",
    [f"redis://127.0.0.1:{free_port()}/0", "redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/zero", "mysql://db/0"],
)
def test_bad_url_writes_nothing_and_keeps_the_store(ip: InteractiveShell, tmp_path: Path, url: str) -> None:
    before = magics_of(ip).store
    existing = tmp_path / "second"
    fsnb.FeatureStore(existing).close()
    snapshot = files_below(existing)
    for target in (existing, tmp_path / "new"):
        with pytest.raises(UsageError) as info:
            ip.run_line_magic("fsnb", f"open {target} --online {url}")
        message = str(info.value)
        assert "\n" not in message
        assert f"cannot open the store at {target}" in message and f"keeps the store at {tmp_path / 'first'}" in message
        assert_still_on_first(ip, tmp_path, before)
    assert files_below(existing) == snapshot  # no fsnb.toml written: the store still opens as before
    fsnb.FeatureStore(existing).close()
    assert not (tmp_path / "new").exists()  # nothing created for a URL that does not work


@pytest.mark.parametrize("kind", ["a file", "/proc/1", "a file below"])
def test_failed_open_keeps_the_previous_store(ip: InteractiveShell, tmp_path: Path, kind: str) -> None:
    before = magics_of(ip).store
    (tmp_path / "plain.txt").write_text("not a store")
    target = {"a file": tmp_path / "plain.txt", "/proc/1": Path("/proc/1"), "a file below": tmp_path / "plain.txt" / "s"}[kind]
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("fsnb", f"open {target}")
    assert "\n" not in str(info.value) and f"keeps the store at {tmp_path / 'first'}" in str(info.value)
    assert_still_on_first(ip, tmp_path, before)
    assert ip.run_line_magic("online_features", "counts:n --entity user_id=1") is not None  # still usable


def test_reopening_the_same_path_with_a_bad_url_keeps_it_usable(ip: InteractiveShell, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        ip.run_line_magic("fsnb", f"open {tmp_path / 'first'} --online redis://127.0.0.1:{free_port()}/0")
    assert not (tmp_path / "first" / "fsnb.toml").exists()
    assert [v.name for v in ip.run_line_magic("fsnb", "list")] == ["counts"]


def test_open_on_the_spark_engine_is_remembered_and_a_refused_one_keeps_the_store(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No Spark job runs here: the engine starts its session on first use."""
    before = magics_of(ip).store
    first = tmp_path / "first"
    snapshot = files_below(first)
    for flags, needle in (("--offline spark", "needs a warehouse"), (f"--offline spark --warehouse {tmp_path / 'wh'}", "DuckDB engine")):
        with pytest.raises(UsageError, match=needle) as info:  # first/ holds DuckDB history
            ip.run_line_magic("fsnb", f"open {first} {flags}")
        assert "\n" not in str(info.value)
        assert files_below(first) == snapshot and not (first / "fsnb.toml").exists()
    assert_still_on_first(ip, tmp_path, before)
    target = tmp_path / "sparky"
    store = ip.run_line_magic("fsnb", f"open {target} --offline spark --warehouse {tmp_path / 'wh'}")
    assert "history in Delta tables at" in capsys.readouterr().out
    assert store.parts.spark is not None and "offline='spark'" in repr(store)
    toml = (target / "fsnb.toml").read_text()
    assert '[offline]\nengine = "spark"' in toml and str(tmp_path / "wh") in toml
    store.close()
    again = fsnb.FeatureStore(target)  # fsnb.toml decides: the CLI, the sidebar and a pipeline agree
    assert again.parts.spark is not None and again.config.warehouse == str(tmp_path / "wh")
    again.close()
