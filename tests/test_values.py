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
