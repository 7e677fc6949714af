"""The IPython extension and its magics, run in a real InteractiveShell."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import fsnb
from fsnb.notebook.magics import FsnbMagics


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


@pytest.fixture
def ip(shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """The shell with fsnb loaded on a fresh store, and the seed example in the namespace."""
    monkeypatch.setenv("FSNB_STORE", str(tmp_path / "store"))
    shell.run_line_magic("load_ext", "fsnb")
    shell.user_ns["events"] = pl.DataFrame(
        {
            "user_id": [42, 42, 42, 17],
            "event_timestamp": [dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 7), dt.datetime(2024, 2, 10)],
            "login_count": [2, 5, 9, 1],
            "avg_purchase": [10.0, 12.5, 30.0, 5.0],
        }
    )
    shell.user_ns["labels"] = pl.DataFrame(
        {"user_id": [42, 17, 99, 42], "event_timestamp": [dt.datetime(2024, 3, 3)] * 4, "label": [1, 0, 1, 1]}
    )
    yield shell
    shell.run_line_magic("unload_ext", "fsnb")
    for name in ("events", "labels", "train", "r", "online"):
        shell.user_ns.pop(name, None)


def user_stats(ip: InteractiveShell, flags: str = "", sql: str = "SELECT * FROM events") -> Any:
    return ip.run_cell_magic("feature_view", f"user_stats --entity user_id {flags}", sql)


def magics_of(ip: InteractiveShell) -> FsnbMagics:
    return ip.magics_manager.registry["FsnbMagics"]  # type: ignore[no-any-return]


# -- loading ------------------------------------------------------------------------------------
def test_load_ext_says_where_the_store_is(shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FSNB_STORE", str(tmp_path / "here"))
    shell.run_line_magic("load_ext", "fsnb")
    try:
        out = capsys.readouterr().out.strip().splitlines()
        assert out == [f"fsnb: store at {tmp_path / 'here'} (0 feature views)"]
        assert (tmp_path / "here").is_dir()
    finally:
        shell.run_line_magic("unload_ext", "fsnb")


def test_default_store_is_dot_fsnb_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsnb.notebook.magics import store_path

    monkeypatch.delenv("FSNB_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert store_path() == tmp_path / ".fsnb"
    monkeypatch.setenv("FSNB_STORE", "elsewhere")
    assert store_path() == tmp_path / "elsewhere"


def test_reload_ext_is_clean(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    user_stats(ip)
    first = magics_of(ip)
    assert first._store is not None
    ip.run_line_magic("reload_ext", "fsnb")
    second = magics_of(ip)
    assert second is not first
    assert first._store is None  # closed by unload
    assert "(1 feature view: user_stats)" in capsys.readouterr().out
    assert ip.find_line_magic("training_set").__self__ is second
    assert ip.run_line_magic("online_features", "user_stats:login_count --entity user_id=42") == {
        "user_id": [42], "login_count": [None]
    }


def test_unload_removes_every_magic(ip: InteractiveShell) -> None:
    ip.run_line_magic("unload_ext", "fsnb")
    for name in ("fsnb", "training_set", "online_features", "materialize", "leakage"):
        assert ip.find_line_magic(name) is None
    assert ip.find_cell_magic("feature_view") is None
    ip.run_line_magic("load_ext", "fsnb")  # the fixture unloads again


def test_load_is_light() -> None:
    """import fsnb + %load_ext fsnb must not pull in DuckDB, polars, Arrow, Altair or ipywidgets."""
    code = (
        "import sys, json\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from traitlets.config import Config\n"
        "c = Config(); c.HistoryManager.hist_file = ':memory:'\n"
        "sh = InteractiveShell.instance(config=c)\n"
        "before = set(sys.modules)\n"
        "import fsnb\n"
        "sh.run_line_magic('load_ext', 'fsnb')\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new)))\n"
    )
    env = {**os.environ, "FSNB_STORE": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"fsnb-light-{os.getpid()}")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "fsnb" in loaded
    heavy = {"duckdb", "polars", "pyarrow", "altair", "ipywidgets", "pandas", "numpy", "vl_convert", "tqdm"}
    assert loaded & heavy == set()


# -- %%feature_view -------------------------------------------------------------------------------
def test_feature_view_cell_registers_and_shows_the_view(ip: InteractiveShell) -> None:
    shown = user_stats(ip, "--ttl 30d --description 'logins and spend'")
    assert shown.version == 1
    view = fsnb.FeatureStore(os.environ["FSNB_STORE"]).get_feature_view("user_stats")
    assert view.entity_columns == ("user_id",)
    assert view.ttl == dt.timedelta(days=30)
    assert view.description == "logins and spend"
    assert view.query == "SELECT * FROM events"
    assert view.online and view.sync == "materialize"
    text = repr(shown)
    assert "4 rows, 2 entities" in text and "TTL 30d" in text
    page = shown._repr_html_()
    for expected in ("user_stats", "version 1", "login_count", "BIGINT", "2024-02-10", "30d", "sample (4 rows)", "12.5"):
        assert expected in page


def test_rerunning_a_changed_cell_makes_a_new_version_and_shows_what_changed(ip: InteractiveShell) -> None:
    user_stats(ip, "--ttl 30d")
    same = user_stats(ip, "--ttl 30d")
    assert same.version == 1 and not same.registration.new_version
    changed = user_stats(ip, "--ttl 7d", "SELECT user_id, event_timestamp, login_count FROM events")
    assert changed.version == 2
    assert any("avg_purchase" in str(c) for c in changed.registration.changes)
    assert "changed from version 1" in changed._repr_html_()
    assert "removed avg_purchase" in repr(changed)


def test_cell_defines_the_rows(ip: InteractiveShell) -> None:
    user_stats(ip)
    user_stats(ip, sql="SELECT * FROM events WHERE login_count < 9")
    rows = magics_of(ip).store.read("user_stats")
    assert sorted(rows["login_count"].to_list()) == [1, 2, 5]


def test_sources_pandas_arrow_files_and_a_bare_name(ip: InteractiveShell, tmp_path: Path) -> None:
    events = ip.user_ns["events"]
    ip.user_ns["events_pd"] = events.to_pandas()
    ip.user_ns["events_arrow"] = events.to_arrow()
    events.write_parquet(tmp_path / "events.parquet")
    events.write_csv(tmp_path / "events.csv")
    try:
        for i, sql in enumerate(
            [
                "SELECT * FROM events_pd",
                "SELECT * FROM events_arrow WHERE user_id = 42",
                f"SELECT * FROM '{tmp_path / 'events.parquet'}'",
                f"SELECT * FROM read_csv('{tmp_path / 'events.csv'}')",
                "events",
            ]
        ):
            shown = ip.run_cell_magic("feature_view", f"v{i} --entity user_id", sql)
            assert shown.registration.stats["rows"] == (3 if i == 1 else 4)
    finally:
        ip.user_ns.pop("events_pd")
        ip.user_ns.pop("events_arrow")


def test_composite_key_offline_only_stream_and_created(ip: InteractiveShell) -> None:
    ip.user_ns["orders"] = pl.DataFrame(
        {
            "shop": [1, 12, 1],
            "item": [23, 3, 23],
            "ts": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)],
            "made": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 5)],
            "price": [1.0, 2.0, 3.0],
        }
    )
    try:
        shown = ip.run_cell_magic(
            "feature_view", "prices --entity shop,item --timestamp ts --created made --offline-only --stream", "FROM orders"
        )
        view = shown.view
        assert view.entity_columns == ("shop", "item")
        assert view.created_timestamp_field == "made" and not view.online and view.sync == "stream"
        ip.user_ns["asks"] = pl.DataFrame({"shop": [1, 12], "item": [23, 3], "ts": [dt.datetime(2024, 1, 4)] * 2})
        out = ip.run_line_magic("training_set", "asks prices:price --timestamp ts")
        assert out["price"].to_list() == [3.0, 2.0]
        known = ip.run_line_magic("training_set", "asks prices:price --timestamp ts --as-of-ingestion")
        assert known["price"].to_list() == [1.0, 2.0]  # the 01-03 row was only created on 01-05
        with pytest.raises(UsageError, match="offline-only"):
            ip.run_line_magic("online_features", "prices:price --entity shop=1,item=23")
    finally:
        ip.user_ns.pop("orders")
        ip.user_ns.pop("asks", None)


# -- %training_set ---------------------------------------------------------------------------------
def test_training_set_returns_stores_and_records(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    user_stats(ip)
    result = ip.run_line_magic("training_set", "labels user_stats:login_count user_stats:avg_purchase -o train")
    assert isinstance(result, pl.DataFrame)
    assert ip.user_ns["train"] is result
    assert result["login_count"].to_list() == [2, 1, None, 2]
    assert result.columns == ["user_id", "event_timestamp", "label", "login_count", "avg_purchase"]
    recorded = magics_of(ip).store.list_training_sets()
    assert [r["name"] for r in recorded] == ["train"]
    assert recorded[0]["fingerprint"] == fsnb.fingerprint(result)
    shown = capsys.readouterr().out
    assert "4 rows × 5 columns" in shown
    assert "25.0%" in shown  # user 99 has no features
    assert recorded[0]["fingerprint"] in shown


def test_training_set_full_names_star_and_file_labels(ip: InteractiveShell, tmp_path: Path) -> None:
    user_stats(ip)
    path = tmp_path / "labels.parquet"
    ip.user_ns["labels"].write_parquet(path)
    result = ip.run_line_magic("training_set", f"{path} user_stats:* --full-names")
    assert result.columns[-2:] == ["user_stats__login_count", "user_stats__avg_purchase"]
    assert result["user_stats__avg_purchase"].to_list() == [10.0, 5.0, None, 10.0]


def test_training_set_summary_counts_nulls_and_leaks(ip: InteractiveShell) -> None:
    from fsnb.notebook.render import TrainingSetSummary

    user_stats(ip)
    store = magics_of(ip).store
    labels = ip.user_ns["labels"]
    ts = store.build_training_set(labels, ["user_stats:login_count"])
    frame = ts.frame
    summary = TrainingSetSummary.of(frame, ts.output_names, "event_timestamp", report=ts.report)
    (q,) = summary.features
    assert q.name == "login_count" and q.null_rate == 0.25
    if summary.has_leakage:  # the two rows of user 42 see 03-07's value under a naive join
        assert q.leaky_rows == 2
        assert "would have leaked 2 rows" in repr(summary)
    assert "25.0%" in summary._repr_html_()


def test_training_set_uses_the_callers_local_variables(ip: InteractiveShell) -> None:
    user_stats(ip)
    ip.run_cell(
        "def build():\n"
        "    mine = labels.head(1)\n"
        "    out = %training_set mine user_stats:login_count\n"
        "    return out\n"
        "r = build()\n"
    )
    assert ip.user_ns["r"]["login_count"].to_list() == [2]


# -- %online_features and %materialize ---------------------------------------------------------------
def test_materialize_then_online_features(ip: InteractiveShell) -> None:
    user_stats(ip)
    written = ip.run_line_magic("materialize", "")
    assert written == {"user_stats": 2}
    assert "Materialized" in written._repr_html_()
    r = ip.run_line_magic("online_features", "user_stats:login_count user_stats:avg_purchase --entity user_id=42 --entity user_id=5 -o online")
    assert r == {"user_id": [42, 5], "login_count": [9, None], "avg_purchase": [30.0, None]}
    assert ip.user_ns["online"] == r
    page = r._repr_html_()
    assert "<td" in page and "30" in page and "null" in page
    ip.run_cell("r = %online_features user_stats:login_count --entity user_id=17")
    assert ip.user_ns["r"] == {"user_id": [17], "login_count": [1]}


def test_materialize_window_and_incremental(ip: InteractiveShell) -> None:
    user_stats(ip)
    assert ip.run_line_magic("materialize", "--start 2024-03-05 --end 2024-03-31") == {"user_stats": 1}
    assert ip.run_line_magic("online_features", "user_stats:login_count --entity user_id=17")["login_count"] == [None]
    ip.run_line_magic("materialize", "--incremental")
    assert ip.run_line_magic("online_features", "user_stats:login_count --entity user_id=42")["login_count"] == [9]
    with pytest.raises(UsageError, match="--incremental"):
        ip.run_line_magic("materialize", "--incremental --start 2024-01-01")
    with pytest.raises(UsageError, match="cannot read end"):
        ip.run_line_magic("materialize", "--end yesterday")
    with pytest.raises(UsageError, match="did you mean 'user_stats'"):
        ip.run_line_magic("materialize", "--view user_stat")


def test_online_features_composite_and_string_keys(ip: InteractiveShell) -> None:
    ip.user_ns["pairs"] = pl.DataFrame(
        {"a": ["x", "y"], "b": [1, 2], "event_timestamp": [dt.datetime(2024, 1, 1)] * 2, "v": [10, 20]}
    )
    try:
        ip.run_cell_magic("feature_view", "pv --entity a,b", "FROM pairs")
        ip.run_line_magic("materialize", "")
        r = ip.run_line_magic("online_features", "pv:v --entity a=y,b=2 --entity a='x',b=1")
        assert r == {"a": ["y", "x"], "b": [2, 1], "v": [20, 10]}
        with pytest.raises(UsageError, match="lacks the key 'b'"):
            ip.run_line_magic("online_features", "pv:v --entity a=y")
        with pytest.raises(UsageError, match="not an entity key"):
            ip.run_line_magic("online_features", "pv:v --entity a=y,b=2,c=3")
        with pytest.raises(UsageError, match="NAME=VALUE"):
            ip.run_line_magic("online_features", "pv:v --entity y")
    finally:
        ip.user_ns.pop("pairs")


# -- %fsnb ----------------------------------------------------------------------------------------
def test_fsnb_open_list_show(ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user_stats(ip)
    listed = ip.run_line_magic("fsnb", "list")
    assert [v.name for v in listed] == ["user_stats"]
    assert "user_stats" in repr(listed) and "login_count, avg_purchase" in listed._repr_html_()
    shown = ip.run_line_magic("fsnb", "show user_stats")
    assert shown.view.name == "user_stats" and shown.stats["rows"] == 4
    assert "latest rows" in shown._repr_html_() and "versions:" in repr(shown)
    store = ip.run_line_magic("fsnb", "open " + str(tmp_path / "other"))
    assert isinstance(store, fsnb.FeatureStore) and store.path == tmp_path / "other"
    assert capsys.readouterr().out.strip().endswith(f"fsnb: store at {tmp_path / 'other'} (0 feature views)")
    assert list(ip.run_line_magic("fsnb", "list")) == []
    assert "none yet" in ip.run_line_magic("fsnb", "list")._repr_html_()
    assert ip.run_line_magic("fsnb", "") is store
    assert "FeatureStore" in store._repr_html_()


# -- mistakes: one readable line each -----------------------------------------------------------------
BAD_CELLS = [
    ("user_stats --entity uid", "SELECT * FROM events", "uid"),
    ("user_stats --entity user_id --timestamp ts", "SELECT * FROM events", "ts"),
    ("user_stats --entity user_id --timestamp login_count", "SELECT * FROM events", "date/time"),
    ("user_stats --entity user_id", "SELECT NULL::BIGINT AS user_id, TIMESTAMP '2024-01-01' AS event_timestamp, 1 AS x", "1 row"),
    ("user_stats --entity user_id", "SELECT * FROM events WHERE false", "empty|no rows"),
    ("user_stats --entity user_id", "SELECT * FROM events; SELECT 1", "2 statements.*exactly one query"),
    ("user_stats --entity user_id", "CREATE TABLE t AS SELECT * FROM events", "CREATE statement, not a query"),
    ("user_stats --entity user_id", "COPY (SELECT 1) TO 'x.csv'", "COPY statement, not a query"),
    ("user_stats --entity user_id", "-- nothing but a comment", "holds no query"),
    ("user_stats --entity user_id", "", "body is empty"),
    ("user_stats --entity user_id", "  \n ", "has no SQL"),
    ("user_stats", "SELECT * FROM events", "--entity"),
    ("user_stats --entity user_id --ttl soon", "SELECT * FROM events", "30d"),
    ("user stats --entity user_id", "SELECT * FROM events", "unrecognized|not valid"),
    ("user_stats --entity user_id,", "SELECT * FROM events", "empty name"),
]


@pytest.mark.parametrize(("line", "sql", "message"), BAD_CELLS)
def test_bad_feature_view_cells_are_one_line_usage_errors(ip: InteractiveShell, line: str, sql: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        ip.run_cell_magic("feature_view", line, sql)
    assert "\n" not in str(info.value)
    assert not magics_of(ip).store.registry.has("user_stats")  # nothing was registered


def test_key_dtype_change_is_refused(ip: InteractiveShell) -> None:
    user_stats(ip)
    with pytest.raises(UsageError, match=r"VARCHAR|BIGINT"):
        user_stats(ip, sql="SELECT user_id::VARCHAR AS user_id, event_timestamp, login_count, avg_purchase FROM events")
    assert magics_of(ip).store.version_of("user_stats") == 1


BAD_LINES = [
    ("training_set", "labels user_stat:login_count", "did you mean 'user_stats'"),
    ("training_set", "labels user_stats:login_cnt", "did you mean 'login_count'"),
    ("training_set", "labels user_stats", "view:feature"),
    ("training_set", "lables user_stats:login_count", "did you mean 'labels'"),
    ("training_set", "labels user_stats:login_count --timestamp when", "no timestamp column 'when'"),
    ("training_set", "nokey user_stats:login_count", "entity column 'user_id'"),
    ("training_set", "labels", "arguments are required|features"),
    ("training_set", "labels user_stats:login_count -o 1x", "-o needs a Python variable"),
    ("training_set", "labels user_stats:login_count --bogus", "unrecognized"),
    ("online_features", "user_stats:login_count", "--entity"),
    ("online_features", "user_stats:login_count --entity user_id=abc", "BIGINT"),
    ("online_features", "user_stats:nope --entity user_id=1", "no feature 'nope'"),
    ("fsnb", "show nope", "no feature view 'nope'"),
    ("fsnb", "show", "needs a feature view name"),
    ("fsnb", "open", "needs a directory"),
    ("fsnb", "lst", "did you mean 'list'"),
    ("leakage", "labels nope:x", "no feature view 'nope'"),
]


@pytest.mark.parametrize(("magic", "line", "message"), BAD_LINES)
def test_bad_lines_are_one_line_usage_errors(ip: InteractiveShell, magic: str, line: str, message: str) -> None:
    user_stats(ip)
    ip.user_ns["nokey"] = pl.DataFrame({"event_timestamp": [dt.datetime(2024, 3, 3)]})
    try:
        with pytest.raises(UsageError, match=message) as info:
            ip.run_line_magic(magic, line)
        assert "\n" not in str(info.value).strip()
    finally:
        ip.user_ns.pop("nokey")


def test_errors_in_a_cell_print_one_line_not_a_traceback(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    user_stats(ip)
    result = ip.run_cell("%training_set labels user_stat:login_count")
    assert isinstance(result.error_in_exec, UsageError)
    captured = capsys.readouterr()
    err = (captured.err + captured.out).strip()
    assert "Traceback" not in err
    assert err.splitlines() == ["UsageError: no feature view 'user_stat'; did you mean 'user_stats'?"]


def test_pandas_labels(ip: InteractiveShell) -> None:
    user_stats(ip)
    ip.user_ns["labels_pd"] = pd.DataFrame({"user_id": [42], "event_timestamp": [pd.Timestamp("2024-03-05")]})
    try:
        r = ip.run_line_magic("training_set", "labels_pd user_stats:login_count")
        assert r["login_count"].to_list() == [5]
    finally:
        ip.user_ns.pop("labels_pd")


# -- documentation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fsnb", "feature_view", "training_set", "online_features", "materialize", "leakage"])
def test_every_magic_has_help(ip: InteractiveShell, name: str) -> None:
    func = getattr(magics_of(ip), name)
    doc = func.__doc__ or ""
    assert f"%{name}" in doc.split("\n\n")[1]  # magic_arguments' usage line
    assert len(doc) > 200


def test_help_lists_the_contract_flags(ip: InteractiveShell) -> None:
    doc = magics_of(ip).training_set.__doc__
    for flag in ("-o OUTPUT", "--timestamp", "--as-of-ingestion", "--explore"):
        assert flag in doc
    doc = magics_of(ip).feature_view.__doc__
    for flag in ("--entity", "--timestamp", "--created", "--ttl", "--offline-only", "--stream", "--description"):
        assert flag in doc
    doc = magics_of(ip).materialize.__doc__
    for flag in ("--start", "--end", "--incremental"):
        assert flag in doc


def test_a_trailing_semicolon_silences_but_still_runs(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    user_stats(ip, sql="SELECT * FROM events;")
    capsys.readouterr()
    ip.run_cell("%training_set labels user_stats:login_count -o train;")
    out = capsys.readouterr().out
    assert ip.user_ns["train"]["login_count"].to_list() == [2, 1, None, 2]
    assert "Out[" not in out and "shape: (4, 4)" not in out
    ip.run_cell("%materialize --end 2030-01-01;")
    ip.run_cell("r = %online_features user_stats:login_count --entity user_id={6 * 7}")
    assert ip.user_ns["r"] == {"user_id": [42], "login_count": [9]}  # {expr} is expanded by IPython


def test_training_set_explore_and_leakage_open_the_explorer(ip: InteractiveShell) -> None:
    user_stats(ip)
    widget = ip.run_line_magic("leakage", "labels user_stats:login_count")
    assert type(widget).__module__.split(".")[0] == "fsnb"
    assert hasattr(widget, "_repr_mimebundle_") or hasattr(widget, "_ipython_display_")
    frame = ip.run_line_magic("training_set", "labels user_stats:login_count --explore")
    assert frame["login_count"].to_list() == [2, 1, None, 2]


def test_training_set_runs_the_leakage_analysis_once(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    user_stats(ip)
    store = magics_of(ip).store
    calls = []
    real = store.build_training_set

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "build_training_set", counted)
    ip.run_line_magic("training_set", "labels user_stats:login_count user_stats:avg_purchase --explore")
    assert len(calls) == 1  # the summary and the explorer share one analysis
    shown = capsys.readouterr().out
    assert "would have leaked 2 rows of login_count and 2 rows of avg_purchase" in shown
    assert "label time 2024-03-03 00:00:00\n" in shown  # one label time, once
    assert shown.count("4 rows × 5 columns") == 1


def test_materialize_and_online_features_read_as_text(ip: InteractiveShell) -> None:
    user_stats(ip)
    written = ip.run_line_magic("materialize", "")
    assert repr(written) == "materialized into the online store:\nview        rows written\nuser_stats  2"
    r = ip.run_line_magic("online_features", "user_stats:login_count --entity user_id=42")
    assert repr(r) == "online features (1 entity):\nuser_id  login_count\n42       9"


def test_training_set_joins_once_and_explores_without_a_second_join(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    from fsnb.backends.duckdb_offline import OfflineStore

    user_stats(ip)
    joins: list[bool] = []
    original = OfflineStore.point_in_time

    def counted(self: OfflineStore, *args: Any, **kwargs: Any) -> Any:
        joins.append(bool(kwargs.get("with_event_times")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OfflineStore, "point_in_time", counted)
    frame = ip.run_line_magic("training_set", "labels user_stats:login_count")
    assert joins == [True]  # one join, with event times: the frame and the leakage summary
    assert frame["login_count"].to_list() == [2, 1, None, 2]
    joins.clear()
    frame = ip.run_line_magic("training_set", "labels user_stats:login_count --explore")
    assert joins == [True]  # the explorer opens the same report
    assert frame["login_count"].to_list() == [2, 1, None, 2]


def test_build_training_set_frame_is_get_historical_features(ip: InteractiveShell) -> None:
    user_stats(ip)
    store = magics_of(ip).store
    labels = ip.user_ns["labels"]
    for options in ({}, {"full_feature_names": True}, {"as_of_ingestion": True}):
        ts = store.build_training_set(labels, ["user_stats:login_count"], **options)
        assert ts.frame.equals(store.get_historical_features(labels, ["user_stats:login_count"], **options))
        assert ts.report is not None and ts.report.rows.height == labels.height
    empty = store.build_training_set(labels.clear(), ["user_stats:login_count"])
    assert empty.report is None and empty.frame.height == 0


def test_every_magic_and_flag_is_documented(ip: InteractiveShell) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "notebook.md").read_text()
    magics = magics_of(ip)
    for kind, names in magics.magics.items():
        for name in names:
            prefix = "%%" if kind == "cell" else "%"
            assert f"`{prefix}{name}" in docs, f"{prefix}{name} is not documented in docs/notebook.md"
            for action in getattr(magics, name).parser._actions:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help"):
                        assert flag in docs, f"{prefix}{name} {flag} is not documented in docs/notebook.md"


def test_entity_values_follow_the_registered_key_type() -> None:
    from fsnb.notebook.magics import _entity_row

    assert _entity_row("sku=007,n=42", {"sku": "VARCHAR", "n": "BIGINT"}) == {"sku": "007", "n": 42}
    assert _entity_row("x=1.5,f=true", {"x": "DOUBLE", "f": "BOOLEAN"}) == {"x": 1.5, "f": True}
    assert _entity_row("k=12", {}) == {"k": 12}
    assert _entity_row("k=ab", {}) == {"k": "ab"}


# -- issue 12: messages speak the language of the magic ------------------------------------------------
def test_hints_name_magic_flags_not_api_arguments(ip: InteractiveShell) -> None:
    user_stats(ip)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("training_set", "labels user_stats:login_count --timestamp ts")
    assert "use --timestamp COL" in str(info.value) and "timestamp_field" not in str(info.value)
    ip.run_cell_magic("feature_view", "other --entity user_id", "SELECT * FROM events")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("training_set", "labels user_stats:login_count other:login_count")
    assert "use --full-names to name columns view__feature" in str(info.value)
    assert "full_feature_names" not in str(info.value)
    # the library keeps its own words
    with pytest.raises(fsnb.FsnbError, match="pass timestamp_field=<your time column>"):
        magics_of(ip).store.get_historical_features(ip.user_ns["labels"], ["user_stats:login_count"], timestamp_field="ts")


def test_a_duckdb_error_in_the_cell_keeps_its_caret_under_the_mistake(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("feature_view", "user_stats --entity user_id", "SELECT user_id, FROM events WHERE = 1")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("DuckDB: Parser Error: syntax error at or near")
    source = next(line for line in lines if line.startswith("LINE 1: "))
    caret = lines[lines.index(source) + 1]
    assert caret.strip() == "^" and source[caret.index("^") :].startswith("= 1")
    # a message that points at no place in the SQL stays one line
    with pytest.raises(UsageError, match=r'evnts does not exist! Did you mean "events"\?') as info:
        ip.run_cell_magic("feature_view", "user_stats --entity user_id", "SELECT * FROM evnts")
    assert "\n" not in str(info.value)
    assert not magics_of(ip).store.registry.has("user_stats")


def test_rerunning_a_cell_says_which_rows_were_added_removed_and_kept(ip: InteractiveShell) -> None:
    user_stats(ip)
    again = user_stats(ip, sql="SELECT * FROM events WHERE login_count < 9 UNION ALL SELECT 7, TIMESTAMP '2024-03-09', 3, 1.0")
    reg = again.registration
    assert (reg.rows_written, reg.rows_removed, reg.rows_unchanged) == (1, 1, 3)
    assert "1 row added, 1 row removed, 3 rows unchanged" in repr(again)
    html = again._repr_html_()
    assert "rows removed" in html and "rows unchanged" in html
    first = user_stats(ip, flags="--description fresh")  # a new version, rows replaced again
    assert (first.registration.rows_written, first.registration.rows_removed) == (1, 1)


def test_feature_view_help_shows_the_cell_magic(ip: InteractiveShell) -> None:
    usage = (magics_of(ip).feature_view.__doc__ or "").split("\n\n")[1]
    assert "%%feature_view" in usage


def test_a_missing_time_column_names_the_flag(ip: InteractiveShell) -> None:
    for flags, flag in (("--timestamp ts", "use --timestamp COL"), ("--created made", "use --created COL")):
        with pytest.raises(UsageError) as info:
            user_stats(ip, flags)
        assert flag in str(info.value) and "_field" not in str(info.value), str(info.value)
