"""Data in every form the API accepts: polars, pandas, Arrow, Parquet, CSV, DuckDB SQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import polars as pl
import pytest

import fsnb

EVENTS = pl.DataFrame({
    "user_id": [42, 42, 17],
    "event_timestamp": [datetime(2024, 3, 1), datetime(2024, 3, 4), datetime(2024, 2, 1)],
    "login_count": [2, 5, 1],
})
LABELS = pl.DataFrame({"user_id": [42, 17], "event_timestamp": [datetime(2024, 3, 3), datetime(2024, 3, 3)]})


def _forms(tmp_path):
    parquet = tmp_path / "e.parquet"
    EVENTS.write_parquet(parquet)
    csv = tmp_path / "e.csv"
    EVENTS.write_csv(csv)
    return {
        "polars": EVENTS,
        "pandas": EVENTS.to_pandas(),
        "arrow": EVENTS.to_arrow(),
        "parquet": str(parquet),
        "parquet-path": parquet,
        "csv": str(csv),
        "sql": f"SELECT * FROM read_parquet('{parquet}')",
    }


@pytest.mark.parametrize("form", ["polars", "pandas", "arrow", "parquet", "parquet-path", "csv", "sql"])
def test_every_input_form_gives_the_same_training_set(store, tmp_path, form) -> None:
    data = _forms(tmp_path)[form]
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), data)
    got = store.get_historical_features(LABELS, ["user_stats:login_count"])
    assert got["login_count"].to_list() == [2, 1]


@pytest.mark.parametrize("form", ["pandas", "arrow", "sql"])
def test_label_frames_in_other_forms(store, form) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), EVENTS)
    labels = {
        "pandas": LABELS.to_pandas(),
        "arrow": LABELS.to_arrow(),
        "sql": "SELECT 42 AS user_id, TIMESTAMP '2024-03-03' AS event_timestamp UNION ALL SELECT 17, TIMESTAMP '2024-03-03'",
    }[form]
    got = store.get_historical_features(labels, ["user_stats:login_count"])
    assert isinstance(got, pl.DataFrame)
    assert got["login_count"].to_list() == [2, 1]


def test_pandas_labels_with_mixed_naive_and_aware_datetimes(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), EVENTS)
    labels = pd.DataFrame({
        "user_id": [42, 42],
        "event_timestamp": pd.Series([datetime(2024, 3, 3), datetime(2024, 3, 4, 0, 30, tzinfo=timezone.utc)], dtype=object),
    })
    got = store.get_historical_features(labels, ["user_stats:login_count"])
    assert got["login_count"].to_list() == [2, 5]


def test_date_label_column_means_midnight_utc(store) -> None:
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), EVENTS)
    labels = LABELS.with_columns(pl.col("event_timestamp").dt.date())
    assert store.get_historical_features(labels, ["user_stats:*"])["login_count"].to_list() == [2, 1]
