"""Window aggregations against a brute-force reference on random data (DESIGN section 12).

Time is a grid of whole minutes (windows are whole minutes too), so events land exactly
at t and exactly at t - window all the time; events and labels are also nudged by a
microsecond or a nanosecond around the grid to check that comparisons are exact.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fsnb
from fsnb.aggregation import (
    FUNCTIONS,
    MAX_WINDOW,
    Aggregation,
    check_aggregations,
    parse_aggregate_flag,
    parse_window,
)
from fsnb.aggregation_sql import LABELS, ROW, T, aggregate, aggregate_sql
from fsnb.errors import FsnbError, InvalidDefinition
from fsnb.online_windows import WindowStore

BASE_NS = 1_704_067_200 * 10**9  # 2024-01-01 UTC
MIN = 60 * 10**9
# Composite keys whose string concatenations collide: (1, 23) and (12, 3) both read "123".
KEYS = [(1, 23), (12, 3), (1, 2)]
LABEL_KEYS = [*KEYS, (9, 9)]  # (9, 9) has no events
WINDOWS = ["1m", "2m", "3m", "5m"]

# (key, minute, nudge in us, known minute, value or None)
event = st.tuples(
    st.sampled_from(KEYS), st.integers(0, 8), st.sampled_from([0, 0, 0, 1, -1]),
    st.integers(0, 10), st.one_of(st.none(), st.integers(-4, 4)),
)
# (key, minute, nudge in ns): -1 ns / +1 ns around a grid point or a microsecond
label = st.tuples(st.sampled_from(LABEL_KEYS), st.integers(-2, 12), st.sampled_from([0, 0, 0, -1, 1, 999, 1000, 1001]))
aggregation = st.builds(
    lambda fn, col, win: Aggregation(None if col == "*" else col, fn, win),
    st.sampled_from(FUNCTIONS), st.sampled_from(["ivalue", "fvalue"]), st.sampled_from(WINDOWS),
) | st.builds(lambda win: Aggregation(None, "count", win), st.sampled_from(WINDOWS))


def _reference(events: Sequence[tuple[Any, ...]], labels: Sequence[tuple[Any, ...]], agg: Aggregation,
               as_of: bool) -> list[Any]:
    width = agg.window // timedelta(microseconds=1) * 1000
    out: list[Any] = []
    for key, t in labels:
        rows = [e for e in events if e[0] == key and t - width < e[1] <= t and (not as_of or e[2] <= t)]
        if agg.column is None:
            out.append(len(rows))
            continue
        values = [e[3] if agg.column == "ivalue" else e[4] for e in rows]
        values = [v for v in values if v is not None]
        fn = agg.function
        if fn == "count":
            out.append(len(values))
        elif not values:
            out.append(None)
        elif fn == "sum":
            out.append(sum(values))
        elif fn == "mean":
            out.append(sum(values) / len(values))
        elif fn == "min":
            out.append(min(values))
        elif fn == "max":
            out.append(max(values))
        else:
            out.append(statistics.stdev(values) if len(values) > 1 else None)
    return out


def _same(got: list[Any], want: list[Any]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        if g is None or w is None:
            if g is not w:
                return False
        elif not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


def _event_table(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]], time_type: str, created: bool) -> None:
    """fv__v as the offline store keeps it (keys, event time, created, system columns, features)."""
    ns = [BASE_NS + r[1] * MIN + r[2] * 1000 for r in rows]
    known = [BASE_NS + r[3] * MIN for r in rows]
    arrow = pa.table({
        "k1": pa.array([r[0][0] for r in rows], pa.int64()), "k2": pa.array([r[0][1] for r in rows], pa.int64()),
        "ts": pa.array(ns, pa.timestamp("ns", "UTC")), "known": pa.array(known, pa.timestamp("ns", "UTC")),
        "_fsnb_seq": pa.array(range(len(rows)), pa.int64()),
        "ivalue": pa.array([r[4] for r in rows], pa.int64()),
        "fvalue": pa.array([None if r[4] is None else r[4] / 4 for r in rows], pa.float64()),
    })
    con.register("__rows", arrow)
    created_col = f"CAST(known AS {time_type}) AS created, " if created else ""
    ingested = "TIMESTAMPTZ 'epoch'" if created else "CAST(known AS TIMESTAMPTZ)"
    con.execute(
        f"CREATE OR REPLACE TABLE fv__v AS SELECT k1, k2, CAST(ts AS {time_type}) AS ts, {created_col}"
        f"_fsnb_seq, {ingested} AS _fsnb_ingested_at, CAST(NULL AS VARCHAR) AS _fsnb_entry, ivalue, fvalue FROM __rows"
    )
    con.unregister("__rows")


def _label_table(labels: list[tuple[Any, ...]], arrow_type: pa.DataType) -> tuple[pa.Table, list[int]]:
    ns = [BASE_NS + lab[1] * MIN + lab[2] for lab in labels]
    times = pa.array(ns, pa.timestamp("ns", "UTC"))
    if arrow_type.unit != "ns":  # type: ignore[attr-defined]
        # a coarser label column holds the same instants floored to its unit
        ns = [n // 1000 * 1000 for n in ns]
        times = pa.array([n // 1000 for n in ns], pa.timestamp("us", "UTC"))
    table = pa.table({
        ROW: pa.array(range(len(labels)), pa.int64()),
        T: times.cast(arrow_type),
        "k1": pa.array([lab[0][0] for lab in labels], pa.int64()),
        "k2": pa.array([lab[0][1] for lab in labels], pa.int64()),
    })
    return table, ns


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(event, min_size=0, max_size=14),
    labels=st.lists(label, min_size=1, max_size=10),
    aggs=st.lists(aggregation, min_size=1, max_size=4, unique_by=lambda a: a.name),
    time_type=st.sampled_from(["TIMESTAMPTZ", "TIMESTAMPTZ_NS", "TIMESTAMP_NS"]),
    label_type=st.sampled_from([
        pa.timestamp("ns"), pa.timestamp("ns", "UTC"), pa.timestamp("ns", "Asia/Kolkata"),
        pa.timestamp("us"), pa.timestamp("us", "America/New_York"),
    ]),
    created=st.booleans(),
    as_of=st.booleans(),
    zone=st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Kolkata"]),
)
def test_offline_aggregations_match_reference(events, labels, aggs, time_type, label_type, created, as_of, zone) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    labels = [*labels, labels[0]]  # a duplicate label row
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts",
                            created_timestamp_field="created" if created else None)
    if events:
        _event_table(con, events, time_type, created)
    table, label_ns = _label_table(labels, label_type)
    con.execute(f"SET TimeZone = '{zone}'")  # naive times are UTC whatever the session's zone
    got = aggregate(con, table, view, aggs, {"k1": "BIGINT", "k2": "BIGINT"}, as_of_ingestion=as_of)
    assert got.column_names == [ROW, *(a.name for a in aggs)]
    assert got.column(ROW).to_pylist() == list(range(len(labels)))
    # Events as the table holds them: microsecond columns hold the nudged times exactly
    # (nudges are whole microseconds); the known time is a grid point either way.
    ref_events = [(e[0], BASE_NS + e[1] * MIN + e[2] * 1000, BASE_NS + e[3] * MIN, e[4],
                   None if e[4] is None else e[4] / 4) for e in events]
    ref_labels = [(lab[0], n) for lab, n in zip(labels, label_ns, strict=True)]
    for agg in aggs:
        want = _reference(ref_events, ref_labels, agg, as_of)
        assert _same(got.column(agg.name).to_pylist(), want), (agg, got.column(agg.name).to_pylist(), want)
    con.close()


def test_output_types_follow_the_function() -> None:
    con = duckdb.connect()
    _event_table(con, [(KEYS[0], 1, 0, 0, 3)], "TIMESTAMPTZ", False)
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts")
    labels, _ = _label_table([(KEYS[0], 1, 0)], pa.timestamp("us"))
    aggs = [Aggregation("ivalue", "sum", "1m"), Aggregation("fvalue", "sum", "1m"), Aggregation("ivalue", "mean", "1m"),
            Aggregation("ivalue", "min", "1m"), Aggregation("fvalue", "max", "1m"), Aggregation(None, "count", "1m")]
    got = aggregate(con, labels, view, aggs, {"k1": "BIGINT", "k2": "BIGINT"})
    assert [str(f.type) for f in got.schema][1:] == ["int64", "double", "double", "int64", "double", "int64"]
    assert got.to_pylist()[0] == {ROW: 0, "ivalue_sum_1m": 3, "fvalue_sum_1m": 0.75, "ivalue_mean_1m": 3.0,
                                  "ivalue_min_1m": 3, "fvalue_max_1m": 0.75, "count_1m": 1}


@pytest.mark.parametrize("as_of", [False, True])
def test_columns_come_in_the_order_asked_whatever_their_windows(as_of) -> None:
    con = duckdb.connect()
    _event_table(con, [(KEYS[0], 1, 0, 0, 3), (KEYS[0], 2, 0, 0, 5)], "TIMESTAMPTZ", False)
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts")
    labels, _ = _label_table([(KEYS[0], 2, 0)], pa.timestamp("us"))
    aggs = [Aggregation("ivalue", "sum", "1m"), Aggregation(None, "count", "2m"), Aggregation(None, "count", "1m")]
    got = aggregate(con, labels, view, aggs, {"k1": "BIGINT", "k2": "BIGINT"}, as_of_ingestion=as_of)
    assert got.column_names == [ROW, "ivalue_sum_1m", "count_2m", "count_1m"]
    assert got.to_pylist() == [{ROW: 0, "ivalue_sum_1m": 5, "count_2m": 2, "count_1m": 1}]


@pytest.mark.parametrize("label_type", [pa.timestamp("us"), pa.timestamp("ns")])
def test_naive_label_times_are_utc_whatever_the_session_zone(label_type) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _event_table(con, [(KEYS[0], 1, 0, 0, 3)], "TIMESTAMPTZ", False)
    labels, _ = _label_table([(KEYS[0], 1, 0)], label_type)
    con.execute("SET TimeZone = 'America/Los_Angeles'")
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts")
    for as_of in (False, True):
        got = aggregate(con, labels, view, [Aggregation(None, "count", "1m")], {"k1": "BIGINT", "k2": "BIGINT"},
                        as_of_ingestion=as_of)
        assert got.column("count_1m").to_pylist() == [1]


@pytest.mark.parametrize("label_type", [pa.timestamp("ns"), pa.timestamp("ns", "UTC")])
@pytest.mark.parametrize(("nudge", "count"), [(-1, 0), (-500, 0), (-999, 0), (0, 1), (1, 1), (999, 1)])
def test_nanosecond_labels_are_floored_not_rounded(label_type, nudge, count) -> None:
    """An event at exactly minute 1 (microseconds stored) and a label 1 ns before it: out."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _event_table(con, [(KEYS[0], 1, 0, 0, 3)], "TIMESTAMPTZ", False)
    labels, _ = _label_table([(KEYS[0], 1, nudge)], label_type)
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts")
    for as_of in (False, True):
        got = aggregate(con, labels, view, [Aggregation(None, "count", "1m")], {"k1": "BIGINT", "k2": "BIGINT"},
                        as_of_ingestion=as_of)
        assert got.column("count_1m").to_pylist() == [count]


def test_view_without_events_gives_zero_counts_and_nulls() -> None:
    con = duckdb.connect()
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts", features={"ivalue": "BIGINT"},
                            entity_types={"k1": "BIGINT", "k2": "BIGINT"})
    labels, _ = _label_table([(KEYS[0], 1, 0), (KEYS[1], 2, 0)], pa.timestamp("us"))
    got = aggregate(con, labels, view, [Aggregation(None, "count", "1m"), Aggregation("ivalue", "sum", "1m")],
                    {"k1": "BIGINT", "k2": "BIGINT"})
    assert got.to_pydict() == {ROW: [0, 1], "count_1m": [0, 0], "ivalue_sum_1m": [None, None]}


def test_stddev_is_accurate_on_values_far_from_zero() -> None:
    """1e6 + N(0, 1): a sum-of-squares formula would keep about 4 digits here. The plan's
    windowed stddev_samp (DuckDB combines Welford states) stays within 1e-9 of the exact
    value, as close as DuckDB's own GROUP BY stddev_samp (measured: 2.5e-11 vs 3.8e-11)."""
    rng = np.random.default_rng(3)
    n = 1500
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    minutes = np.sort(rng.integers(0, 400, n))
    values = 1e6 + rng.normal(0, 1, n)
    con.register("__e", pa.table({"m": minutes, "v": values}))
    con.execute(
        "CREATE TABLE fv__v AS SELECT 1::BIGINT AS k1, 1::BIGINT AS k2, TIMESTAMPTZ '2024-01-01' + to_minutes(m) AS ts, "
        "row_number() OVER () AS _fsnb_seq, now() AS _fsnb_ingested_at, NULL::VARCHAR AS _fsnb_entry, v AS fvalue FROM __e"
    )
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts")
    label_rows = [((1, 1), m, 0) for m in range(0, 400, 9)]
    labels, _ = _label_table(label_rows, pa.timestamp("us"))
    got = aggregate(con, labels, view, [Aggregation("fvalue", "stddev", "30m")], {"k1": "BIGINT", "k2": "BIGINT"})
    for (_, m, _), value in zip(label_rows, got.column("fvalue_stddev_30m").to_pylist(), strict=True):
        window = [Fraction(float(v)) for mm, v in zip(minutes, values, strict=True) if m - 30 < mm <= m]
        if len(window) < 2:
            assert value is None
            continue
        mean = sum(window) / len(window)
        exact = math.sqrt(sum((v - mean) ** 2 for v in window) / (len(window) - 1))
        assert math.isclose(value, exact, rel_tol=1e-9), (m, value, exact)


def test_planner_reads_the_store_as_it_writes() -> None:
    """The real write path (register + ingest) feeds the planner, aware and naive times alike."""
    base = datetime(2024, 1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        store = fsnb.FeatureStore(Path(tmp) / "s")
        store.register(fsnb.FeatureView("v", entities=["k"]))
        store.ingest("v", pl.DataFrame({
            "k": [1, 1, 1, 2], "amount": [1.0, None, 4.0, 8.0],
            "event_timestamp": [base, base + timedelta(days=1), base + timedelta(days=7), base],
        }))
        kolkata = timezone(timedelta(hours=5, minutes=30))
        store.ingest("v", pl.DataFrame({"k": [1], "amount": [16.0],
                                        "event_timestamp": [(base + timedelta(days=7)).replace(tzinfo=timezone.utc).astimezone(kolkata)]}))
        view = store.get_feature_view("v")
        labels = pa.table({ROW: pa.array([0, 1, 2], pa.int64()),
                           T: pa.array([base + timedelta(days=7), base + timedelta(days=8), base], pa.timestamp("us")),
                           "k": pa.array([1, 1, 2], pa.int64())})
        aggs = [Aggregation("amount", "sum", "7d"), Aggregation(None, "count", "7d"), Aggregation("amount", "max", "1d")]
        with store.offline.connect() as con:
            got = aggregate(con, labels, view, aggs, {"k": "BIGINT"})
        store.close()
    # (day 0, day 7]: the day-1 event (amount null) and both day-7 events
    assert got.to_pydict() == {ROW: [0, 1, 2], "amount_sum_7d": [20.0, 20.0, 8.0], "count_7d": [3, 2, 1],
                               "amount_max_1d": [16.0, None, 8.0]}


# -- online equals offline ---------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.lists(event, min_size=0, max_size=10),
    pushes=st.lists(event, min_size=0, max_size=6),
    aggs=st.lists(aggregation, min_size=1, max_size=4, unique_by=lambda a: a.name),
    start=st.integers(0, 9),
    steps=st.lists(st.sampled_from([0, 1, 60_000_000, 59_999_999, 120_000_000]), min_size=1, max_size=4),
)
def test_online_equals_offline_at_the_same_instant(history, pushes, aggs, start, steps) -> None:
    """materialize at `now`, push later events, move the clock (past window edges too):
    every key's online value equals the offline planner's value for a label at `now`."""
    view = fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts", features={"ivalue": "BIGINT", "fvalue": "DOUBLE"},
                            entity_types={"k1": "BIGINT", "k2": "BIGINT"})
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    now_us = (BASE_NS + start * MIN) // 1000
    # Offline history is what happened up to "now"; pushes arrive afterwards, stamped at or after it.
    past = [e for e in history if BASE_NS + e[1] * MIN + e[2] * 1000 <= now_us * 1000]
    with tempfile.TemporaryDirectory() as tmp:
        online = WindowStore(Path(tmp) / "online.sqlite")
        if past:
            _event_table(con, past, "TIMESTAMPTZ", False)
            online.materialize(con, view, aggs, now_us=now_us)
        else:
            online.materialize(None, view, aggs, now_us=now_us)
        applied = list(past)
        check_all(con, online, view, aggs, applied, now_us)
        for e in pushes:
            e = (e[0], start + e[1], e[2], e[3], e[4])
            online.push(view, aggs, [_online_row(e)], now_us=now_us)
            applied.append(e)
        for step in steps:
            now_us += step
            check_all(con, online, view, aggs, applied, now_us)
        online.close()


def _online_row(e: tuple[Any, ...]) -> dict[str, Any]:
    ts = datetime.fromtimestamp(0, timezone.utc) + timedelta(microseconds=(BASE_NS + e[1] * MIN) // 1000 + e[2])
    return {"k1": e[0][0], "k2": e[0][1], "ts": ts, "ivalue": e[4], "fvalue": None if e[4] is None else e[4] / 4}


def check_all(con: duckdb.DuckDBPyConnection, online: WindowStore, view: fsnb.FeatureView, aggs: list[Aggregation],
              applied: list[tuple[Any, ...]], now_us: int) -> None:
    # The offline store keeps one of exact duplicates (same key, time and values; the
    # known minute is the ingestion time here, a system column): so must the online side.
    applied = list({(e[0], e[1], e[2], e[4]): e for e in applied}.values())
    if applied:
        _event_table(con, applied, "TIMESTAMPTZ", False)
    else:
        con.execute("DROP TABLE IF EXISTS fv__v")
    label_rows = [(k, 0, 0) for k in LABEL_KEYS]
    labels = pa.table({ROW: pa.array(range(len(LABEL_KEYS)), pa.int64()),
                       T: pa.array([now_us] * len(LABEL_KEYS), pa.timestamp("us", "UTC")),
                       "k1": [k[0] for k, _, _ in label_rows], "k2": [k[1] for k, _, _ in label_rows]})
    offline = aggregate(con, labels, view, aggs, {"k1": "BIGINT", "k2": "BIGINT"})
    for i, key in enumerate(LABEL_KEYS):
        got = online.read(view, aggs, {"k1": key[0], "k2": key[1]}, now_us=now_us)
        for agg in aggs:
            want = offline.column(agg.name)[i].as_py()
            assert _same([got[agg.name]], [want]), (key, agg, now_us, got, want)


# -- definitions and the flag parser -------------------------------------------------------------

def test_names_windows_and_round_trip() -> None:
    agg = Aggregation("amount", "sum", "7d")
    assert (agg.name, agg.window, agg.window_text) == ("amount_sum_7d", timedelta(days=7), "7d")
    assert Aggregation(None, "count", "12h").name == "count_12h"
    assert Aggregation("amount", "count", "90m").name == "amount_count_90m"
    assert Aggregation("amount", "max", timedelta(hours=36)).name == "amount_max_36h"
    assert Aggregation(None, "count", "1d", name="txn_count_1d").name == "txn_count_1d"
    assert Aggregation.from_dict(agg.to_dict()) == agg
    assert parse_window("45s") == (timedelta(seconds=45), "45s")
    assert parse_window("2w") == (timedelta(days=14), "2w")
    assert parse_aggregate_flag("sum(amount) 7d") == agg
    assert parse_aggregate_flag(" count( * ) 1d AS txn_count_1d ") == Aggregation(None, "count", "1d", name="txn_count_1d")
    assert parse_aggregate_flag("mean(amount) 30d") == Aggregation("amount", "mean", "30d")
    assert parse_aggregate_flag("count(amount) 1d").column == "amount"


@pytest.mark.parametrize(("args", "needle"), [
    (("amount", "avg", "7d"), "did you mean 'mean'?"),
    ((None, "sum", "7d"), "needs a column"),
    (("amount", "sum", "1.5d"), "whole number and a unit"),
    (("amount", "sum", "7 days"), "like '7d'"),
    (("amount", "sum", "0d"), "whole number"),
    (("amount", "sum", timedelta(0)), "positive"),
    (("amount", "sum", timedelta(milliseconds=1500)), "whole number of seconds"),
    (("amount", "sum", "999999d"), "shorter window"),
    (("amount", "sum", MAX_WINDOW + timedelta(days=1)), "at most"),
    (("amount", "sum", 7), "not int"),
    (("am-ount", "sum", "7d"), "aggregation column name 'am-ount'"),
    (('x"; DROP TABLE t; --', "sum", "7d"), "is not valid"),
])
def test_aggregation_errors(args, needle) -> None:
    with pytest.raises(InvalidDefinition, match=None) as info:
        Aggregation(*args)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_names_are_refused() -> None:
    with pytest.raises(InvalidDefinition, match="feature name '1x'"):
        Aggregation("amount", "sum", "7d", name="1x")
    with pytest.raises(InvalidDefinition, match="two aggregations named 'amount_sum_7d'"):
        check_aggregations("v", [Aggregation("amount", "sum", "7d"), Aggregation("amount", "sum", "7d")], set())
    with pytest.raises(InvalidDefinition, match="has the name of a key"):
        check_aggregations("v", [Aggregation(None, "count", "1d", name="user_id")], {"user_id"})
    with pytest.raises(InvalidDefinition, match=r"must be fsnb\.Aggregation"):
        check_aggregations("v", ["sum(amount) 7d"], set())  # type: ignore[list-item]


@pytest.mark.parametrize(("text", "needle"), [
    ("sum amount 7d", "write it like 'sum(amount) 7d'"),
    ("sum(amount)", "write it like"),
    ("sum(*) 7d", "sum needs a column"),
    ("avg(amount) 7d", "did you mean 'mean'?"),
    ("median(amount) 7d", "use one of count, sum, mean, min, max, stddev"),
    ("sum(amount) 7 d", "write it like"),
    ("sum(amount) 7x", "cannot read window '7x'"),
    ("count(*) 1d as 9lives", "feature name '9lives'"),
    ("count(*) 1d as", "write it like"),
    ("sum(a.b) 7d", "aggregation column name 'a.b'"),
    ("sum(amount) 7d extra", "write it like"),
])
def test_flag_errors_name_the_fix(text, needle) -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse_aggregate_flag(text)
    assert needle in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data", [
    None, [], {"column": "a", "function": "sum", "window": "7d"},
    {"column": "a", "function": "sum", "window": "7d", "name": "a_sum_7d", "sql": "1"},
    {"column": 3, "function": "sum", "window": "7d", "name": "x"},
    {"column": "a", "function": ["sum"], "window": "7d", "name": "x"},
    {"column": "a", "function": "sum", "window": 604800, "name": "x"},
    {"column": "a", "function": "SUM", "window": "7d", "name": "x"},
    {"column": "a", "function": "sum", "window": "7d", "name": "x; DROP TABLE y"},
    {"column": "a\"--", "function": "sum", "window": "7d", "name": "x"},
    {"column": "a", "function": "sum", "window": " 7d", "name": "x"},
    {"column": None, "function": "mean", "window": "7d", "name": "x"},
])
def test_from_dict_refuses_crafted_entries(data) -> None:
    with pytest.raises(InvalidDefinition) as info:
        Aggregation.from_dict(data)
    assert "\n" not in str(info.value)


def test_function_type_checks() -> None:
    with pytest.raises(InvalidDefinition, match="needs a numeric column"):
        Aggregation("name", "sum", "7d").check_column_type("v", "VARCHAR")
    with pytest.raises(InvalidDefinition, match="can be ordered"):
        Aggregation("tags", "max", "7d").check_column_type("v", "VARCHAR[]")
    Aggregation("name", "max", "7d").check_column_type("v", "VARCHAR")
    Aggregation("name", "count", "7d").check_column_type("v", "VARCHAR[]")


def test_crafted_key_type_never_reaches_sql() -> None:
    view = fsnb.FeatureView("v", entities=["k"], timestamp_field="ts")
    with pytest.raises(FsnbError, match="not a DuckDB type name"):
        aggregate_sql(view, [Aggregation(None, "count", "1d")], {"k": "BIGINT); DROP TABLE x; --"},
                      column_types={}, event_time_type="TIMESTAMPTZ", label_time_type="TIMESTAMP")
    assert LABELS in aggregate_sql(view, [Aggregation(None, "count", "1d")], {"k": "DECIMAL(18, 3)"},
                                   column_types={}, event_time_type="TIMESTAMPTZ", label_time_type="TIMESTAMP")


def test_online_drops_duplicates_and_expired_events_and_reads_without_a_table() -> None:
    """A replayed push, or a push of an event materialize already loaded, counts once
    (the offline store keeps one of exact duplicates too); an event already out of every
    window is not kept; a view never materialized reads as count 0 / null."""
    view = fsnb.FeatureView("v", entities=["k"], timestamp_field="ts", created_timestamp_field="created",
                            features={"amount": "DOUBLE", "note": "VARCHAR"}, entity_types={"k": "BIGINT"})
    aggs = [Aggregation("amount", "sum", "1d"), Aggregation(None, "count", "2d")]
    kolkata = timezone(timedelta(hours=5, minutes=30))
    day = datetime(2024, 3, 1, tzinfo=timezone.utc)
    now_us = int((day + timedelta(hours=12)).timestamp()) * 1_000_000
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE fv__v (k BIGINT, ts TIMESTAMPTZ, created TIMESTAMPTZ, _fsnb_seq BIGINT, "
        "_fsnb_ingested_at TIMESTAMPTZ, _fsnb_entry VARCHAR, amount DOUBLE, note VARCHAR)"
    )
    con.execute("INSERT INTO fv__v VALUES (1, '2024-03-01 06:00:00.000001+00', '2024-03-01 07:00:00+00', 0, now(), NULL, 0.1, 'a')")
    with tempfile.TemporaryDirectory() as tmp:
        online = WindowStore(Path(tmp) / "w.sqlite")
        assert online.read(view, aggs, {"k": 1}, now_us=now_us) == {"amount_sum_1d": None, "count_2d": 0}
        assert online.materialize(con, view, aggs, now_us=now_us) == 1
        same = {"k": 1, "ts": (day + timedelta(hours=6, microseconds=1)).astimezone(kolkata),
                "created": datetime(2024, 3, 1, 7), "amount": 0.1, "note": "a"}
        assert online.push(view, aggs, [same, same], now_us=now_us) == 0
        other_note = {**same, "note": "b"}  # differs in a column no aggregation reads: a distinct event
        assert online.push(view, aggs, [other_note], now_us=now_us) == 1
        expired = {**same, "ts": day - timedelta(days=2), "note": "old"}
        assert online.push(view, aggs, [expired], now_us=now_us) == 0
        got = online.read(view, aggs, {"k": 1}, now_us=now_us)
        assert got == {"amount_sum_1d": pytest.approx(0.2), "count_2d": 2}
        # 1 day after the events: out of the 1d window, still in the 2d one
        later = now_us + 18 * 3600 * 1_000_000 + 1
        assert online.read(view, aggs, {"k": 1}, now_us=later) == {"amount_sum_1d": None, "count_2d": 2}
        online.close()
