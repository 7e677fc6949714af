"""Rich displays: what a person sees for views, registrations, stores and results."""

from __future__ import annotations

import datetime as dt

import polars as pl

import fsnb
from fsnb.definitions import ViewChange
from fsnb.notebook import format as formatting
from fsnb.notebook import render
from fsnb.notebook.gather import view_entries

EVENTS = pl.DataFrame(
    {
        "user_id": [42, 42, 42, 17],
        "event_timestamp": [dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 7), dt.datetime(2024, 2, 10)],
        "login_count": [2, 5, 9, 1],
        "avg_purchase": [10.0, 12.5, 30.0, 5.0],
    }
)


def test_feature_view_repr_and_html() -> None:
    view = fsnb.FeatureView("user_stats", entities=["user_id", "shop"], ttl="12h", features={"clicks": "BIGINT"}, description="<b>x</b>")
    assert repr(view) == "FeatureView('user_stats', entities=['user_id', 'shop'], timestamp='event_timestamp', ttl=12h, features=[clicks])"
    page = view._repr_html_()
    assert "user_id, shop" in page and "12h" in page and "clicks" in page and "BIGINT" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page  # user text is escaped
    assert "<script" not in page


def test_registration_shows_stats_schema_and_changes(store: fsnb.FeatureStore) -> None:
    first = store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), EVENTS)
    page = first._repr_html_()
    for expected in ("version 1 (created)", "4", "2024-02-10 00:00:00 UTC → 2024-03-07 00:00:00 UTC", "30d", "DOUBLE"):
        assert expected in page
    second = store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="7d"))
    assert "changed from version 1" in second._repr_html_()
    text = render.registration_text(second)
    assert "v2 (new version)" in text and "TTL 7d" in text and "changed:" in text


def test_store_html_lists_views_and_training_sets(store: fsnb.FeatureStore) -> None:
    assert "none yet" in store._repr_html_()
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), EVENTS)
    labels = pl.DataFrame({"user_id": [42], "event_timestamp": [dt.datetime(2024, 3, 3)]})
    frame = store.get_historical_features(labels, ["user_stats:login_count"])
    fp = store.record_training_set("train", frame, ["user_stats:login_count"])
    page = store._repr_html_()
    assert "user_stats" in page and "login_count, avg_purchase" in page
    assert "train" in page and fp[:16] in page
    assert "user_stats" in repr(render.ViewList.of(str(store.path), view_entries(store.parts)))


def test_formatting() -> None:
    assert formatting.fmt(None) == "null"
    assert formatting.fmt(10.0) == "10.0" and formatting.fmt(2.5) == "2.5"
    assert formatting.fmt(0.1 + 0.2) == "0.3"
    assert formatting.fmt(dt.timedelta(days=4)) == "4d"
    assert formatting.fmt(dt.datetime(2024, 3, 3, tzinfo=dt.timezone.utc)) == "2024-03-03 00:00:00 UTC"
    assert formatting.percent(1 / 3) == "33.3%" and formatting.percent(0.0) == "0%" and formatting.percent(1e-5) == "<0.1%"
    assert formatting.plural(1, "row") == "1 row" and formatting.plural(1200, "row") == "1,200 rows"
    assert formatting.text_table(["a", "bb"], [(1, None)]) == "a  bb\n1  null"


def test_online_and_materialized_results_stay_dicts_with_a_text_form() -> None:
    r = render.OnlineFeatures({"user_id": [42, 5], "login_count": [9, None]})
    assert r == {"user_id": [42, 5], "login_count": [9, None]}
    # A console (and make demo) shows a table, not a raw dict.
    assert repr(r) == "online features (2 entities):\nuser_id  login_count\n42       9\n5        null"
    assert repr(render.OnlineFeatures({"user_id": [1], "n": [2]})).startswith("online features (1 entity):")
    page = r._repr_html_()
    assert page.count("<tr>") == 3  # header + one row per entity
    m = render.Materialized({"user_stats": 1200})
    assert m == {"user_stats": 1200} and "1,200" in m._repr_html_()
    assert repr(m) == "materialized into the online store:\nview        rows written\nuser_stats  1,200"
    assert "no online feature views" in render.Materialized()._repr_html_()
    assert "no online feature views" in repr(render.Materialized())


def test_changes_read_like_words() -> None:
    day = dt.timedelta(days=1)
    assert render.change_text(ViewChange("ttl", 30 * day, None)) == "TTL: 30d -> none"
    assert render.change_text(ViewChange("ttl", None, day / 2)) == "TTL: none -> 12h"
    long = ViewChange("query", "SELECT " + "x, " * 100, "SELECT y")
    assert len(render.change_text(long)) == 160 and render.change_text(long).endswith("…")
    added = ViewChange("features", {"a": "BIGINT"}, {"a": "BIGINT", "clicks": "BIGINT", "views": None})
    assert render.change_text(added) == "added clicks, views"
    assert render.change_text(ViewChange("entities", ("a",), ("a", "b"))) == "entities: a -> a, b"
    assert render.change_text(ViewChange("description", "", "weekly")) == "description: none -> weekly"
    assert render.change_text(ViewChange("tags", {}, {"team": "growth"})) == "tags: none -> team=growth"


def test_plurals_everywhere(store: fsnb.FeatureStore) -> None:
    assert formatting.plural(1, "entity") == "1 entity" and formatting.plural(3, "entity") == "3 entities"
    assert formatting.plural(2, "key") == "2 keys"
    one = pl.DataFrame({"user_id": [7], "event_timestamp": [dt.datetime(2024, 3, 1)], "clicks": [1]})
    reg = store.register(fsnb.FeatureView("solo", entities=["user_id"]), one)
    text = render.registration_text(reg)
    assert "1 row, 1 entity" in text and "1 row written" in text and "entities" not in text.split("\n")[0]
    assert "sample (1 row)" in render.registration_html(reg, one)


def test_wide_tables_scroll_inside_their_box(store: fsnb.FeatureStore) -> None:
    import re

    wide = {f"feature_number_{i}": [i] for i in range(40)}
    events = pl.DataFrame({"user_id": [1], "event_timestamp": [dt.datetime(2024, 3, 1)], **wide})
    store.register(fsnb.FeatureView("wide", entities=["user_id"]), events)
    labels = pl.DataFrame({"user_id": [1], "event_timestamp": [dt.datetime(2024, 3, 2)]})
    frame = store.get_historical_features(labels, ["wide:*"])
    store.record_training_set("train", frame, ["wide:*"])
    summary = render.TrainingSetSummary.of(frame, [c for c in frame.columns if c.startswith("feature")], "event_timestamp")
    pages = [render.ViewList.of(str(store.path), view_entries(store.parts))._repr_html_(), store._repr_html_(), summary._repr_html_()]
    for page in pages:
        tables = page.count("<table")
        assert tables >= 1
        # every table sits directly in a wrapper that scrolls sideways; nothing clips it
        assert len(re.findall(r'<div class="fsnb-scroll" style="overflow-x:auto;max-width:100%"><table', page)) == tables
        assert "overflow:hidden" not in page and "text-overflow" not in page


class _Report:
    """The part of a LeakageReport the summary reads: its per-feature summary."""

    def __init__(self, summary: pl.DataFrame) -> None:
        self.summary = summary


def _leak_summary(leaky: list[int], horizons: list[dt.timedelta | None]) -> _Report:
    n = len(leaky)
    return _Report(
        pl.DataFrame(
            {
                "feature": ["login_count", "avg_purchase", "country"][:n],
                "leaky_rows": leaky,
                "leak_rate": [x / 4 for x in leaky],
                "max_horizon": pl.Series(horizons, dtype=pl.Duration("ns")),
            }
        )
    )


def _frame(times: list[dt.datetime]) -> pl.DataFrame:
    n = len(times)
    return pl.DataFrame(
        {"user_id": list(range(n)), "event_timestamp": times, "login_count": [1] * n, "avg_purchase": [None] * n, "country": ["x"] * n}
    )


def test_training_set_names_every_leaking_feature_and_shows_shape_once() -> None:
    frame = _frame([dt.datetime(2024, 3, 3)] * 4)
    report = _leak_summary([2, 3, 0], [dt.timedelta(days=4), dt.timedelta(hours=6), None])
    summary = render.TrainingSetSummary.of(frame, ["login_count", "avg_purchase", "country"], "event_timestamp", report=report, name="t")
    text = repr(summary)
    assert "would have leaked 3 rows of avg_purchase and 2 rows of login_count" in text
    assert "of country" not in text
    page = summary._repr_html_()
    assert page.count("4 rows × 5 columns") == 1 and "shape" not in page
    # one label time: shown once, not as a range from itself to itself
    assert "2024-03-03 00:00:00" in page and "→" not in page and "→" not in text
    assert "4d" in page and "6h" in page


def test_training_set_without_leaks_shows_no_null_horizon() -> None:
    frame = _frame([dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 3)])
    report = _leak_summary([0, 0], [None, None])
    summary = render.TrainingSetSummary.of(frame, ["login_count", "avg_purchase"], "event_timestamp", report=report)
    page, text = summary._repr_html_(), repr(summary)
    assert "null" not in page.replace("null rate", "") and "null" not in text.replace("null rate", "")
    assert "max horizon" in page and "—" in page
    assert "leaked nothing" in text
    assert "2024-03-01 00:00:00 → 2024-03-03 00:00:00" in page  # two label times: a range
    # no report (no rows, or no analysis): no leakage columns at all, nothing invented
    bare = render.TrainingSetSummary.of(frame, ["login_count"], "event_timestamp")
    assert "max horizon" not in bare._repr_html_() and not bare.has_leakage
