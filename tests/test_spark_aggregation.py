"""Window aggregations on the Spark engine (fsnb/backends/spark_agg.py): the brute-force
reference of tests/test_aggregation_property.py, the DuckDB engine on the same data,
Spark labels in and out, and fsnb.aggregation_views (training sets, materialize,
check_skew, the naive join) with the Spark engine as the offline store.

Spark jobs are slow here, so each hypothesis example packs several keys' worth of cases
into one table and asks both modes (as_of_ingestion off and on) of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_aggregation_property import _reference, _same, aggregation

import fsnb
from fsnb import aggregation_views
from fsnb.aggregation import Aggregation
from fsnb.backends.duckdb_offline import OfflineStore
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.backends.spark_offline import SparkOfflineStore
from fsnb.backends.sqlite_online import OnlineStore
from fsnb.errors import InvalidData
from fsnb.selection import ViewSelection
from fsnb.validation import check_batch

pytestmark = pytest.mark.slow

BASE_US = 1_704_067_200 * 10**6  # 2024-01-01 UTC
MIN_US = 60 * 10**6
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Composite keys whose string concatenations collide ((1, 23) and (12, 3) both read "123"),
# three cases' worth (the first part offset by 100 per case); (9, 9) has no events.
KEYS = [(c * 100 + a, b) for c in range(3) for a, b in [(1, 23), (12, 3), (1, 2)]]
KNOWN = [0, 5]  # minutes at which events become known (created, or the batch's ingestion)
TWO = {"k1": "BIGINT", "k2": "BIGINT"}

# (key, minute, nudge in us, known index, value or None): nudges put events at t - window +- 1 us
event = st.tuples(st.sampled_from(KEYS), st.integers(0, 8), st.sampled_from([0, 0, 0, 1, -1]),
                  st.integers(0, len(KNOWN) - 1), st.one_of(st.none(), st.integers(-4, 4)))
label = st.tuples(st.sampled_from([*KEYS, (9, 9)]), st.integers(-2, 12), st.sampled_from([0, 0, 0, -1, 1]))
LABEL_TYPES = [pa.timestamp("us"), pa.timestamp("us", "UTC"), pa.timestamp("us", "America/New_York"),
               pa.timestamp("ns"), pa.timestamp("ns", "Asia/Kolkata")]


def _view(created: bool) -> fsnb.FeatureView:
    return fsnb.FeatureView("v", entities=["k1", "k2"], timestamp_field="ts",
                            created_timestamp_field="created" if created else None,
                            features={"ivalue": "BIGINT", "fvalue": "DOUBLE"}, entity_types=dict(TWO))


def _times(us: Sequence[int]) -> pa.Array:
    return pa.array(list(us), pa.timestamp("us", "UTC"))


def _write(engine: SparkOfflineStore, events: list[tuple[Any, ...]], created: bool) -> list[tuple[Any, ...]]:
    """Write the events as the store would get them; return them as stored, for _reference:
    (key, ts ns, known ns, ivalue, fvalue), exact duplicates kept once (the first written)."""
    con = duckdb.connect()
    view = _view(created)
    # Without a created column an event is known when its batch is ingested: one batch per known minute.
    batches = [events] if created else [[e for e in events if e[3] == i] for i in range(len(KNOWN))]
    stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for i, batch in enumerate(batches):
        if not batch:
            continue
        ts = [BASE_US + e[1] * MIN_US + e[2] for e in batch]
        data: dict[str, Any] = {
            "k1": pa.array([e[0][0] for e in batch], pa.int64()), "k2": pa.array([e[0][1] for e in batch], pa.int64()),
            "ts": _times(ts), "ivalue": pa.array([e[4] for e in batch], pa.int64()),
            "fvalue": pa.array([None if e[4] is None else e[4] / 4 for e in batch], pa.float64()),
        }
        if created:
            data["created"] = _times([BASE_US + KNOWN[e[3]] * MIN_US for e in batch])
        checked = check_batch(con, view, pa.table(data))
        ingested = EPOCH + timedelta(microseconds=BASE_US + KNOWN[i] * MIN_US)
        engine.write(checked, ingested_at=EPOCH if created else ingested)
        for e, t in zip(batch, ts, strict=True):
            known = BASE_US + KNOWN[e[3]] * MIN_US if created else ingested_at_us(ingested)
            ident = (e[0], t, known if created else None, e[4])
            stored.setdefault(ident, (e[0], t * 1000, known * 1000, e[4], None if e[4] is None else e[4] / 4))
    return list(stored.values())


def ingested_at_us(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def _labels(labels: list[tuple[Any, ...]], arrow_type: pa.DataType) -> pa.Table:
    us = [BASE_US + lab[1] * MIN_US + lab[2] for lab in labels]
    return pa.table({
        ROW: pa.array(range(len(labels)), pa.int64()),
        T: _times(us).cast(arrow_type),
        "k1": pa.array([lab[0][0] for lab in labels], pa.int64()),
        "k2": pa.array([lab[0][1] for lab in labels], pa.int64()),
    })


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(event, min_size=0, max_size=36),
    labels=st.lists(label, min_size=1, max_size=24),
    aggs=st.lists(aggregation, min_size=1, max_size=5, unique_by=lambda a: a.name),
    label_type=st.sampled_from(LABEL_TYPES),
    created=st.booleans(),
)
def test_spark_aggregations_match_reference(spark: Any, tmp_path_factory: pytest.TempPathFactory, events: Any,
                                            labels: Any, aggs: Any, label_type: Any, created: bool) -> None:
    engine = SparkOfflineStore(tmp_path_factory.mktemp("agg") / "wh", spark)
    labels = [*labels, labels[0]]  # a duplicate label row
    stored = _write(engine, events, created)
    table = _labels(labels, label_type)
    ref_labels = [(lab[0], (BASE_US + lab[1] * MIN_US + lab[2]) * 1000) for lab in labels]
    for as_of in (False, True):
        got = engine.aggregate(table, _view(created), aggs, TWO, as_of_ingestion=as_of)
        assert got.column_names == [ROW, *(a.name for a in aggs)]
        assert got.column(ROW).to_pylist() == list(range(len(labels)))
        for agg in aggs:
            want = _reference(stored, ref_labels, agg, as_of)
            assert _same(got.column(agg.name).to_pylist(), want), (agg, as_of, got.column(agg.name).to_pylist(), want)


def test_sub_microsecond_label_times_are_refused(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    _write(engine, [(KEYS[0], 1, 0, 0, 3)], False)
    labels = pa.table({ROW: pa.array([0], pa.int64()), T: pa.array([BASE_US * 1000 + 500], pa.timestamp("ns")),
                       "k1": pa.array([1], pa.int64()), "k2": pa.array([23], pa.int64())})
    with pytest.raises(InvalidData, match="sub-microsecond") as info:
        engine.aggregate(labels, _view(False), [Aggregation(None, "count", "1m")], TWO)
    assert "\n" not in str(info.value)


def test_output_types_are_duckdbs_and_a_view_without_events_gives_zeros_and_nulls(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    aggs = [Aggregation("ivalue", "sum", "1m"), Aggregation("fvalue", "sum", "1m"), Aggregation("ivalue", "mean", "1m"),
            Aggregation("ivalue", "min", "1m"), Aggregation("fvalue", "max", "1m"), Aggregation(None, "count", "1m"),
            Aggregation("ivalue", "stddev", "1m")]
    labels = _labels([(KEYS[0], 1, 0)], pa.timestamp("us"))
    empty = engine.aggregate(labels, _view(False), aggs, TWO)
    _write(engine, [(KEYS[0], 1, 0, 0, 3)], False)
    got = engine.aggregate(labels, _view(False), aggs, TWO)
    types = ["int64", "double", "double", "int64", "double", "int64", "double"]
    assert [str(f.type) for f in got.schema][1:] == types
    assert [str(f.type) for f in empty.schema][1:] == types
    assert got.to_pylist()[0] == {ROW: 0, "ivalue_sum_1m": 3, "fvalue_sum_1m": 0.75, "ivalue_mean_1m": 3.0, "ivalue_min_1m": 3,
                                  "fvalue_max_1m": 0.75, "count_1m": 1, "ivalue_stddev_1m": None}
    assert empty.to_pylist()[0] == {ROW: 0, **{a.name: 0 if a.function == "count" else None for a in aggs}}


def test_stddev_is_accurate_on_values_far_from_zero(spark: Any, tmp_path: Path) -> None:
    """1e6 + N(0, 1), as the DuckDB test: within 1e-9 of the exact sample stddev."""
    from fractions import Fraction

    rng = np.random.default_rng(3)
    n = 600
    minutes = np.sort(rng.integers(0, 200, n))
    values = 1e6 + rng.normal(0, 1, n)
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    frame = pa.table({"k1": pa.array([1] * n, pa.int64()), "k2": pa.array([1] * n, pa.int64()),
                      "ts": _times([BASE_US + int(m) * MIN_US for m in minutes]),
                      "ivalue": pa.array([0] * n, pa.int64()), "fvalue": pa.array(values)})
    engine.write(check_batch(duckdb.connect(), _view(False), frame))
    label_minutes = list(range(0, 200, 7))
    labels = _labels([((1, 1), m, 0) for m in label_minutes], pa.timestamp("us"))
    got = engine.aggregate(labels, _view(False), [Aggregation("fvalue", "stddev", "30m")], TWO)
    for m, value in zip(label_minutes, got.column("fvalue_stddev_30m").to_pylist(), strict=True):
        window = [Fraction(float(v)) for mm, v in zip(minutes, values, strict=True) if m - 30 < mm <= m]
        if len(window) < 2:
            assert value is None
            continue
        mean = sum(window) / len(window)
        exact = math.sqrt(sum((v - mean) ** 2 for v in window) / (len(window) - 1))
        assert math.isclose(value, exact, rel_tol=1e-9), (m, value, exact)


# -- the two engines on the same random data -------------------------------------------------------
ALL = [Aggregation("x", "sum", "2d"), Aggregation("x", "mean", "1d"), Aggregation("y", "sum", "3d"),
       Aggregation("y", "mean", "2d"), Aggregation("x", "min", "1d"), Aggregation("y", "max", "3d"),
       Aggregation("x", "stddev", "3d"), Aggregation("y", "stddev", "2d"), Aggregation("x", "count", "1d"),
       Aggregation(None, "count", "2d"), Aggregation("s", "max", "2d")]
DAY_US = 86_400_000_000


def _same_value(a: Any, b: Any, *, close: bool) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-12) if close else bool(a == b)


def test_duckdb_and_spark_engines_give_identical_aggregates(spark: Any, tmp_path: Path) -> None:
    """Same batches into a DuckDB store and the Spark engine: the same values and types
    for every function (stddev to 1e-12: the engines add in different orders; sums and
    means of these quarter values are exact in both)."""
    rng = np.random.default_rng(20240601)
    store = fsnb.FeatureStore(tmp_path / "store")
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    store.register(fsnb.FeatureView("a", entities=["k1", "k2"], created_timestamp_field="created", aggregations=ALL))
    keys = [(1, 23), (12, 3), (1, 2)]
    con = duckdb.connect()
    for n in (60, 40):
        idx = rng.integers(0, len(keys), n)
        days = rng.integers(0, 6, n)
        event_us = [int(d) * DAY_US + int(o) for d, o in zip(days, rng.choice([0, 0, 1, -1], n), strict=True)]
        frame = pl.DataFrame({
            "k1": [keys[i][0] for i in idx], "k2": [keys[i][1] for i in idx],
            "event_timestamp": [datetime(2024, 1, 1) + timedelta(microseconds=u) for u in event_us],
            "created": [datetime(2024, 1, 1) + timedelta(microseconds=u + int(c) * DAY_US // 2)
                        for u, c in zip(event_us, rng.integers(0, 4, n), strict=True)],
            "x": [None if r < 0.15 else int(v) for r, v in zip(rng.random(n), rng.integers(-3, 4, n), strict=True)],
            "y": [float("nan") if r < 0.05 else None if r < 0.2 else float(v) / 4
                  for r, v in zip(rng.random(n), rng.integers(-8, 9, n), strict=True)],
            "s": [f"s{i}" for i in rng.integers(0, 3, n)],
        })
        store.ingest("a", frame)
        checked = check_batch(con, store.get_feature_view("a"), frame.to_arrow())
        engine.write(checked)
    view = store.get_feature_view("a")
    m = 90
    lab = rng.integers(0, len(keys) + 1, m)
    label_us = [int(d) * DAY_US + int(o) for d, o in zip(rng.integers(-1, 9, m), rng.choice([0, 0, 1, -1, DAY_US // 2], m), strict=True)]
    for zone in (None, "Asia/Kolkata"):
        labels = pa.table({
            ROW: pa.array(range(m + 3), pa.int64()),
            T: pa.array([datetime(2024, 1, 1) + timedelta(microseconds=u) for u in [*label_us, *label_us[:3]]],
                        pa.timestamp("us")).cast(pa.timestamp("us", zone)) if zone else
               pa.array([datetime(2024, 1, 1) + timedelta(microseconds=u) for u in [*label_us, *label_us[:3]]], pa.timestamp("us")),
            "k1": [[*keys, (9, 9)][i][0] for i in [*lab, *lab[:3]]],
            "k2": [[*keys, (9, 9)][i][1] for i in [*lab, *lab[:3]]],
        })
        for as_of in (False, True):
            duck = store.offline.aggregate(labels, view, ALL, TWO, as_of_ingestion=as_of)
            got = engine.aggregate(labels, view, ALL, TWO, as_of_ingestion=as_of)
            assert got.schema == duck.schema
            for agg in ALL:
                a, b = got.column(agg.name).to_pylist(), duck.column(agg.name).to_pylist()
                close = agg.function == "stddev"
                assert all(_same_value(x, y, close=close) for x, y in zip(a, b, strict=True)), (agg, as_of, a, b)
    # Spark labels in: a Spark DataFrame out, the same rows.
    from pyspark.sql import DataFrame

    frame = engine.aggregate(spark.createDataFrame(labels), view, ALL, TWO, as_of_ingestion=True)
    assert isinstance(frame, DataFrame)
    assert frame.columns == [ROW, *(a.name for a in ALL)]
    rows = [r.asDict() for r in frame.collect()]
    assert [r[ROW] for r in rows] == list(range(m + 3))
    for agg in ALL:
        assert all(_same_value(r[agg.name], y, close=agg.function == "stddev")
                   for r, y in zip(rows, got.column(agg.name).to_pylist(), strict=True)), agg
    store.close()


# -- fsnb.aggregation_views with the Spark engine as the offline store --------------------------------
def test_views_materialize_check_skew_and_naive_join_on_the_spark_engine(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark, duck=OfflineStore(tmp_path / "offline.duckdb"))
    online = OnlineStore(tmp_path / "online.sqlite")
    aggs = [Aggregation("amount", "sum", "1d"), Aggregation(None, "count", "2h"), Aggregation("amount", "stddev", "1d")]
    view = fsnb.FeatureView("t", entities=["k"], timestamp_field="ts", features={"amount": "DOUBLE"},
                            entity_types={"k": "BIGINT"}, aggregations=aggs)
    names = [a.name for a in aggs]
    assert aggregation_views.materialize(engine, online, view) == 0  # no table yet
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ago = [timedelta(hours=3), timedelta(hours=1), timedelta(minutes=10), timedelta(hours=30), timedelta(minutes=20), timedelta(days=3)]

    def write(keys: list[int], deltas: list[timedelta], amounts: list[float]) -> None:
        frame = pa.table({"k": pa.array(keys, pa.int64()), "ts": _times([ingested_at_us(now - d) for d in deltas]),
                          "amount": pa.array(amounts)})
        engine.write(check_batch(duckdb.connect(), view, frame))

    write([1, 1, 1, 2, 2, 3], ago, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    # The online windows hold the events of the last day: key 1's three and key 2's latest.
    assert aggregation_views.materialize(engine, online, view) == 4
    _, compared, mismatches, _ = aggregation_views.check_skew(engine, online, view)
    assert (compared, mismatches) == (3, 0)  # key 3 has no event in any window: 0 and nulls on both sides
    write([2], [timedelta(minutes=5)], [64.0])  # offline only: check_skew must see it
    _, compared, mismatches, details = aggregation_views.check_skew(engine, online, view)
    assert (compared, mismatches) == (3, 1) and details.get_column("k").to_list() == [2]

    # The naive join reads each aggregate as of the key's latest event.
    con = duckdb.connect()
    relation = aggregation_views.naive_relation(con, view, names, 0, offline=engine)
    got = con.sql(f"SELECT * FROM {relation} ORDER BY k").pl()
    assert got.get_column("k").to_list() == [1, 2, 3]
    assert got.get_column("amount_sum_1d").to_list() == [7.0, 80.0, 32.0]
    assert got.get_column("count_2h").to_list() == [2, 2, 1]
    assert got.get_column("amount_stddev_1d").to_list()[2] is None
    assert math.isclose(got.get_column("amount_stddev_1d").to_list()[0], float(np.std([1.0, 2.0, 4.0], ddof=1)))
    assert got.get_column("ts").to_list()[0] == now - timedelta(minutes=10)

    # A training set's aggregation columns, and the event time leakage reads (latest event in the longest window).
    labels = pa.table({ROW: pa.array([0, 1, 2], pa.int64()), "k": pa.array([1, 2, 9], pa.int64()),
                       T: pa.array([now - timedelta(minutes=30)] * 3, pa.timestamp("us", "UTC"))})
    sel = ViewSelection(view, names, names)
    out = aggregation_views.point_in_time(engine, labels, [sel], {"k": "BIGINT"}, as_of_ingestion=False,
                                          with_event_times=True, plain=lambda s: pytest.fail("no ordinary view"))
    assert out.column_names == [ROW, *names, "__fsnb_ts_0"]
    assert out.column("amount_sum_1d").to_pylist() == [3.0, None, None]  # key 2's events: 30 h before, 10 min after
    assert out.column("count_2h").to_pylist() == [1, 0, 0]
    assert out.column("__fsnb_ts_0").to_pylist() == [now - timedelta(hours=1), None, None]
    online.close()
