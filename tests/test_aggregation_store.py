"""Window aggregations through the store's API, end to end (DESIGN section 12).

Offline values are checked against a brute-force reference; online values against the
offline ones at the same instant, with "now" under the test's control.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

import fsnb
from fsnb import timeutil
from fsnb.errors import FsnbError, InvalidDefinition

UTC = dt.timezone.utc
BASE = dt.datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def txn_view(**kw: Any) -> fsnb.FeatureView:
    return fsnb.FeatureView(
        "txn_stats",
        entities=["user_id"],
        timestamp_field="ts",
        aggregations=[
            fsnb.Aggregation("amount", "sum", "7d"),
            fsnb.Aggregation("amount", "mean", "30d"),
            fsnb.Aggregation(None, "count", "1d", name="txn_count_1d"),
            fsnb.Aggregation("amount", "max", "2d"),
            fsnb.Aggregation("amount", "stddev", "7d"),
        ],
        **kw,
    )


def events(n: int = 120, keys: int = 4, seed: int = 7) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        # whole hours, so events sit exactly on label times and on window edges
        ts = BASE + dt.timedelta(hours=rng.randrange(0, 24 * 40))
        amount = None if rng.random() < 0.1 else float(rng.randrange(-50, 200))
        rows.append({"user_id": rng.randrange(keys), "ts": ts, "amount": amount})
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "amount": pl.Float64})


def brute(frame: pl.DataFrame, view: fsnb.FeatureView, key: Any, t: dt.datetime) -> dict[str, Any]:
    """Each aggregation of key's events with time in (t - window, t], by hand."""
    rows = [r for r in frame.iter_rows(named=True) if r["user_id"] == key]
    out: dict[str, Any] = {}
    for agg in view.aggregations or ():
        inside = [r for r in rows if t - agg.window < r["ts"] <= t]
        if agg.column is None:
            out[agg.name] = len(inside)
            continue
        values = [r[agg.column] for r in inside if r[agg.column] is not None]
        if agg.function == "count":
            out[agg.name] = len(values)
        elif not values:
            out[agg.name] = None
        elif agg.function == "sum":
            out[agg.name] = math.fsum(values)
        elif agg.function == "mean":
            out[agg.name] = math.fsum(values) / len(values)
        elif agg.function == "max":
            out[agg.name] = max(values)
        elif agg.function == "min":
            out[agg.name] = min(values)
        else:
            out[agg.name] = statistics.stdev(values) if len(values) > 1 else None
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def set_now(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    us = (when - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
    monkeypatch.setattr(timeutil, "now_us", lambda: us)
    monkeypatch.setattr("fsnb.serving.now_us", lambda: us)  # get_online_features' clock (fsnb/serving.py)


# -- the definition ---------------------------------------------------------------------------
def test_definition_is_validated_persisted_and_shown(store: fsnb.FeatureStore) -> None:
    view = txn_view()
    assert view.feature_names == ()  # no event column known yet: inferred at first ingest
    assert "sum(amount) 7d as amount_sum_7d" in repr(view) and "count(*) 1d as txn_count_1d" in repr(view)
    assert fsnb.FeatureView.from_dict(view.to_dict()) == view
    with pytest.raises(InvalidDefinition, match="drop the ttl"):
        txn_view(ttl="30d")
    with pytest.raises(InvalidDefinition, match="two aggregations named"):
        fsnb.FeatureView("v", entities=["k"], aggregations=[fsnb.Aggregation("a", "sum", "1d")] * 2)
    with pytest.raises(InvalidDefinition, match="not a column of its events"):
        fsnb.FeatureView("v", entities=["k"], features=["b"], aggregations=[fsnb.Aggregation("a", "sum", "1d")])
    with pytest.raises(InvalidDefinition, match="key, timestamp or column"):
        fsnb.FeatureView("v", entities=["k"], features=["a"], aggregations=[fsnb.Aggregation("a", "sum", "1d", name="a")])
    crafted = {**view.to_dict(), "aggregations": [{"column": "amount", "function": "sum", "window": "7d", "name": "x;drop"}]}
    with pytest.raises(InvalidDefinition):
        fsnb.FeatureView.from_dict(crafted)
    with pytest.raises(InvalidDefinition):
        fsnb.FeatureView.from_dict({**view.to_dict(), "aggregations": "sum"})
    # an ordinary view's definition (and so its hash) is as before: no "aggregations" key
    assert "aggregations" not in fsnb.FeatureView("plain", entities=["k"]).to_dict()

    reg = store.register(view, events())
    assert reg.view.feature_names == ("amount",)  # the raw event column the view stores
    reopened = fsnb.FeatureStore(store.path)
    assert reopened.get_feature_view("txn_stats") == reg.view
    assert [a.name for a in reopened.get_feature_view("txn_stats").aggregations or ()] == [
        "amount_sum_7d", "amount_mean_30d", "txn_count_1d", "amount_max_2d", "amount_stddev_7d"
    ]
    reopened.close()


def test_aggregated_column_types_are_checked_at_first_ingest(store: fsnb.FeatureStore) -> None:
    view = fsnb.FeatureView("t", entities=["user_id"], timestamp_field="ts", aggregations=[fsnb.Aggregation("amount", "sum", "7d")])
    bad = pl.DataFrame({"user_id": [1], "ts": [BASE], "amount": ["12"]})
    with pytest.raises(FsnbError, match="needs a numeric column"):
        store.register(view, bad)
    assert not store.registry.has("t")  # nothing written
    store.register(view)
    with pytest.raises(FsnbError, match="needs a numeric column"):
        store.ingest("t", bad)
    assert store.get_feature_view("t").features is None


# -- offline ----------------------------------------------------------------------------------
def test_training_set_matches_brute_force_mixed_with_an_ordinary_view(store: fsnb.FeatureStore) -> None:
    ev = events()
    reg = store.register(txn_view(), ev)
    profile = pl.DataFrame({"user_id": [0, 1, 2, 3], "event_timestamp": [BASE] * 4, "tier": ["a", "b", "c", "d"]})
    store.register(fsnb.FeatureView("profile", entities=["user_id"]), profile)
    rng = random.Random(3)
    stamps = [BASE + dt.timedelta(hours=rng.randrange(-24, 24 * 42)) for _ in range(60)]
    keys = [rng.randrange(6) for _ in stamps]  # keys 4 and 5 have no events
    stamps[:3] = [stamps[3]] * 3  # duplicate label rows
    keys[:3] = [keys[3]] * 3
    labels = pl.DataFrame({"user_id": keys, "event_timestamp": stamps, "y": list(range(len(keys)))})
    out = store.get_historical_features(labels, ["profile:tier", "txn_stats:*"])
    assert out["y"].to_list() == labels["y"].to_list()  # every label row once, in input order
    assert out.columns == ["user_id", "event_timestamp", "y", "tier", *(a.name for a in reg.view.aggregations or ())]
    for row in out.iter_rows(named=True):
        want = brute(ev, reg.view, row["user_id"], row["event_timestamp"])
        for name, value in want.items():
            assert same(row[name], value), (row, name, value)
        assert row["tier"] == (None if row["user_id"] > 3 else "abcd"[row["user_id"]])
    assert out.schema["txn_count_1d"] == pl.Int64 and out.schema["amount_sum_7d"] == pl.Float64


def test_as_of_ingestion_counts_only_events_known_at_the_label(store: fsnb.FeatureStore) -> None:
    view = fsnb.FeatureView(
        "late", entities=["user_id"], timestamp_field="ts", created_timestamp_field="known",
        aggregations=[fsnb.Aggregation("amount", "sum", "7d"), fsnb.Aggregation(None, "count", "7d")],
    )
    day = dt.timedelta(days=1)
    ev = pl.DataFrame({
        "user_id": [1, 1, 1],
        "ts": [BASE, BASE + day, BASE + 2 * day],
        "known": [BASE, BASE + 3 * day, BASE + 2 * day],  # the second event arrived two days late
        "amount": [1.0, 10.0, 100.0],
    })
    store.register(view, ev)
    labels = pl.DataFrame({"user_id": [1, 1], "event_timestamp": [BASE + 2 * day, BASE + 3 * day]})
    plain = store.get_historical_features(labels, ["late:*"])
    known = store.get_historical_features(labels, ["late:*"], as_of_ingestion=True)
    assert plain["amount_sum_7d"].to_list() == [111.0, 111.0]
    assert known["amount_sum_7d"].to_list() == [101.0, 111.0]
    assert known["count_7d"].to_list() == [2, 3]


# -- online -----------------------------------------------------------------------------------
def offline_now(store: fsnb.FeatureStore, keys: list[int], now: dt.datetime) -> dict[str, list[Any]]:
    labels = pl.DataFrame({"user_id": keys, "event_timestamp": [now] * len(keys)})
    return store.get_historical_features(labels, ["txn_stats:*"]).drop("user_id", "event_timestamp").to_dict(as_series=False)


def assert_online_is_offline(store: fsnb.FeatureStore, keys: list[int], now: dt.datetime) -> None:
    online = store.get_online_features(["txn_stats:*"], [{"user_id": k} for k in keys])
    offline = offline_now(store, keys, now)
    for name, values in offline.items():
        assert all(same(a, b) for a, b in zip(online[name], values, strict=True)), (name, online[name], values)
    report = store.check_skew("txn_stats")
    assert report.ok, report.details


def test_online_equals_offline_after_materialize_and_as_the_clock_passes_window_edges(
    store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ev = events()
    store.register(txn_view(), ev)
    now = BASE + dt.timedelta(days=35)
    set_now(monkeypatch, now)
    store.materialize()
    keys = [0, 1, 2, 3, 9]
    assert_online_is_offline(store, keys, now)
    assert any(v for v in store.get_online_features("txn_stats:txn_count_1d", [{"user_id": k} for k in keys])["txn_count_1d"])
    # no write: events leave their windows as time passes, exactly at the edge
    for hours in (1, 24, 24 * 2, 24 * 5 + 1, 24 * 8):
        later = now + dt.timedelta(hours=hours)
        set_now(monkeypatch, later)
        assert_online_is_offline(store, keys, later)
    # an event exactly one window before now is out; one at now is in
    edge = pl.DataFrame({"user_id": [7, 7], "ts": [later - dt.timedelta(days=1), later], "amount": [5.0, 6.0]})
    store.ingest("txn_stats", edge)
    store.materialize()
    got = store.get_online_features(["txn_stats:txn_count_1d", "txn_stats:amount_sum_7d"], {"user_id": 7})
    assert got == {"user_id": [7], "txn_count_1d": [1], "amount_sum_7d": [11.0]}


def test_pushes_keep_a_stream_view_current(store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ev = events(60)
    store.register(txn_view(sync="stream"), ev.filter(pl.col("ts") < BASE + dt.timedelta(days=30)))
    now = BASE + dt.timedelta(days=30)
    set_now(monkeypatch, now)
    store.materialize()
    later = ev.filter(pl.col("ts") >= BASE + dt.timedelta(days=30)).sort("ts")
    keys = [0, 1, 2, 3]
    for chunk in later.iter_slices(7):
        now = max(now, chunk["ts"].max())  # type: ignore[type-var]
        set_now(monkeypatch, now)
        store.push("txn_stats", chunk)
        assert_online_is_offline(store, keys, now)
    store.push("txn_stats", later.head(3))  # a replayed batch changes nothing
    assert_online_is_offline(store, keys, now)


def test_redis_online_store_says_plainly_it_is_not_supported_yet(tmp_path: Path, redis_url: str) -> None:
    with fsnb.FeatureStore(tmp_path / "r", online=redis_url) as store:
        with pytest.raises(InvalidDefinition, match="need the SQLite online store"):
            store.register(txn_view(), events(10))
        with pytest.raises(InvalidDefinition, match="need the SQLite online store"):
            store.register(txn_view())
        assert store.list_feature_views() == []  # nothing written
        store.register(txn_view(online=False), events(10))  # offline-only is fine
        assert store.get_historical_features(
            pl.DataFrame({"user_id": [0], "event_timestamp": [BASE + dt.timedelta(days=50)]}), "txn_stats:txn_count_1d"
        )["txn_count_1d"].to_list() == [0]


# -- the magic, the display and export --------------------------------------------------------
@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    monkeypatch.setenv("FSNB_STORE", str(tmp_path / "store"))
    shell.run_line_magic("load_ext", "fsnb")
    shell.user_ns["txns"] = events(40)
    yield shell
    shell.run_line_magic("unload_ext", "fsnb")
    shell.user_ns.pop("txns", None)


MAGIC = '%%feature_view txn_stats --entity user_id --timestamp ts --aggregate "sum(amount) 7d" --aggregate "count(*) 1d as txn_count_1d"'


def test_magic_defines_aggregations_and_shows_them(ip: InteractiveShell) -> None:
    shown = ip.run_cell_magic("feature_view", MAGIC.removeprefix("%%feature_view "), "txns")
    view = shown.view
    assert [(a.function, a.column, a.window_text, a.name) for a in view.aggregations] == [
        ("sum", "amount", "7d", "amount_sum_7d"), ("count", None, "1d", "txn_count_1d")
    ]
    html, text = shown._repr_html_(), repr(shown)
    assert "amount_sum_7d" in html and "aggregation: sum(amount) over 7d" in html
    assert "txn_count_1d" in text and "event column" not in text.split("schema:")[0]
    assert shown.sample.columns == ["user_id", "ts", "amount", "amount_sum_7d", "txn_count_1d"]  # sample values
    first = shown.sample.row(0, named=True)
    assert first["txn_count_1d"] == brute(ip.user_ns["txns"], view, first["user_id"], first["ts"])["txn_count_1d"]
    with pytest.raises(UsageError, match="unknown function 'avgg'"):
        ip.run_cell_magic("feature_view", 'x --entity user_id --timestamp ts --aggregate "avgg(amount) 7d"', "txns")


def test_export_round_trips_the_aggregations(ip: InteractiveShell, tmp_path: Path) -> None:
    from fsnb.export import export

    made = ip.run_cell_magic("feature_view", MAGIC.removeprefix("%%feature_view "), "txns").view
    nb = new_notebook(cells=[
        new_code_cell("%load_ext fsnb"),
        new_code_cell(
            "import polars as pl, datetime as dt\n"
            "txns = pl.DataFrame(" + repr(events(40).with_columns(pl.col("ts").dt.to_string()).to_dict(as_series=False))
            + ").with_columns(pl.col('ts').str.to_datetime(time_zone='UTC'))"
        ),
        new_code_cell(MAGIC + "\ntxns"),
    ])
    path = tmp_path / "agg.ipynb"
    nbformat.write(nb, str(path))
    script = export(path).script
    assert 'fsnb.Aggregation("amount", "sum", "7d", name="amount_sum_7d")' in script
    assert 'fsnb.Aggregation(None, "count", "1d", name="txn_count_1d")' in script
    pipeline = tmp_path / "p.py"
    pipeline.write_text(script)
    run = tmp_path / "run"
    run.mkdir()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(pipeline)], cwd=run, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    with fsnb.FeatureStore(run / ".fsnb") as again:
        rebuilt = again.get_feature_view("txn_stats")
    assert rebuilt.aggregations == made.aggregations and rebuilt.to_dict() == made.to_dict()


def test_server_json_lists_aggregation_features_with_their_windows(store: fsnb.FeatureStore) -> None:
    from fsnb import aggregation_views

    reg = store.register(txn_view(), events(10))
    listed = aggregation_views.view_json(reg.view)
    assert listed is not None and listed[0] == {
        "name": "amount_sum_7d", "function": "sum", "column": "amount", "window": "7d", "type": "DOUBLE"
    }
    assert aggregation_views.served_types(reg.view)["txn_count_1d"] == "BIGINT"


# -- leakage ----------------------------------------------------------------------------------
def test_leakage_report_reads_the_naive_aggregate_as_of_the_keys_latest_event(store: fsnb.FeatureStore) -> None:
    ev = events()
    reg = store.register(txn_view(), ev)
    rng = random.Random(5)
    stamps = [BASE + dt.timedelta(hours=rng.randrange(0, 24 * 40)) for _ in range(30)]
    keys = [rng.randrange(5) for _ in stamps]
    labels = pl.DataFrame({"user_id": keys, "event_timestamp": stamps, "label": [rng.randrange(2) for _ in stamps]})
    report = store.explain_leakage(labels, ["txn_stats:amount_sum_7d", "txn_stats:txn_count_1d"])
    latest = dict(ev.group_by("user_id").agg(pl.col("ts").max()).iter_rows())
    leaky = 0
    for row in report.rows.iter_rows(named=True):
        key, t = row["user_id"], row["event_timestamp"]
        if key not in latest:
            assert row["amount_sum_7d__naive"] is None and row["txn_count_1d__naive"] is None  # no row to join
            continue
        naive = brute(ev, reg.view, key, latest[key])
        assert same(row["amount_sum_7d__naive"], naive["amount_sum_7d"]) and row["txn_count_1d__naive"] == naive["txn_count_1d"]
        assert same(row["amount_sum_7d"], brute(ev, reg.view, key, t)["amount_sum_7d"])
        assert row["amount_sum_7d__leaked"] == (latest[key] > t)
        leaky += latest[key] > t
    summary = {r["feature"]: r for r in report.summary.iter_rows(named=True)}
    assert summary["amount_sum_7d"]["leaky_rows"] == leaky > 0


def test_a_view_that_only_counts_events_needs_no_event_column(store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    view = fsnb.FeatureView("logins", entities=["user_id"], timestamp_field="ts", aggregations=[fsnb.Aggregation(None, "count", "1d")])
    day = dt.timedelta(days=1)
    store.register(view, pl.DataFrame({"user_id": [1, 1, 2], "ts": [BASE, BASE + day / 8, BASE]}))
    labels = pl.DataFrame({"user_id": [1, 1, 2], "event_timestamp": [BASE + day / 4, BASE + day, BASE + day]})
    assert store.get_historical_features(labels, "logins:count_1d")["count_1d"].to_list() == [2, 1, 0]
    set_now(monkeypatch, BASE + day / 2)
    store.materialize()
    assert store.get_online_features("logins:count_1d", [{"user_id": 1}, {"user_id": 2}])["count_1d"] == [2, 1]
    assert store.check_skew("logins").ok


def test_a_new_aggregation_is_a_new_version_served_at_once(store: fsnb.FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ev = events(50)
    first = store.register(txn_view(), ev)
    set_now(monkeypatch, BASE + dt.timedelta(days=38))
    store.materialize()
    more = fsnb.FeatureView(
        "txn_stats", entities=["user_id"], timestamp_field="ts",
        aggregations=[*(first.view.aggregations or ()), fsnb.Aggregation("amount", "min", "3d")],
    )
    second = store.register(more)  # no data: the event columns and their types are kept
    assert second.new_version and second.version == 2 and second.view.feature_types == {"amount": "DOUBLE"}
    assert any("aggregations" in str(c) for c in second.changes)
    store.materialize()
    assert_online_is_offline(store, [0, 1, 2, 3], BASE + dt.timedelta(days=38))
    assert "amount_min_3d" in store.get_online_features("txn_stats:*", {"user_id": 0})
