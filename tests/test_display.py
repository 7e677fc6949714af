"""Rich displays: what a person sees for views, registrations, stores and results."""

from __future__ import annotations

import datetime as dt

import polars as pl

import fsnb
from fsnb.notebook import display

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
    text = display.registration_text(second)
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
    assert "user_stats" in repr(display.ViewList.of(store))


def test_formatting() -> None:
    assert display.fmt(None) == "null"
    assert display.fmt(10.0) == "10.0" and display.fmt(2.5) == "2.5"
    assert display.fmt(0.1 + 0.2) == "0.3"
    assert display.fmt(dt.timedelta(days=4)) == "4d"
    assert display.fmt(dt.datetime(2024, 3, 3, tzinfo=dt.timezone.utc)) == "2024-03-03 00:00:00 UTC"
    assert display.percent(1 / 3) == "33.3%" and display.percent(0.0) == "0%" and display.percent(1e-5) == "<0.1%"
    assert display.plural(1, "row") == "1 row" and display.plural(1200, "row") == "1,200 rows"
    assert display.text_table(["a", "bb"], [(1, None)]) == "a  bb\n1  null"


def test_online_and_materialized_results_stay_plain_dicts() -> None:
    r = display.OnlineFeatures({"user_id": [42, 5], "login_count": [9, None]})
    assert r == {"user_id": [42, 5], "login_count": [9, None]}
    assert repr(r) == "{'user_id': [42, 5], 'login_count': [9, None]}"
    page = r._repr_html_()
    assert page.count("<tr>") == 3  # header + one row per entity
    m = display.Materialized({"user_stats": 1200})
    assert m == {"user_stats": 1200} and "1,200" in m._repr_html_()
    assert "no online feature views" in display.Materialized()._repr_html_()


def test_changes_read_like_words() -> None:
    assert display.nice_change("ttl_seconds: 2592000.0 -> None") == "TTL: 30d -> none"
    assert display.nice_change("ttl_seconds: None -> 43200.0") == "TTL: none -> 12h"
    long = "query: 'SELECT " + "x, " * 100 + "' -> 'SELECT y'"
    assert len(display.nice_change(long)) == 160 and display.nice_change(long).endswith("…")
    assert display.nice_change("added clicks") == "added clicks"
