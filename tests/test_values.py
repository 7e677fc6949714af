"""Silent wrong values (issue 11): key typing online, NaN online, exact times, duplicate
columns, and re-running an unchanged definition."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import fsnb
from fsnb.errors import InvalidData, SchemaMismatch

T0 = datetime(2024, 1, 1)


# -- duplicate column names --------------------------------------------------------------
def _dup_arrow() -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([1, 2]), pa.array([T0, T0]), pa.array([1.0, 2.0]), pa.array([9.0, 9.0])],
        names=["k", "event_timestamp", "x", "x"],
    )


@pytest.mark.parametrize("form", ["arrow", "pandas"])
def test_duplicate_columns_are_refused_naming_the_column(store, form) -> None:
    data = _dup_arrow() if form == "arrow" else _dup_arrow().to_pandas()
    with pytest.raises(InvalidData, match="'x' more than once") as info:
        store.register(fsnb.FeatureView("v", entities=["k"]), data)
    assert "\n" not in str(info.value)
    assert store.registry.names() == []


def test_duplicate_label_columns_are_refused(store) -> None:
    store.register(fsnb.FeatureView("v", entities=["k"]), pl.DataFrame({"k": [1], "event_timestamp": [T0], "x": [1.0]}))
    labels = pd.DataFrame([[1, T0, 0, 1]], columns=["k", "event_timestamp", "y", "y"])
    with pytest.raises(InvalidData, match="'y' more than once"):
        store.get_historical_features(labels, ["v:x"])


# -- online entity values are typed against the view's key type ----------------------------
def _served(store, name: str = "v", key: str = "k", keys=None, values=None) -> None:
    keys = keys if keys is not None else [1, 2]
    values = values if values is not None else [10.0, 20.0]
    data = pl.DataFrame({key: keys, "event_timestamp": [T0] * len(keys), "x": values})
    store.register(fsnb.FeatureView(name, entities=[key]), data)
    store.materialize()


@pytest.mark.parametrize(
    "rows",
    [
        {"k": np.int64(2)},
        [{"k": np.int32(1)}, {"k": np.int64(2)}],
        {"k": pd.Series([1, 2])},
        {"k": pl.Series([1, 2])},
        {"k": pa.array([1, 2])},
        {"k": np.array([1, 2], dtype=np.uint16)},
        {"k": [1, 2]},
        pd.DataFrame({"k": [1, 2]}).to_dict("list"),
    ],
)
def test_numpy_pandas_polars_arrow_keys_find_their_rows(online_store, rows) -> None:
    _served(online_store)
    got = online_store.get_online_features(["v:x"], rows)
    n = len(got["k"])
    assert got["x"] == ([10.0, 20.0] if n == 2 else [20.0])
    assert all(type(k) is int for k in got["k"])


@pytest.mark.parametrize("value", ["1", 1.0, True, np.float64(1.0), b"1"])
def test_a_key_value_of_another_type_is_a_schema_mismatch(online_store, value) -> None:
    _served(online_store)
    with pytest.raises(SchemaMismatch, match="cannot be a BIGINT key") as info:
        online_store.get_online_features(["v:x"], {"k": value})
    assert "\n" not in str(info.value)


def test_string_and_bool_keys_are_typed(online_store) -> None:
    _served(online_store, "s", "name", ["a", "b"])
    assert online_store.get_online_features(["s:x"], {"name": np.str_("b")})["x"] == [20.0]
    with pytest.raises(SchemaMismatch, match="VARCHAR key"):
        online_store.get_online_features(["s:x"], {"name": 1})
    _served(online_store, "b", "flag", [True, False])
    assert online_store.get_online_features(["b:x"], {"flag": pd.Series([np.bool_(False)])})["x"] == [20.0]
    with pytest.raises(SchemaMismatch, match="BOOLEAN key"):
        online_store.get_online_features(["b:x"], {"flag": 1})


def test_time_keys_match_whatever_form_the_instant_is_given_in(online_store) -> None:
    day = datetime(2024, 3, 1)
    _served(online_store, "t", "at", [day, day + timedelta(hours=1)])
    aware = (day + timedelta(hours=1)).replace(tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=2)))
    for given in (day + timedelta(hours=1), aware, pd.Timestamp(aware), np.datetime64("2024-03-01T01:00")):
        assert online_store.get_online_features(["t:x"], {"at": given})["x"] == [20.0]
    assert online_store.get_online_features(["t:x"], {"at": pd.Series([day], dtype="datetime64[ns, UTC]")})["x"] == [10.0]
    with pytest.raises(SchemaMismatch):
        online_store.get_online_features(["t:x"], {"at": "2024-03-01"})


def test_null_keys_find_nothing_and_ragged_columns_are_refused(online_store) -> None:
    _served(online_store)
    assert online_store.get_online_features(["v:x"], {"k": pd.Series([1, None], dtype="Int64")})["x"] == [10.0, None]
    data = pl.DataFrame({"a": [1], "b": ["x"], "event_timestamp": [T0], "y": [1]})
    online_store.register(fsnb.FeatureView("c", entities=["a", "b"]), data)
    online_store.materialize()
    assert online_store.get_online_features(["c:y"], {"a": np.array([1]), "b": pd.Series(["x"])})["y"] == [1]
    with pytest.raises(InvalidData, match="differ in length"):
        online_store.get_online_features(["c:y"], {"a": [1, 1], "b": ["x"]})


# -- NaN is a value, null is missing --------------------------------------------------------
def _nan_view(store) -> None:
    data = pl.DataFrame(
        {"k": [1, 2, 3], "event_timestamp": [T0] * 3, "x": [float("nan"), None, 1.5], "s": ["NaN", "a", None]}
    )
    store.register(fsnb.FeatureView("v", entities=["k"]), data)


def _check_nan_served(store) -> None:
    one = store.get_online_features(["v:x", "v:s"], {"k": 1})
    assert math.isnan(one["x"][0]) and one["s"] == ["NaN"]  # a string 'NaN' stays a string
    many = store.get_online_features(["v:x", "v:s"], {"k": [1, 2, 3, 4]})
    assert math.isnan(many["x"][0]) and many["x"][1:] == [None, 1.5, None]
    assert many["s"] == ["NaN", "a", None, None]
    assert store.check_skew("v").ok


def test_nan_stays_nan_online_after_materialize(online_store) -> None:
    _nan_view(online_store)
    online_store.materialize()
    _check_nan_served(online_store)
    online_store.materialize_incremental()
    _check_nan_served(online_store)


def test_nan_stays_nan_online_after_push(online_store) -> None:
    online_store.register(fsnb.FeatureView("v", entities=["k"], sync="stream"))
    online_store.push(
        "v", pl.DataFrame({"k": [1, 2, 3], "event_timestamp": [T0] * 3, "x": [float("nan"), None, 1.5], "s": ["NaN", "a", None]})
    )
    _check_nan_served(online_store)
    # the slow (DuckDB) encoding path: a nanosecond timestamp column
    online_store.push(
        "v",
        pa.table({
            "k": [4], "event_timestamp": pa.array([1704067200000000001], pa.timestamp("ns")),
            "x": [float("nan")], "s": ["b"],
        }),
    )
    assert math.isnan(online_store.get_online_features(["v:x"], {"k": 4})["x"][0])


# -- re-running an unchanged definition changes nothing -----------------------------------------
def test_replace_with_unchanged_rows_keeps_online_values_and_removed_rows_are_not_served(online_store) -> None:
    s = online_store
    view = fsnb.FeatureView("v", entities=["k"], features=["x"])
    rows = pl.DataFrame({"k": [1, 1, 2], "event_timestamp": [T0, T0 + timedelta(days=1), T0], "x": [1.0, 2.0, 5.0]})
    s.register(view, rows, replace=True)
    s.materialize()
    s.register(view, rows, replace=True)  # what the %%feature_view magic runs on a re-run
    assert s.get_online_features(["v:x"], {"k": [1, 2]})["x"] == [2.0, 5.0]
    more = pl.concat([rows, pl.DataFrame({"k": [3], "event_timestamp": [T0], "x": [7.0]})])
    s.register(view, more, replace=True)  # adds rows only: what is served is still true
    assert s.get_online_features(["v:x"], {"k": [1, 2, 3]})["x"] == [2.0, 5.0, None]
    s.register(view, more.filter(pl.col("x") != 2.0), replace=True)  # removes the row served for k=1
    assert s.get_online_features(["v:x"], {"k": [1, 2]})["x"] == [None, None]
    s.materialize_incremental()
    assert s.get_online_features(["v:x"], {"k": [1, 2, 3]})["x"] == [1.0, 5.0, 7.0]


# -- times of every unit, naive or aware, compared exactly -----------------------------------------
NOON_NS = 1_704_110_400_000_000_000  # 2024-01-01 12:00:00 UTC


def _ns(values, tz="UTC") -> pa.Array:
    return pa.array(values, pa.timestamp("ns", tz))


def test_aware_nanosecond_features_labels_and_files_are_accepted_and_exact(store, tmp_path) -> None:
    import pyarrow.parquet as pq

    features = pa.table({"k": [1, 1], "event_timestamp": _ns([NOON_NS + 500, NOON_NS + 900]), "x": [1.0, 2.0]})
    path = tmp_path / "spark.parquet"
    pq.write_table(features, path)
    store.register(fsnb.FeatureView("v", entities=["k"]), str(path))
    labels = pd.DataFrame({"k": [1, 1, 1, 1], "event_timestamp": pd.to_datetime(
        [NOON_NS + 499, NOON_NS + 500, NOON_NS + 899, NOON_NS + 900], utc=True)})
    assert str(labels["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    got = store.get_historical_features(labels, ["v:x"])
    assert got["x"].to_list() == [None, 1.0, 1.0, 2.0]  # a feature 400 ns after the label is not joined
    assert got.schema["event_timestamp"] == pl.Datetime("ns", "UTC")  # the label column as given
    assert got["event_timestamp"].cast(pl.Int64).to_list() == [NOON_NS + 499, NOON_NS + 500, NOON_NS + 899, NOON_NS + 900]
    stored = store.read("v")["event_timestamp"].cast(pl.Int64).to_list()
    assert stored == [NOON_NS + 500, NOON_NS + 900]
    report = store.explain_leakage(labels, ["v:x"])
    assert report.rows["x__horizon"].cast(pl.Int64).to_list() == [401, 400, 1, None]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Kolkata"])
def test_every_unit_naive_or_aware_compares_exactly(store, unit, tz) -> None:
    step = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    t = NOON_NS // step
    features = pa.table({"k": [1, 1], "event_timestamp": pa.array([t, t + 2], pa.timestamp(unit, tz)), "x": [1, 2]})
    store.register(fsnb.FeatureView("v", entities=["k"]), features)
    labels = pa.table({"k": [1, 1, 1], "event_timestamp": pa.array([t - 1, t + 1, t + 2], pa.timestamp(unit, tz))})
    got = store.get_historical_features(labels, ["v:x"])
    assert got["x"].to_list() == [None, 1, 2]
    # The label column as given (polars, which fsnb returns, has no seconds unit: s becomes ms).
    assert got["event_timestamp"].to_arrow().type == pa.timestamp("ms" if unit == "s" else unit, tz)


def test_a_pandas_nanosecond_frame_is_stored_exactly(store) -> None:
    frame = pd.DataFrame({"k": [1], "event_timestamp": pd.to_datetime([NOON_NS + 7], utc=True), "x": [1.0]})
    store.register(fsnb.FeatureView("v", entities=["k"]), frame)
    assert store.read("v")["event_timestamp"].cast(pl.Int64).to_list() == [NOON_NS + 7]


def test_times_outside_the_nanosecond_range_are_refused_in_one_line(store) -> None:
    far = pl.DataFrame({"k": [1], "event_timestamp": [datetime(9999, 12, 31)], "x": [1]})
    with pytest.raises(InvalidData, match=r"9999-12-31.*outside") as info:
        store.register(fsnb.FeatureView("v", entities=["k"]), far)
    assert "\n" not in str(info.value)
    store.register(fsnb.FeatureView("v", entities=["k"]), far.with_columns(event_timestamp=pl.lit(T0)))
    with pytest.raises(InvalidData, match="label column 'event_timestamp' has 2300-01-01"):
        store.get_historical_features(pl.DataFrame({"k": [1], "event_timestamp": [datetime(2300, 1, 1)]}), ["v:x"])


def test_incremental_materialize_does_not_lose_a_row_just_after_the_last_end(store) -> None:
    end = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    features = pa.table({"k": [1, 1], "event_timestamp": _ns([NOON_NS, NOON_NS + 400], None), "x": [1, 2]})
    store.register(fsnb.FeatureView("v", entities=["k"]), features)
    store.materialize(end=end)
    assert store.get_online_features(["v:x"], {"k": 1})["x"] == [1]  # the row 400 ns after end is not in yet
    store.materialize_incremental(end=end + timedelta(microseconds=1))
    assert store.get_online_features(["v:x"], {"k": 1})["x"] == [2]


def test_a_store_written_with_microsecond_columns_keeps_working_exactly(tmp_path) -> None:
    import duckdb

    path = tmp_path / "old"
    with fsnb.FeatureStore(path) as s:
        s.register(fsnb.FeatureView("v", entities=["k"]), pl.DataFrame({"k": [1], "event_timestamp": [T0], "x": [1]}))
    con = duckdb.connect(str(path / "offline.duckdb"))  # as fsnb stored event times before
    con.execute('ALTER TABLE "fv__v" ALTER COLUMN "event_timestamp" TYPE TIMESTAMPTZ')
    con.close()
    with fsnb.FeatureStore(path) as s:
        t0 = int(T0.replace(tzinfo=timezone.utc).timestamp()) * 10**9
        labels = pa.table({"k": [1, 1], "event_timestamp": _ns([t0 - 1, t0])})
        assert s.get_historical_features(labels, ["v:x"])["x"].to_list() == [None, 1]
        s.ingest("v", pa.table({"k": [1], "event_timestamp": _ns([t0 + 300]), "x": [2]}))
        labels = pa.table({"k": [1, 1], "event_timestamp": _ns([t0 + 299, t0 + 300])})
        assert s.get_historical_features(labels, ["v:x"])["x"].to_list() == [1, 2]
        assert s.read("v")["event_timestamp"].cast(pl.Int64).to_list() == [t0, t0 + 300]


def test_pushed_nanosecond_times_stay_exact_offline_and_online(store) -> None:
    store.register(fsnb.FeatureView("v", entities=["k"], sync="stream"))
    store.push("v", pa.table({"k": [1, 1], "event_timestamp": _ns([NOON_NS + 1, NOON_NS + 2]), "x": [1, 2]}))
    assert store.read("v")["event_timestamp"].cast(pl.Int64).to_list() == [NOON_NS + 1, NOON_NS + 2]
    assert store.get_online_features(["v:x"], {"k": 1})["x"] == [2]
    assert store.check_skew("v").ok


def test_online_ttl_is_exact_for_sub_microsecond_event_times(store, monkeypatch) -> None:
    import fsnb.serving as store_module

    start = NOON_NS // 1000  # whole microseconds
    features = pa.table({"k": [1], "event_timestamp": _ns([NOON_NS + 600], None), "x": [1]})
    store.register(fsnb.FeatureView("v", entities=["k"], ttl=timedelta(seconds=1)), features)
    store.materialize()
    monkeypatch.setattr(store_module, "now_us", lambda: start + 1_000_000)  # event >= now - ttl
    assert store.get_online_features(["v:x"], {"k": 1})["x"] == [1]
    monkeypatch.setattr(store_module, "now_us", lambda: start + 1_000_001)  # now - ttl is 400 ns after it
    assert store.get_online_features(["v:x"], {"k": 1})["x"] == [None]


def test_read_between_nanosecond_bounds_is_exact(store) -> None:
    features = pa.table({"k": [1, 1, 1], "event_timestamp": _ns([NOON_NS + 1, NOON_NS + 2, NOON_NS + 3]), "x": [1, 2, 3]})
    store.register(fsnb.FeatureView("v", entities=["k"]), features)
    got = store.read("v", start=pd.Timestamp(NOON_NS + 2, tz="UTC"), end=np.datetime64(NOON_NS + 2, "ns"))
    assert got["x"].to_list() == [2]
    assert store.read("v", start=datetime(2024, 1, 1, 12))["x"].to_list() == [1, 2, 3]
