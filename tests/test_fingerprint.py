"""fsnb.fingerprint: equal for equal data in any process, different for any change."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from fsnb.fingerprint import fingerprint


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [42, 17, 99, None],
            "event_timestamp": [datetime(2024, 3, 1), datetime(2024, 3, 4), None, datetime(2024, 3, 7)],
            "login_count": [2, 5, 9, 1],
            "avg_purchase": [10.0, None, float("nan"), 5.5],
            "country": ["de", None, "fr", ""],
            "active": [True, False, None, True],
            "day": [date(2024, 3, 1), None, date(2024, 3, 2), date(2024, 3, 3)],
        }
    )


def test_public_name_and_shape() -> None:
    # This module imported fsnb.fingerprint (the module) above: the package attribute
    # must still be callable as documented.
    import fsnb.fingerprint

    fp = fsnb.fingerprint(frame())
    assert fp == fingerprint(frame())
    assert len(fp) == 16 and int(fp, 16) >= 0


def test_equal_data_in_other_containers_and_chunkings() -> None:
    df = frame()
    fp = fingerprint(df)
    rechunked = pl.concat([df.slice(0, 1), df.slice(1, 2), df.slice(3, 1)], rechunk=False)
    assert rechunked.n_chunks() > 1
    assert fingerprint(rechunked) == fp
    assert fingerprint(df.lazy()) == fp
    table = df.to_arrow()
    batches = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert batches.column(0).num_chunks == 4
    assert fingerprint(batches) == fp
    # A pandas frame with the same dtypes (no index kept) is the same data.
    simple = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]})
    assert fingerprint(simple.to_pandas()) == fingerprint(simple)
    assert fingerprint(pd.DataFrame({"a": [1, 2, 3]}, index=[7, 8, 9])) == fingerprint(pl.DataFrame({"a": [1, 2, 3]}))


def test_string_boundaries_are_part_of_the_hash() -> None:
    assert fingerprint(pl.DataFrame({"s": ["ab", "c"]})) != fingerprint(pl.DataFrame({"s": ["a", "bc"]}))
    assert fingerprint(pl.DataFrame({"s": [None, "x"]})) != fingerprint(pl.DataFrame({"s": ["", "x"]}))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda df: df.with_columns(pl.when(pl.col("login_count") == 5).then(6).otherwise(pl.col("login_count")).alias("login_count")), id="one-int-value"),
        pytest.param(lambda df: df.with_columns(pl.col("avg_purchase").fill_null(0.0)), id="null-to-zero"),
        pytest.param(lambda df: df.with_columns(pl.col("avg_purchase") + 1e-12), id="tiny-float-change"),
        pytest.param(lambda df: df.with_columns(pl.col("country").str.replace("de", "dE")), id="one-string-value"),
        pytest.param(lambda df: df.with_columns(pl.col("event_timestamp") + timedelta(microseconds=1)), id="one-microsecond"),
        pytest.param(lambda df: df.reverse(), id="row-order"),
        pytest.param(lambda df: df.select(reversed(df.columns)), id="column-order"),
        pytest.param(lambda df: df.rename({"login_count": "logins"}), id="column-name"),
        pytest.param(lambda df: df.with_columns(pl.col("login_count").cast(pl.Int32)), id="int-width"),
        pytest.param(lambda df: df.with_columns(pl.col("login_count").cast(pl.Float64)), id="int-to-float"),
        pytest.param(lambda df: df.with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC")), id="naive-to-aware"),
        pytest.param(lambda df: df.with_columns(pl.col("event_timestamp").dt.cast_time_unit("ms")), id="time-unit"),
        pytest.param(lambda df: df.head(3), id="fewer-rows"),
        pytest.param(lambda df: pl.concat([df, df.tail(1)]), id="duplicated-row"),
        pytest.param(lambda df: df.drop("day"), id="dropped-column"),
    ],
)
def test_any_change_changes_the_fingerprint(change) -> None:  # type: ignore[no-untyped-def]
    df = frame()
    changed = change(df)
    assert not changed.equals(df) or changed.schema != df.schema or changed.columns != df.columns
    assert fingerprint(changed) != fingerprint(df)


def test_precision_beyond_microseconds_and_decimals() -> None:
    ns = pl.DataFrame({"t": [datetime(2024, 1, 1)]}).with_columns(pl.col("t").cast(pl.Datetime("ns")))
    later = ns.with_columns(pl.col("t") + pl.duration(nanoseconds=1))
    assert fingerprint(ns) != fingerprint(later)
    a = pl.DataFrame({"d": [Decimal("1.50"), Decimal("2.25")]})
    b = pl.DataFrame({"d": [Decimal("1.50"), Decimal("2.26")]})
    assert fingerprint(a) != fingerprint(b)


def test_same_instant_in_equivalent_utc_zones_is_equal() -> None:
    # DuckDB hands back 'Etc/UTC', polars writes 'UTC': the same data either way.
    utc = pl.DataFrame({"t": [datetime(2024, 1, 1, 12)]}).with_columns(pl.col("t").dt.replace_time_zone("UTC"))
    etc = utc.with_columns(pl.col("t").dt.convert_time_zone("Etc/UTC"))
    assert fingerprint(utc) == fingerprint(etc)


def test_nan_payloads_hash_alike_and_nested_values_count() -> None:
    import numpy as np

    weird_nan = np.frombuffer(np.array([0x7FF8000000000001], dtype="<u8").tobytes(), dtype="<f8")
    assert fingerprint(pl.DataFrame({"x": weird_nan})) == fingerprint(pl.DataFrame({"x": [float("nan")]}))
    assert fingerprint(pl.DataFrame({"l": [[1, 2], [3]]})) != fingerprint(pl.DataFrame({"l": [[1], [2, 3]]}))


def test_stable_across_processes() -> None:
    """Another interpreter (with its own hash seed) computes the same fingerprint."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.test_fingerprint import frame; from fsnb.fingerprint import fingerprint;"
        "print(fingerprint(frame()))"
    )
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    outputs = set()
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, root],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            cwd=root,
        )
        outputs.add(out.stdout.strip())
    assert outputs == {fingerprint(frame())}


def test_known_value_pins_the_canonical_form() -> None:
    """Changing the byte form silently would invalidate every recorded fingerprint."""
    df = pl.DataFrame({"user_id": [42, 17], "login_count": [2, 5], "country": ["de", None]})
    assert fingerprint(df) == PINNED


PINNED = "a098a2c3a3d07ea7"


def test_categorical_is_hashed_by_its_text() -> None:
    text = pl.DataFrame({"c": ["a", "b", "a"]})
    cat = text.with_columns(pl.col("c").cast(pl.Categorical))
    reordered = pl.DataFrame({"c": ["b", "a", "a"]}).with_columns(pl.col("c").cast(pl.Categorical))[[1, 0, 2]]
    assert fingerprint(cat) != fingerprint(text)  # the dtype is part of the data
    assert fingerprint(cat) == fingerprint(reordered)  # whatever the physical codes
    assert fingerprint(cat) != fingerprint(cat[[1, 0, 2]])
