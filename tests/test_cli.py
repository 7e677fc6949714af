"""The fsnb command line: read-only commands never create a file, every error is one line."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

import fsnb
from fsnb.cli import main as cli_main


def files_below(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def make_store(path: Path) -> None:
    frame = pl.DataFrame({"user_id": [1, 2], "event_timestamp": [datetime(2024, 1, 1), datetime(2024, 1, 2)], "n": [3, 4]})
    with fsnb.FeatureStore(path) as store:
        store.register(fsnb.FeatureView("counts", entities=["user_id"]), frame)


@pytest.mark.parametrize("name", ["a#b", "a?mode=rwc", "p%2F..%2Fq"])
def test_list_and_show_read_the_named_store_and_create_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    make_store(tmp_path / "plain" / ".fsnb")
    (tmp_path / "plain").rename(tmp_path / name)
    before = files_below(tmp_path)
    assert cli_main(["list", "--store", str(tmp_path / name / ".fsnb")]) == 0
    assert "counts  v1" in capsys.readouterr().out
    assert cli_main(["show", "counts", "--store", str(tmp_path / name / ".fsnb")]) == 0
    assert "counts (version 1 of 1)" in capsys.readouterr().out
    assert files_below(tmp_path) == before  # no stray database, no -wal/-shm left behind


def damage(store: Path, how: str) -> None:
    registry = store / "registry.sqlite"
    if how == "garbage json":
        con = sqlite3.connect(registry)
        con.execute("UPDATE views SET definition = '{not json'")
        con.commit()
        con.close()
    elif how == "json of the wrong shape":
        con = sqlite3.connect(registry)
        con.execute("UPDATE views SET definition = '[1, 2]'")
        con.commit()
        con.close()
    elif how == "not sqlite":
        registry.write_bytes(b"this is not a database" * 100)
    elif how == "empty file":
        registry.write_bytes(b"")
    elif how == "a directory":
        registry.unlink()
        registry.mkdir()


@pytest.mark.parametrize("how", ["garbage json", "json of the wrong shape", "not sqlite", "empty file", "a directory"])
@pytest.mark.parametrize("command", [["list"], ["show", "counts"]])
def test_damaged_registry_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, command: list[str]
) -> None:
    make_store(tmp_path / "s")
    damage(tmp_path / "s", how)
    before = {p: p.read_bytes() for p in (tmp_path / "s").iterdir() if p.is_file()}
    if command == ["list"] and "json" in how:
        # One unreadable view does not make the store unlistable: it is listed as such.
        assert cli_main([*command, "--store", str(tmp_path / "s")]) == 0
        out = capsys.readouterr().out
        assert "counts  UNREADABLE" in out and "registry.sqlite" in out
        assert {p: p.read_bytes() for p in (tmp_path / "s").iterdir() if p.is_file()} == before
        return
    assert cli_main([*command, "--store", str(tmp_path / "s")]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"fsnb {command[0]}: error: ") and "\n" not in err, err
    assert "Traceback" not in captured.err
    assert "registry.sqlite" in err
    assert {p: p.read_bytes() for p in (tmp_path / "s").iterdir() if p.is_file()} == before


def test_unexpected_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import fsnb.cli

    def boom(args: object) -> int:
        raise RuntimeError("a bug\nwith two lines")

    parser = fsnb.cli.build_parser
    monkeypatch.setattr(fsnb.cli, "build_parser", lambda: _with_func(parser(), boom))
    assert cli_main(["list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "fsnb list: error: unexpected RuntimeError: a bug with two lines"


def _with_func(parser: object, func: object) -> object:
    parser.set_defaults(func=func)  # type: ignore[attr-defined]
    for action in parser._subparsers._group_actions:  # type: ignore[attr-defined]
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser
