"""The leakage explorer widget, driven through its own traits as the front end would."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import altair as alt
import polars as pl
import pytest

import fsnb
from fsnb.notebook.explorer import OVERVIEW_SAMPLE, LeakageExplorer

D = dt.datetime


@pytest.fixture
def report(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "store")
    events = pl.DataFrame(
        {
            "user_id": [42, 42, 42, 17, 5, 5],
            "region": ["eu", "eu", "eu", "us", "eu", "us"],
            "event_timestamp": [D(2024, 3, 1), D(2024, 3, 4), D(2024, 3, 7), D(2024, 2, 10), D(2024, 1, 1), D(2024, 1, 2)],
            "login_count": [2, 5, 9, 1, 3, 4],
            "avg_purchase": [10.0, 12.5, 30.0, 5.0, 1.0, 2.0],
        }
    )
    store.register(fsnb.FeatureView("user_stats", entities=["user_id", "region"], ttl="30d"), events)
    labels = pl.DataFrame(
        {
            "user_id": [17, 42, 5, 42],
            "region": ["us", "eu", "eu", "eu"],
            "event_timestamp": [D(2024, 2, 20), D(2024, 3, 3), D(2024, 1, 5), D(2024, 3, 5)],
            "label": [0, 1, 0, 1],
        }
    )
    yield store.explain_leakage(labels, ["user_stats:login_count", "user_stats:avg_purchase"])
    store.close()


def roles(explorer: LeakageExplorer) -> dict[str, list[float]]:
    data = explorer.timeline_data()
    return {r: data.filter(pl.col("role") == r)["value"].to_list() for r in data["role"].unique().to_list()}


def timeline_values(explorer: LeakageExplorer) -> list[dict]:
    """The data the browser got for the timeline's points (from the synced spec)."""
    spec = explorer.timeline.spec
    datasets = spec["datasets"]
    points = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
    return datasets[points["data"]["name"]]


def test_opens_on_first_leaky_row_with_composite_keys(report):
    explorer = report.explorer()
    assert isinstance(explorer, LeakageExplorer)
    assert explorer.row == 1  # user 42/eu on 03-03: the first leaky row
    assert roles(explorer) == {"point-in-time": [2.0], "history": [5.0], "naive": [9.0]}
    values = timeline_values(explorer)
    assert [(v["value"], v["role"]) for v in values] == [(2.0, "point-in-time"), (5.0, "history"), (9.0, "naive")]
    assert "+4d" in str(explorer.timeline.spec)  # the horizon is written on the chart
    assert "TTL window (30d)" in str(explorer.timeline.spec)
    header = explorer.header.value
    assert "2</span> of 4 label rows leak" in header and "50.0%" in header
    assert "<b>Row 2</b>: user_id=42, region=eu" in explorer.vectors.value  # 1-based on screen
    # leaky rows first in the picker list
    assert [v for _, v in explorer.row_list.options][:2] == [1, 3]
    assert explorer.row_list.options[0][0] == "⚠ #2 · user_id=42, region=eu · 2024-03-03 · +4.0d"


def test_selecting_rows_through_widget_traits(report):
    explorer = report.explorer()
    # a click on the overview chart, as the front end reports it
    explorer.overview._vl_selections = {"pick": {"value": {"vlPoint": {"or": [{"row": 0}]}}, "store": []}}
    assert explorer.row == 0
    assert roles(explorer) == {"point-in-time = naive": [1.0]}  # user 17/us: not leaky
    assert explorer.overview.params.current == 0
    assert "user_id=17, region=us" in explorer.vectors.value
    # choosing in the list, as the Select front end does
    explorer.row_list.value = 2
    assert explorer.row == 2
    assert roles(explorer) == {"point-in-time = naive": [3.0]}  # 5/eu only, not 5/us
    # the buttons
    explorer.next_leaky_button.click()
    assert explorer.row == 3
    assert roles(explorer) == {"history": [2.0], "point-in-time": [5.0], "naive": [9.0]}
    explorer.next_leaky_button.click()
    assert explorer.row == 1  # wraps around
    explorer.prev_button.click()
    assert explorer.row == 0
    explorer.next_button.click()
    assert explorer.row == 1
    # the feature selector
    explorer.feature_picker.value = "avg_purchase"
    assert explorer.feature == "avg_purchase"
    assert roles(explorer) == {"point-in-time": [10.0], "history": [12.5], "naive": [30.0]}
    assert "avg_purchase" in explorer.header.value
    with pytest.raises(fsnb.SchemaMismatch, match="did you mean 'login_count'"):
        explorer.feature = "login_cnt"


def test_search(report):
    explorer = report.explorer()
    explorer.search.value = "17"
    # the matches, then the selected row (1), listed after them so the matches never move
    assert [v for _, v in explorer.row_list.options] == [0, 1]
    assert explorer.row_list.value == 1
    explorer.row_list.value = 0
    assert explorer.row == 0
    explorer.search.value = "3"  # a row number, as shown on screen (1-based)
    assert [v for _, v in explorer.row_list.options] == [2, 0]
    explorer.search.value = ""
    assert [v for _, v in explorer.row_list.options] == [1, 3, 0, 2]


def test_specs_are_valid_vega_lite(report):
    explorer = report.explorer()
    alt.LayerChart.from_dict(explorer.timeline_chart().to_dict(validate=True))
    explorer.overview_chart().to_dict(validate=True)


def test_snapshot_is_static_svg(report):
    explorer = report.explorer()
    html = explorer.snapshot_html()
    assert "<svg" in html and "fsnb-snapshot" in html
    assert "login_count for user_id=42, region=eu" in html


def test_overview_sends_a_sample(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "big")
    n = 20_000
    events = pl.DataFrame(
        {
            "user_id": list(range(n)) * 2,
            "event_timestamp": [D(2024, 1, 1)] * n + [D(2024, 6, 1)] * n,
            "x": [1.0] * n + [2.0] * n,
        }
    )
    store.register(fsnb.FeatureView("v", entities=["user_id"]), events)
    labels = pl.DataFrame({"user_id": list(range(n)), "event_timestamp": [D(2024, 3, 1)] * (n // 2) + [D(2024, 7, 1)] * (n // 2)})
    explorer = store.explain_leakage(labels, "v:x").explorer()
    spec = explorer.overview.spec
    (values,) = spec["datasets"].values()
    assert len(values) == OVERVIEW_SAMPLE
    assert sum(v["leaked"] for v in values) == OVERVIEW_SAMPLE * 4 // 5
    assert len(explorer.row_list.options) == 200
    store.close()


def test_import_fsnb_does_not_load_widgets():
    code = "import sys, fsnb, fsnb.leakage; print('altair' in sys.modules or 'ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_late_arrival_is_shown(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "late")
    events = pl.DataFrame(
        {
            "user_id": [1, 1],
            "event_timestamp": [D(2024, 1, 1), D(2024, 1, 20)],
            "created": [D(2024, 1, 15), D(2024, 1, 20)],
            "score": [0.5, 0.9],
        }
    )
    store.register(fsnb.FeatureView("scores", entities=["user_id"], created_timestamp_field="created"), events)
    labels = pl.DataFrame({"user_id": [1], "event_timestamp": [D(2024, 1, 10)]})
    explorer = store.explain_leakage(labels, "scores:score").explorer()
    assert "(arrived late)" in explorer.vectors.value
    assert roles(explorer) == {"point-in-time": [0.5], "naive": [0.9]}
    store.close()


def test_text_features_are_categories(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "text")
    events = pl.DataFrame(
        {"user_id": [1, 1, 1], "event_timestamp": [D(2024, 1, 1), D(2024, 1, 5), D(2024, 1, 9)], "plan": ["free", "pro", "team"]}
    )
    store.register(fsnb.FeatureView("plans", entities=["user_id"]), events)
    labels = pl.DataFrame({"user_id": [1], "event_timestamp": [D(2024, 1, 6)], "label": [1]})
    report = store.explain_leakage(labels, "plans:plan")
    assert report.summary["naive_metric"].to_list() == [None]  # no metric for text
    explorer = report.explorer()
    assert roles(explorer) == {"history": ["free"], "point-in-time": ["pro"], "naive": ["team"]}
    spec = explorer.timeline_chart().to_dict(validate=True)
    points = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
    assert points["encoding"]["y"]["type"] == "nominal"
    store.close()
