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
