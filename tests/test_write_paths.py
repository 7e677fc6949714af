"""The offline write's two paths (fsnb.backends.duckdb_write): a batch that meets no stored
row in its time range goes straight in; any other batch, or one with a tie among its own
rows, is deduplicated first. Both must keep every guarantee."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

import fsnb

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _frame(keys: list[int], hours: list[int], values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"k": keys, "event_timestamp": [T0 + timedelta(hours=h) for h in hours], "x": values})


def _state(store: fsnb.FeatureStore) -> tuple[list[tuple[int, float, int]], bool]:
    view = store.get_feature_view("v")
    rows = store.offline.read(view, system=True).to_pylist()
    with store.offline.connect() as con:
        _, ties = store.offline.meta(con, "v")
    return [(r["k"], r["x"], r["_fsnb_seq"]) for r in rows], ties


def _stats_exact(store: fsnb.FeatureStore) -> None:
    recount = store.offline.stats(store.get_feature_view("v"))
    kept = store.stats("v")
    assert {k: kept[k] for k in ("rows", "entities", "min_ts", "max_ts")} == {
        k: recount[k] for k in ("rows", "entities", "min_ts", "max_ts")
    }


def test_first_data_with_a_duplicate_and_a_tie_drops_the_duplicate_and_records_the_tie(store) -> None:
    reg = store.register(fsnb.FeatureView("v", entities=["k"]), _frame([1, 1, 2, 1], [0, 0, 1, 0], [1.0, 1.0, 2.0, 3.0]))
    assert reg.rows_written == 3
    rows, ties = _state(store)
    assert sorted(rows, key=lambda r: r[2]) == [(1, 1.0, 0), (2, 2.0, 1), (1, 3.0, 2)]  # input order, no gap
    assert ties
    _stats_exact(store)


def test_newer_rows_without_ties_go_in_as_they_are_and_keep_the_view_tie_free(store) -> None:
    store.register(fsnb.FeatureView("v", entities=["k"]), _frame([1, 2], [0, 1], [1.0, 2.0]))
    assert store.ingest("v", _frame([1, 3], [5, 5], [4.0, 5.0])) == 2
    rows, ties = _state(store)
    assert [r[2] for r in sorted(rows, key=lambda r: r[2])] == [0, 1, 2, 3]
    assert not ties
    _stats_exact(store)


def test_newer_rows_with_a_duplicate_among_themselves_are_deduplicated(store) -> None:
    store.register(fsnb.FeatureView("v", entities=["k"]), _frame([1], [0], [1.0]))
    assert store.ingest("v", _frame([2, 2, 3], [5, 5, 6], [7.0, 7.0, 8.0])) == 2
    rows, ties = _state(store)
    assert sorted(rows, key=lambda r: r[2]) == [(1, 1.0, 0), (2, 7.0, 1), (3, 8.0, 2)]
    assert not ties  # the duplicate was not a tie: it is gone
    _stats_exact(store)


def test_a_stored_row_in_range_is_a_duplicate_and_one_nanosecond_later_is_not(store) -> None:
    store.register(fsnb.FeatureView("v", entities=["k"]), _frame([1, 1], [0, 2], [1.0, 2.0]))
    later = pl.DataFrame({"k": [1, 1], "event_timestamp": [T0, T0], "x": [1.0, 1.0]}).with_columns(
        pl.col("event_timestamp").cast(pl.Datetime("ns", "UTC")) + pl.Series([0, 1]).cast(pl.Duration("ns"))
    )
    assert store.ingest("v", later) == 1  # the 0 ns row was stored already; the +1 ns one is new
    _, ties = _state(store)
    assert not ties
    _stats_exact(store)


def test_replace_removes_stored_rows_outside_the_batch_time_range(store) -> None:
    store.register(fsnb.FeatureView("v", entities=["k"]), _frame([1, 2], [0, 1], [1.0, 2.0]))
    reg = store.register(fsnb.FeatureView("v", entities=["k"]), _frame([3], [10], [3.0]), replace=True)
    assert (reg.rows_written, reg.rows_removed) == (1, 2)
    rows, _ = _state(store)
    assert [(k, x) for k, x, _ in rows] == [(3, 3.0)]
    _stats_exact(store)
