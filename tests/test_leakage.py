"""store.explain_leakage(): the naive-join comparison, row by row and per feature."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

import fsnb
from fsnb.leakage import LeakageReport, format_duration

D = dt.datetime


@pytest.fixture
def store(tmp_path):
    s = fsnb.FeatureStore(tmp_path / "store")
    events = pl.DataFrame(
        {
            "user_id": [42, 42, 42, 17],
            "event_timestamp": [D(2024, 3, 1), D(2024, 3, 4), D(2024, 3, 7), D(2024, 2, 10)],
            "login_count": [2, 5, 9, 1],
            "avg_purchase": [10.0, 12.5, 30.0, 5.0],
        }
    )
    s.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="30d"), events)
    yield s
    s.close()


def seed_labels() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [42, 17, 99, 42, 42],
            "event_timestamp": [D(2024, 3, 3), D(2024, 2, 20), D(2024, 3, 3), D(2024, 3, 3), D(2024, 3, 8)],
            "label": [1, 0, 1, 1, 0],
        }
    )


def test_seed_example_row_by_row(store):
    report = store.explain_leakage(seed_labels(), ["user_stats:login_count", "user_stats:avg_purchase"])
    assert isinstance(report, LeakageReport) and fsnb.LeakageReport is LeakageReport
    rows = report.rows
    # every label row once, in input order, label columns unchanged (duplicates too)
    assert rows.height == 5
    assert rows["user_id"].to_list() == [42, 17, 99, 42, 42]
    assert rows["label"].to_list() == [1, 0, 1, 1, 0]
    first = rows.row(0, named=True)
    assert first["login_count"] == 2
    assert first["login_count__naive"] == 9
    assert first["login_count__leaked"] is True
    assert first["login_count__horizon"] == dt.timedelta(days=4)
    assert first["login_count__pit_time"] == D(2024, 3, 1, tzinfo=dt.timezone.utc)
    assert first["login_count__naive_time"] == D(2024, 3, 7, tzinfo=dt.timezone.utc)
    assert first["avg_purchase"] == 10.0 and first["avg_purchase__naive"] == 30.0
    assert rows.row(3, named=True) == first | {"label": 1}
    # user 17's February row: the latest record is before the label: not leaky
    feb = rows.row(1, named=True)
    assert feb["login_count"] == 1 and feb["login_count__naive"] == 1
    assert feb["login_count__leaked"] is False and feb["login_count__horizon"] is None
    # unknown user: nothing to leak
    unknown = rows.row(2, named=True)
    assert unknown["login_count"] is None and unknown["login_count__naive"] is None
    assert unknown["login_count__leaked"] is False
    # after the last event the naive row is the point-in-time row
    last = rows.row(4, named=True)
    assert last["login_count"] == 9 and last["login_count__leaked"] is False
    # no created column: late arrival cannot be measured
    assert last["login_count__late"] is None


def test_seed_example_summary(store):
    report = store.explain_leakage(seed_labels(), ["user_stats:*"])
    summary = report.summary
    assert summary["feature"].to_list() == ["login_count", "avg_purchase"]
    rec = summary.row(0, named=True)
    assert rec["rows"] == 5
    assert rec["leaky_rows"] == 2
    assert rec["leak_rate"] == pytest.approx(0.4)
    assert rec["median_horizon"] == dt.timedelta(days=4)
    assert rec["max_horizon"] == dt.timedelta(days=4)
    assert rec["late_rows"] is None
    assert rec["changed_rows"] == 2
    assert report.label == "label" and rec["metric"] == "roc_auc"
    text = repr(report)
    assert "leaks future values into 2 of 5 label rows (40.0%)" in text
    assert "up to 4d ahead" in text
    html = report._repr_html_()
    assert "<table>" in html and "40.0%" in html and "login_count" in html


def test_late_arrival_is_flagged(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "late")
    events = pl.DataFrame(
        {
            "user_id": [1, 1, 2],
            "event_timestamp": [D(2024, 1, 1), D(2024, 1, 20), D(2024, 1, 1)],
            # user 1's Jan 1 row was only written on Jan 15 (a late batch); user 2's on time
            "created": [D(2024, 1, 15), D(2024, 1, 20), D(2024, 1, 1, 1)],
            "score": [0.5, 0.9, 0.1],
        }
    )
    store.register(fsnb.FeatureView("scores", entities=["user_id"], created_timestamp_field="created"), events)
    labels = pl.DataFrame({"user_id": [1, 2, 1], "event_timestamp": [D(2024, 1, 10), D(2024, 1, 10), D(2024, 1, 16)]})
    report = store.explain_leakage(labels, ["scores:score"])
    rows = report.rows
    assert rows["score"].to_list() == [0.5, 0.1, 0.5]
    assert rows["score__late"].to_list() == [True, False, False]
    assert rows["score__leaked"].to_list() == [True, False, True]
    rec = report.summary.row(0, named=True)
    assert rec["late_rows"] == 1
    assert rec["leaky_rows"] == 2
    # no label column: no metric
    assert report.label is None and rec["naive_metric"] is None
    assert "1 point-in-time rows arrived late" in repr(report)
    # what the late flag predicts: as_of_ingestion drops exactly those values
    guarded = store.get_historical_features(labels, ["scores:score"], as_of_ingestion=True)
    assert guarded["score"].to_list() == [None, 0.1, 0.5]
    store.close()


def test_composite_keys_and_ttl(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "ck")
    events = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "item": ["a", "b", "a", "a"],
            "event_timestamp": [D(2024, 1, 1), D(2024, 1, 1), D(2024, 3, 1), D(2024, 1, 5)],
            "clicks": [3, 7, 30, 4],
        }
    )
    store.register(fsnb.FeatureView("clicks", entities=["user_id", "item"], ttl="7d"), events)
    labels = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 1],
            "item": ["a", "b", "a", "a"],
            "event_timestamp": [D(2024, 1, 2), D(2024, 1, 2), D(2024, 1, 6), D(2024, 2, 1)],
            "y": [0.0, 1.0, 2.0, 3.0],
        }
    )
    report = store.explain_leakage(labels, "clicks:clicks")
    rows = report.rows
    assert rows["clicks"].to_list() == [3, 7, 4, None]  # last one: outside the 7 day TTL
    assert rows["clicks__naive"].to_list() == [30, 7, 4, 30]
    assert rows["clicks__leaked"].to_list() == [True, False, False, True]
    assert rows["clicks__horizon"].to_list() == [dt.timedelta(days=59), None, None, dt.timedelta(days=29)]
    assert report.summary["metric"].to_list() == ["abs_pearson"]
    history = report.history(0, "clicks")
    assert history["value"].to_list() == [3, 30]  # only user 1 / item a
    store.close()


def test_label_parameter(store):
    labels = seed_labels().with_columns(weight=pl.lit(1.0))
    ambiguous = store.explain_leakage(labels, ["user_stats:login_count"])
    assert ambiguous.label is None and ambiguous.summary["naive_metric"].to_list() == [None]
    chosen = store.explain_leakage(labels, ["user_stats:login_count"], label="label")
    assert chosen.label == "label" and chosen.summary["metric"].to_list() == ["roc_auc"]
    with pytest.raises(fsnb.SchemaMismatch, match="no column 'lable'; did you mean 'label'"):
        store.explain_leakage(labels, ["user_stats:login_count"], label="lable")
    with pytest.raises(fsnb.UnknownFeature, match="did you mean 'login_count'"):
        store.explain_leakage(labels, ["user_stats:login_cnt"])


def churn_world(seed: int = 7, users: int = 3000) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Users whose activity before the label predicts it a little, and whose activity
    after the label (a churned user goes quiet) gives it away."""
    rng = np.random.default_rng(seed)
    label_day = rng.integers(30, 60, users)
    engagement = rng.normal(size=users)
    churned = (rng.random(users) < 1 / (1 + np.exp(2.0 + 0.6 * engagement))).astype(np.int64)
    rows = []
    for u in range(users):
        for day in range(0, 90, 5):
            activity = 10 + 2 * engagement[u] + rng.normal(scale=4)
            if day > label_day[u]:
                activity = 1.0 if churned[u] else activity + 8
            rows.append((u, day, activity))
    frame = np.array(rows)
    start = dt.datetime(2024, 1, 1)
    events = pl.DataFrame(
        {
            "user_id": frame[:, 0].astype(np.int64),
            "event_timestamp": [start + dt.timedelta(days=int(d)) for d in frame[:, 1]],
            "activity": frame[:, 2],
        }
    )
    labels = pl.DataFrame(
        {
            "user_id": np.arange(users, dtype=np.int64),
            "event_timestamp": [start + dt.timedelta(days=int(d), hours=12) for d in label_day],
            "churned": churned,
        }
    )
    return events, labels


def test_metric_inflation_on_generated_data(tmp_path):
    events, labels = churn_world()
    store = fsnb.FeatureStore(tmp_path / "gen")
    store.register(fsnb.FeatureView("activity", entities=["user_id"], ttl="30d"), events)
    report = store.explain_leakage(labels, ["activity:activity"])
    rec = report.summary.row(0, named=True)
    assert rec["metric"] == "roc_auc"
    assert rec["leaky_rows"] == labels.height  # every label is before the last event
    assert 0.5 < rec["pit_metric"] < 0.8
    assert rec["naive_metric"] > 0.95
    assert rec["inflation"] == pytest.approx(rec["naive_metric"] - rec["pit_metric"])
    # cross-check the AUC computed in DuckDB against a direct pairwise computation
    rows = report.rows
    for column, expected in (("activity", rec["pit_metric"]), ("activity__naive", rec["naive_metric"])):
        x = rows[column].to_numpy()
        y = rows["churned"].to_numpy()
        pos, neg = x[y == 1], x[y == 0]
        greater = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
        assert max(greater, 1 - greater) == pytest.approx(expected, abs=1e-9)
    # a numeric label gives |Pearson r|, also checked against numpy
    numeric = labels.with_columns(spend=pl.col("churned") * 3.0 + pl.Series(np.random.default_rng(1).normal(size=labels.height)))
    report = store.explain_leakage(numeric.drop("churned"), ["activity:activity"])
    rec = report.summary.row(0, named=True)
    assert rec["metric"] == "abs_pearson"
    pit = report.rows["activity"].to_numpy()
    assert rec["pit_metric"] == pytest.approx(abs(np.corrcoef(pit, report.rows["spend"].to_numpy())[0, 1]))
    store.close()


def test_format_duration():
    assert format_duration(dt.timedelta(days=4)) == "4d"
    assert format_duration(dt.timedelta(hours=36)) == "1.5d"
    assert format_duration(dt.timedelta(minutes=90)) == "1.5h"
    assert format_duration(None) == "–"


def test_empty_labels_and_a_view_without_data(store):
    store.register(fsnb.FeatureView("empty", entities=["user_id"], features={"score": "DOUBLE"}))
    report = store.explain_leakage(seed_labels(), ["user_stats:login_count", "empty:score"])
    assert report.rows["score"].to_list() == [None] * 5
    assert report.rows["score__naive"].to_list() == [None] * 5
    assert report.rows["score__leaked"].to_list() == [False] * 5
    assert report.summary["leaky_rows"].to_list() == [2, 0]
    assert report.history(0, "score").height == 0

    none = store.explain_leakage(seed_labels().head(0), ["user_stats:login_count"])
    assert none.rows.height == 0
    rec = none.summary.row(0, named=True)
    assert rec["rows"] == 0 and rec["leaky_rows"] == 0 and rec["leak_rate"] == 0.0
    with pytest.raises(fsnb.InvalidData, match="no label rows to explore"):
        none.explorer()


def test_aware_label_times_compare_in_utc(store):
    labels = seed_labels().head(1).with_columns(pl.col("event_timestamp").dt.replace_time_zone("Europe/Paris"))
    rec = store.explain_leakage(labels, ["user_stats:login_count"]).rows.row(0, named=True)
    # 2024-03-03 00:00 in Paris is 2024-03-02 23:00 UTC: the naive row is 4 days and 1 hour ahead
    assert rec["login_count"] == 2 and rec["login_count__horizon"] == dt.timedelta(days=4, hours=1)
