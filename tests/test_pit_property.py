"""get_historical_features against a brute-force reference on random data (DESIGN section 2)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fsnb

BASE = datetime(2024, 1, 1)
# Composite keys whose string concatenations collide: (1, 23) and (12, 3) both read "123".
KEYS = [(1, 23), (12, 3), (1, 2), (2, 1)]

feature_row = st.tuples(
    st.sampled_from(KEYS),
    st.integers(0, 6),  # event time in days: few values, so ties are common
    st.integers(0, 8),  # created time in days
    st.integers(-5, 5),  # value
)
label_row = st.tuples(st.sampled_from([*KEYS, (9, 9)]), st.integers(-2, 9), st.integers(0, 3))
ttls = st.sampled_from([None, 0, 1, 2, 3])


def _reference(batches: list[list[tuple[Any, ...]]], labels: list[tuple[Any, ...]], ttl: int | None,
               created: bool, as_of: bool) -> list[int | None]:
    stored: list[tuple[Any, ...]] = []  # (key, ts, created, value, seq)
    seen: set[tuple[Any, ...]] = set()
    for batch in batches:
        for row in batch:
            ident = row if created else (row[0], row[1], row[3])
            if ident in seen:
                continue  # an exact duplicate of a stored row is not stored again
            seen.add(ident)
            stored.append((*row, len(stored)))
    out: list[int | None] = []
    for key, t, _ in labels:
        best = None
        for k, ts, cr, value, seq in stored:
            if k != key or ts > t or (ttl is not None and ts < t - ttl):
                continue
            if as_of and cr > t:
                continue
            rank = (ts, cr if created else 0, seq)
            if best is None or rank > best[0]:
                best = (rank, value)
        out.append(None if best is None else best[1])
    return out


def _day(n: int) -> datetime:
    return BASE + timedelta(days=n)


def _frame(rows: list[tuple[Any, ...]], created: bool, aware: bool) -> pl.DataFrame:
    tz = timezone(timedelta(hours=5, minutes=30))
    def stamp(n: int) -> datetime:
        d = _day(n)
        return d.replace(tzinfo=timezone.utc).astimezone(tz) if aware else d
    data: dict[str, Any] = {
        "k1": [r[0][0] for r in rows],
        "k2": [r[0][1] for r in rows],
        "event_timestamp": [stamp(r[1]) for r in rows],
        "value": [r[3] for r in rows],
    }
    if created:
        data["created"] = [stamp(r[2]) for r in rows]
    return pl.DataFrame(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(feature_row, min_size=1, max_size=8), min_size=1, max_size=3),
    labels=st.lists(label_row, min_size=1, max_size=12),
    ttl=ttls,
    created=st.booleans(),
    aware_features=st.booleans(),
)
def test_point_in_time_matches_reference(batches, labels, ttl, created, aware_features) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = fsnb.FeatureStore(Path(tmp) / "s")
        view = fsnb.FeatureView(
            "v", entities=["k1", "k2"], created_timestamp_field="created" if created else None,
            ttl=None if ttl is None else timedelta(days=ttl),
        )
        store.register(view)
        for batch in batches:
            store.ingest("v", _frame(batch, created, aware_features))
        # duplicate label rows come from the strategy; add one explicitly
        labels = [*labels, labels[0]]
        naive = pl.DataFrame({
            "k1": [lab[0][0] for lab in labels], "k2": [lab[0][1] for lab in labels],
            "event_timestamp": [_day(lab[1]) for lab in labels],
            "label": list(range(len(labels))),
        })
        # The same instants as aware timestamps in another zone must give the same answer.
        aware = naive.with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone("America/New_York"))
        for lab_frame in (naive, aware):
            got = store.get_historical_features(lab_frame, ["v:value"])
            assert got.columns == [*lab_frame.columns, "value"]
            assert got.drop("value").equals(lab_frame)  # label columns pass through, in order
            expected = _reference(batches, labels, ttl, created, as_of=False)
            assert got["value"].to_list() == expected
        if created:
            got = store.get_historical_features(naive, ["v:value"], as_of_ingestion=True)
            assert got["value"].to_list() == _reference(batches, labels, ttl, created, as_of=True)
        store.close()


def test_as_of_ingestion_without_created_column_uses_ingestion_time(store) -> None:
    """Without a created column a row is known from the moment fsnb ingested it."""
    store.register(fsnb.FeatureView("v", entities=["k"]))
    store.ingest("v", pl.DataFrame({"k": [1], "event_timestamp": [datetime(2024, 1, 1)], "value": [7]}))
    now = datetime.now(timezone.utc)
    labels = pl.DataFrame({
        "k": [1, 1], "event_timestamp": [datetime(2024, 6, 1, tzinfo=timezone.utc), now + timedelta(hours=1)],
    })
    got = store.get_historical_features(labels, ["v:value"], as_of_ingestion=True)
    assert got["value"].to_list() == [None, 7]
    got = store.get_historical_features(labels, ["v:value"])
    assert got["value"].to_list() == [7, 7]


# -- exact times: every unit, naive or aware, nanosecond labels (DESIGN section 2) --------------
BASE_NS = 1_704_067_200_000_000_000  # 2024-01-01 UTC
STEP = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}

ns_feature_row = st.tuples(st.sampled_from(KEYS[:2]), st.integers(0, 5), st.integers(-5, 5))  # key, ticks, value
ns_label_row = st.tuples(st.sampled_from(KEYS[:2]), st.integers(-1, 6), st.sampled_from([-1, 0, 1]))  # key, ticks, ns


def _ns_reference(rows: list[tuple[Any, ...]], labels: list[tuple[Any, ...]], step: int, ttl_ticks: int | None) -> list[int | None]:
    out: list[int | None] = []
    stored: dict[tuple[Any, ...], int] = {}
    order: list[tuple[Any, ...]] = []
    for key, ticks, value in rows:
        if (key, ticks, value) not in stored:
            stored[(key, ticks, value)] = len(order)
            order.append((key, ticks, value))
    for key, ticks, jitter in labels:
        t = ticks * step + jitter
        best = None
        for seq, (k, ft, value) in enumerate(order):
            ts = ft * step
            if k != key or ts > t or (ttl_ticks is not None and ts < t - ttl_ticks * step):
                continue
            if best is None or (ts, seq) > best[0]:
                best = ((ts, seq), value)
        out.append(None if best is None else best[1])
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(ns_feature_row, min_size=1, max_size=8),
    labels=st.lists(ns_label_row, min_size=1, max_size=10),
    unit=st.sampled_from(list(STEP)),
    feature_tz=st.sampled_from([None, "UTC", "Asia/Kolkata"]),
    label_form=st.sampled_from(["pandas-ns-utc", "arrow-ns-naive", "arrow-ns-aware", "polars-ns"]),
    ttl_ticks=st.sampled_from([None, 0, 2]),
)
def test_point_in_time_is_exact_for_every_unit(rows, labels, unit, feature_tz, label_form, ttl_ticks) -> None:
    import pandas as pd
    import pyarrow as pa

    step = STEP[unit]
    if ttl_ticks and step < 1000:
        ttl_ticks = None  # a timedelta cannot say 2 ns
    with tempfile.TemporaryDirectory() as tmp:
        store = fsnb.FeatureStore(Path(tmp) / "s")
        ttl = None if ttl_ticks is None else timedelta(microseconds=ttl_ticks * step // 1000)
        store.register(fsnb.FeatureView("v", entities=["k1", "k2"], ttl=ttl))
        stamps = pa.array([BASE_NS // step + r[1] for r in rows], pa.timestamp(unit, feature_tz))
        store.ingest("v", pa.table({
            "k1": [r[0][0] for r in rows], "k2": [r[0][1] for r in rows],
            "event_timestamp": stamps, "value": [r[2] for r in rows],
        }))
        ns = [BASE_NS + lab[1] * step + lab[2] for lab in labels]
        keys = {"k1": [lab[0][0] for lab in labels], "k2": [lab[0][1] for lab in labels]}
        frame: Any
        if label_form == "pandas-ns-utc":
            frame = pd.DataFrame({**keys, "event_timestamp": pd.to_datetime(ns, utc=True)})
        elif label_form == "polars-ns":
            frame = pl.DataFrame(keys).with_columns(event_timestamp=pl.Series(ns).cast(pl.Datetime("ns", "Europe/Paris")))
        else:
            tz = "America/New_York" if label_form == "arrow-ns-aware" else None
            frame = pa.table({**keys, "event_timestamp": pa.array(ns, pa.timestamp("ns", tz))})
        got = store.get_historical_features(frame, ["v:value"])
        assert got["value"].to_list() == _ns_reference(rows, labels, step, ttl_ticks)
        assert got["event_timestamp"].cast(pl.Int64).to_list() == ns  # label times pass through exactly
        store.close()
