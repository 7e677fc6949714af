"""Definitions and the registry: versions, no-op re-registration, sharing across processes."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import polars as pl
import pytest

import fsnb
from fsnb.definitions import format_ttl, parse_ttl

EVENTS = pl.DataFrame({
    "user_id": [42, 42], "event_timestamp": [datetime(2024, 3, 1), datetime(2024, 3, 4)],
    "login_count": [2, 5], "avg_purchase": [1.0, 2.0],
})


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
    ("45s", timedelta(seconds=45)), ("0s", timedelta(0)), (None, None), (timedelta(days=2), timedelta(days=2)),
])
def test_ttl_forms(text, expected) -> None:
    assert parse_ttl(text) == expected
    if expected is not None and expected:
        assert parse_ttl(format_ttl(expected)) == expected


def test_features_are_inferred_with_types(store) -> None:
    reg = store.register(fsnb.FeatureView("user_stats", entities="user_id"), EVENTS)
    assert reg.new_version and reg.version == 1 and reg.rows_written == 2
    view = store.get_feature_view("user_stats")
    assert view.feature_types == {"login_count": "BIGINT", "avg_purchase": "DOUBLE"}
    assert view.entity_types == {"user_id": "BIGINT"}
    assert reg.stats["rows"] == 2 and reg.stats["entities"] == 1


def test_identical_registration_is_a_no_op_and_changes_make_versions(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), EVENTS)
    again = store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), EVENTS)
    assert (again.version, again.new_version, again.rows_written) == (1, False, 0)
    changed = store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="7d", description="weekly"))
    assert changed.version == 2 and changed.new_version
    assert "ttl_seconds: 2592000.0 -> 604800.0" in [str(c) for c in changed.changes]
    versions = store.list_versions("user_stats")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].view.ttl == timedelta(days=30)
    assert store.get_feature_view("user_stats", version=1).ttl == timedelta(days=30)
    assert store.get_feature_view("user_stats").ttl == timedelta(days=7)
    # the data registered under version 1 is still there
    assert len(store.read("user_stats")) == 2


def test_adding_a_feature_is_a_new_version_and_old_rows_read_null(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), EVENTS)
    wider = EVENTS.with_columns(country=pl.lit("fr")).with_columns(pl.col("event_timestamp") + timedelta(days=10))
    reg = store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), wider)
    assert reg.version == 2 and [str(c) for c in reg.changes] == ["added country"]
    history = store.read("user_stats")
    assert history["country"].to_list() == [None, None, "fr", "fr"]


def test_exact_duplicates_are_dropped_and_replace_keeps_ingestion_times(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), pl.concat([EVENTS, EVENTS]))
    assert len(store.read("user_stats")) == 2
    assert store.ingest("user_stats", EVENTS) == 0
    first = store.offline.read(store.get_feature_view("user_stats"), system=True)
    fixed = EVENTS.with_columns(login_count=pl.Series([2, 6]))
    reg = store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), fixed, replace=True)
    assert reg.rows_written == 1
    after = store.offline.read(store.get_feature_view("user_stats"), system=True)
    assert after.column("login_count").to_pylist() == [2, 6]
    # the unchanged row kept its original ingestion time
    assert after.column("_fsnb_ingested_at")[0] == first.column("_fsnb_ingested_at")[0]


def test_another_process_sees_the_registry(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"], description="from a"), EVENTS)
    code = (
        "import sys, fsnb; s = fsnb.FeatureStore(sys.argv[1]); v = s.get_feature_view('user_stats'); "
        "print(v.description, v.feature_names, s.stats('user_stats')['rows'])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "from a ('login_count', 'avg_purchase') 2"


def test_reads_between_times_and_delete(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), EVENTS)
    assert store.read("user_stats", start="2024-03-02")["login_count"].to_list() == [5]
    assert store.read("user_stats", end=datetime(2024, 3, 2))["login_count"].to_list() == [2]
    store.delete_feature_view("user_stats")
    assert store.list_feature_views() == []
    with pytest.raises(fsnb.UnknownFeatureView):
        store.read("user_stats")


def test_reprs_are_readable() -> None:
    view = fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d", features=["login_count"])
    assert repr(view) == (
        "FeatureView('user_stats', entities=['user_id'], timestamp='event_timestamp', ttl=30d, features=[login_count])"
    )


def test_untyped_features_carry_over_without_becoming_a_type(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"], features=["login_count"]))
    again = store.register(fsnb.FeatureView("user_stats", entities=["user_id"], description="same features"))
    assert again.view.feature_types == {"login_count": None}
    store.ingest("user_stats", EVENTS.drop("avg_purchase"))
    assert store.get_feature_view("user_stats").feature_types == {"login_count": "BIGINT"}


def test_ttl_is_a_timedelta_once_a_view_exists() -> None:
    import dataclasses

    from fsnb.definitions import FeatureView

    assert FeatureView.__annotations__["ttl"] == "timedelta | None"
    for given, expected in (("30d", timedelta(days=30)), (90, timedelta(seconds=90)), (timedelta(hours=2), timedelta(hours=2)), (None, None)):
        view = FeatureView("v", entities=["k"], ttl=given)
        assert view.ttl == expected and (expected is None or type(view.ttl) is timedelta)
        assert dataclasses.replace(view, description="x").ttl == expected
        assert FeatureView.from_dict(view.to_dict()) == view


def test_duration_us_is_exact_integer_arithmetic() -> None:
    from fsnb.timeutil import duration_us

    longest = timedelta(days=999_999, seconds=86_399, microseconds=999_999)
    exact = (999_999 * 86_400 + 86_399) * 1_000_000 + 999_999
    assert duration_us(longest) == exact and isinstance(duration_us(longest), int)
    assert int(longest.total_seconds() * 1_000_000) != exact  # what a float of seconds would give
    assert duration_us(None) is None and duration_us(timedelta(0)) == 0


def test_definition_diff_is_structured() -> None:
    from fsnb.definitions import FeatureView, ViewChange, diff_views

    old = FeatureView("v", entities=["k"], ttl="30d", features={"a": "BIGINT", "b": "DOUBLE"})
    new = FeatureView("v", entities=["k"], ttl=None, features={"a": "VARCHAR", "c": "BIGINT"}, online=False)
    changes = diff_views(old, new)
    assert [c.field for c in changes] == ["features", "ttl", "online"]
    assert changes[1] == ViewChange("ttl", timedelta(days=30), None)
    assert changes[0].feature_changes() == (["c"], ["b"], [("a", "BIGINT", "VARCHAR")])
    assert [str(c) for c in changes] == ["added c; removed b; a: BIGINT -> VARCHAR", "ttl_seconds: 2592000.0 -> None", "online: True -> False"]
    assert diff_views(old, old) == []
    # a type that becomes known at first ingest is not a change
    assert diff_views(FeatureView("v", entities=["k"], features=["a"]), FeatureView("v", entities=["k"], features={"a": "BIGINT"})) == []
