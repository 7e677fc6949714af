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


# -- issue 12: the explorer polished ------------------------------------------------------


def test_roc_curves_match_the_summary_auc(report):
    summary = {r["feature"]: r for r in report.summary.iter_rows(named=True)}
    for feature in report.feature_names:
        curves = report.roc(feature)
        assert curves is report.roc(feature)  # computed once
        for join, metric in (("naive", "naive_metric"), ("point-in-time", "pit_metric")):
            curve = curves.filter(pl.col("join") == join)
            fpr, tpr = curve["fpr"].to_list(), curve["tpr"].to_list()
            assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
            area = sum((b - a) * (c + d) / 2 for a, b, c, d in zip(fpr, fpr[1:], tpr, tpr[1:], strict=False))
            assert area == pytest.approx(summary[feature][metric]) == pytest.approx(curve["auc"][0])
    assert report.roc("login_count").filter(pl.col("join") == "point-in-time")["auc"][0] == pytest.approx(0.75)


def test_roc_frame_orients_like_the_metric_and_stays_small():
    import random

    from fsnb.leakage_roc import MAX_POINTS, roc_frame

    rng = random.Random(7)
    label = [rng.random() < 0.3 for _ in range(5000)]
    score = [(-1.0 if y else 0.0) + rng.gauss(0, 1) for y in label]  # lower scores mean positive
    positives = [s for s, y in zip(score, label, strict=True) if y]
    negatives = [s for s, y in zip(score, label, strict=True) if not y]
    pos_arr, neg_arr = sorted(positives), sorted(negatives)
    import bisect

    auc = sum(bisect.bisect_left(neg_arr, p) + (bisect.bisect_right(neg_arr, p) - bisect.bisect_left(neg_arr, p)) / 2 for p in pos_arr)
    auc /= len(pos_arr) * len(neg_arr)
    frame = roc_frame({"naive": pl.Series(score)}, pl.Series(label))
    assert frame.height <= MAX_POINTS
    assert frame["auc"][0] == pytest.approx(max(auc, 1 - auc), abs=1e-9)
    assert frame["auc"][0] > 0.7  # read the right way round
    assert roc_frame({"naive": pl.Series([1.0, 2.0])}, pl.Series([1, 1])).is_empty()  # no negatives: no curve


def test_summary_picture_is_roc_per_feature(report):
    explorer = report.explorer()
    spec = explorer.impact.spec
    assert spec["title"]["text"] == "What the leak does to a model"
    assert [panel["title"]["text"] for panel in spec["hconcat"]] == ["login_count", "avg_purchase"]
    text = str(spec)
    assert "naive join (AUC 1.000)" in text and "point-in-time (AUC 0.750)" in text
    alt.HConcatChart.from_dict(explorer.impact_chart().to_dict(validate=True))
    html = explorer.snapshot_html()
    assert html.count("<svg") == 2 and "What the leak does to a model" in html


def test_summary_picture_without_binary_label(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "s")
    events = pl.DataFrame(
        {"user_id": [1, 1, 2, 2, 3], "event_timestamp": [D(2024, 1, 1), D(2024, 1, 9), D(2024, 1, 1), D(2024, 1, 9), D(2024, 1, 1)], "x": [1.0, 5.0, 2.0, 9.0, 3.0]}
    )
    store.register(fsnb.FeatureView("v", entities=["user_id"]), events)
    labels = pl.DataFrame({"user_id": [1, 2, 3], "event_timestamp": [D(2024, 1, 5)] * 3, "spend": [10.5, 30.0, 12.0]})
    explorer = store.explain_leakage(labels, "v:x", label="spend").explorer()
    assert explorer.report.roc("x") is None
    spec = explorer.impact.spec
    assert spec["mark"]["type"] == "bar" and "|Pearson r|" in str(spec)  # the metric side by side
    unlabelled = store.explain_leakage(labels.drop("spend").with_columns(other=pl.lit("a"), more=pl.lit("b")), "v:x").explorer()
    assert unlabelled.impact is None and "Pass <code>label=</code>" in unlabelled.header.value
    store.close()


def test_timeline_names_the_ttl_window_and_places_labels_by_space(report):
    explorer = report.explorer()
    spec = explorer.timeline_chart().to_dict()
    layers = spec["layer"]
    rect = next(layer for layer in layers if layer["mark"]["type"] == "rect")
    assert rect["encoding"]["fill"]["legend"] is not None  # a legend entry for the window
    texts = {str(layer["mark"].get("color")): layer for layer in layers if layer["mark"]["type"] == "text"}
    datasets = spec["datasets"]
    shown = {layer["encoding"]["text"]["field"]: datasets[layer["data"]["name"]][0] for layer in texts.values()}
    assert {row[field] for field, row in shown.items()} == {"TTL 30d", "label time", "naive: +4d after the label"}
    for layer in texts.values():  # each placed by the room it has, where the chart is drawn
        assert "width" in layer["mark"]["align"]["expr"] or "scale('x'" in layer["mark"]["align"]["expr"]
    assert spec["width"] == "container"  # the live chart fills its box
    assert explorer.timeline_chart(width=640).to_dict()["width"] == 640  # the snapshot cannot


def test_charts_follow_the_theme_and_have_no_action_menu(report):
    explorer = report.explorer()
    for chart in (explorer.overview, explorer.timeline, explorer.impact):
        spec = chart.spec
        assert spec["config"]["background"] == "transparent"
        assert spec["config"]["axis"]["labelColor"] == "currentColor"
        assert "black" not in str(spec) and "white" not in str(spec)
        assert chart.embed_options["actions"] is False
    assert "var(--jp-ui-font-color1" in explorer.header.value  # the widget's text and tooltips use the theme


def test_tooltips_use_human_names_and_show_values(report):
    explorer = report.explorer()
    for spec in (explorer.overview.spec, explorer.timeline.spec):
        titles = [t.get("title") for layer in spec["layer"] for t in (layer.get("encoding", {}).get("tooltip") or [])]
        assert titles and all(titles), titles
        assert not {"label_time", "horizon_days", "row", "value", "role"} & set(titles)
    overview = next(iter(explorer.overview.spec["datasets"].values()))
    first = next(v for v in overview if v["row"] == 1)
    assert (first["n"], first["entity"], first["pit_value"], first["naive_value"], first["horizon"]) == (
        2, "user_id=42, region=eu", "2", "9", "+4d"
    )


def test_row_numbers_on_screen_count_from_one(report):
    explorer = report.explorer()
    assert explorer.row == 1
    assert "label row <b>2</b> of 4" in explorer.position.value
    assert repr(explorer).startswith("<LeakageExplorer: label row 2 of 4")
    assert "label row 2 at 2024-03-03" in str(explorer.timeline.spec)


def test_row_list_keeps_its_order_when_a_row_is_selected(report):
    explorer = report.explorer()
    listed = list(explorer.row_list.options)
    for row in (0, 3, 2, 1):
        explorer.row = row
        assert list(explorer.row_list.options) == listed
        assert explorer.row_list.value == row
    explorer.search.value = "user_id=17"
    assert [v for _, v in explorer.row_list.options] == [0, 1]  # the match, then the selected row after it
    explorer.row = 0
    assert [v for _, v in explorer.row_list.options] == [0]
    assert explorer.row == 0


def test_overview_always_holds_the_selected_row(tmp_path):
    store = fsnb.FeatureStore(tmp_path / "big")
    n = 2_000
    events = pl.DataFrame(
        {"user_id": list(range(n)) * 2, "event_timestamp": [D(2024, 1, 1)] * n + [D(2024, 6, 1)] * n, "x": [1.0] * n + [2.0] * n}
    )
    store.register(fsnb.FeatureView("v", entities=["user_id"]), events)
    labels = pl.DataFrame({"user_id": list(range(n)), "event_timestamp": [D(2024, 3, 1)] * n})
    explorer = store.explain_leakage(labels, "v:x").explorer()
    (values,) = explorer.overview.spec["datasets"].values()
    rows = {v["row"] for v in values}
    assert len(values) == OVERVIEW_SAMPLE and explorer.row in rows
    outside = next(r for r in range(n) if r not in rows)
    explorer.row = outside
    (values,) = explorer.overview.spec["datasets"].values()
    assert outside in {v["row"] for v in values} and len(values) == OVERVIEW_SAMPLE + 1
    assert explorer.overview.params.current == outside
    ring = explorer.overview.spec["layer"][1]
    assert ring["transform"] == [{"filter": "datum.row == current"}]
    subtitle = " ".join(explorer.overview.spec["title"]["subtitle"])
    assert "500 of 2,000 label rows: 500 leaky and 0 not" in subtitle and "evenly spaced" in subtitle
    assert "selected row" in subtitle
    store.close()


def test_demo_transcript_shows_whole_cells_and_uncut_output():
    import nbformat

    from fsnb import demo

    cell = nbformat.v4.new_code_cell("labels = make()\n%training_set labels v:x -o train", execution_count=3)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(f"row {i}" for i in range(40)))]
    nb = nbformat.v4.new_notebook(cells=[cell])
    lines = demo.transcript(nb).splitlines()
    assert lines[:2] == ["In [3]: labels = make()", "   ...: %training_set labels v:x -o train"]
    assert lines[-1] == "    row 39" and len(lines) == 42
