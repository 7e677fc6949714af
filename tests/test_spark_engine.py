"""The Spark engine (fsnb/backends/spark_offline.py): a brute-force reference of DESIGN
section 2, the DuckDB engine on the same data, the write rules, crashes.

Spark is slow to start and each job costs a fraction of a second here, so the examples
are few and rich; one SparkSession serves every test (tests/conftest.py), its JVM in a
non-UTC zone.
"""

from __future__ import annotations

import os
import random
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
from polars.testing import assert_frame_equal

import fsnb
from fsnb import retrieval
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.backends.spark_offline import SparkOfflineStore
from fsnb.errors import InvalidData
from fsnb.selection import ViewSelection
from fsnb.testing import kill_mid_write
from fsnb.validation import CheckedBatch, check_batch

pytestmark = pytest.mark.slow

DAY = 86_400_000_000  # microseconds
BASE = datetime(2024, 1, 1)
# Composite keys whose string concatenations collide: (1, 23) and (12, 3) both read "123".
KEYS = [(1, 23), (12, 3), (1, 2), (2, 1)]
IST = timezone(timedelta(hours=5, minutes=30))


def _at(us: int) -> datetime:
    return BASE + timedelta(microseconds=us)


def _labels_arrow(labels: pl.DataFrame, keys: list[str], ts: str = "event_timestamp") -> pa.Table:
    arrow = labels.select([*keys, ts]).to_arrow().rename_columns([*keys, T])
    return arrow.append_column(ROW, pa.array(np.arange(labels.height, dtype=np.int64)))


@contextmanager
def _zones(session: Any, zone: str | None) -> Iterator[None]:
    """Run with the process TZ and the Spark session time zone set to zone (None: as they are)."""
    if zone is None:
        yield
        return
    old_tz, old_session = os.environ.get("TZ"), session.conf.get("spark.sql.session.timeZone")
    os.environ["TZ"] = zone
    time.tzset()
    session.conf.set("spark.sql.session.timeZone", zone)
    try:
        yield
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
        session.conf.set("spark.sql.session.timeZone", old_session)


# -- a brute-force reference -----------------------------------------------------------------
feature_row = st.tuples(
    st.sampled_from(KEYS),
    st.integers(0, 5),  # event day: few values, so ties are common
    st.integers(0, 1),  # + this many microseconds: TTL edges and exactness at 1 us
    st.integers(0, 7),  # created day
    st.integers(-5, 5),  # value
)
label_row = st.tuples(st.sampled_from([*KEYS, (9, 9)]), st.integers(-1, 8), st.integers(0, 1))


def _reference(batches: list[list[tuple[Any, ...]]], labels: list[tuple[Any, ...]], ttl: int | None,
               created: bool, as_of: bool, ingested: list[int]) -> list[int | None]:
    stored: list[tuple[Any, ...]] = []  # (key, ts, created, value, seq, ingested)
    seen: set[tuple[Any, ...]] = set()
    for b, batch in enumerate(batches):
        for key, day, off, cday, value in batch:
            ts = day * DAY + off
            ident = (key, ts, cday, value) if created else (key, ts, value)
            if ident in seen:
                continue  # an exact duplicate is stored once, where it first came
            seen.add(ident)
            stored.append((key, ts, cday * DAY if created else 0, value, len(stored), ingested[b]))
    out: list[int | None] = []
    for key, day, off in labels:
        t = day * DAY + off
        best = None
        for k, ts, cr, value, seq, ing in stored:
            if k != key or ts > t or (ttl is not None and ts < t - ttl * DAY):
                continue
            if as_of and (cr if created else ing) > t:
                continue
            rank = (ts, cr, seq)
            if best is None or rank > best[0]:
                best = (rank, value)
        out.append(None if best is None else best[1])
    return out


def _feature_frame(rows: list[tuple[Any, ...]], created: bool, aware: bool) -> pl.DataFrame:
    def stamp(us: int) -> datetime:
        d = _at(us)
        return d.replace(tzinfo=timezone.utc).astimezone(IST) if aware else d

    data: dict[str, Any] = {
        "k1": [r[0][0] for r in rows],
        "k2": [r[0][1] for r in rows],
        "event_timestamp": [stamp(r[1] * DAY + r[2]) for r in rows],
        "value": [r[4] for r in rows],
    }
    if created:
        data["created"] = [stamp(r[3] * DAY) for r in rows]
    return pl.DataFrame(data)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(feature_row, min_size=1, max_size=10), min_size=1, max_size=2),
    labels=st.lists(label_row, min_size=1, max_size=16),
    ttl=st.sampled_from([None, 0, 1, 2]),
    created=st.booleans(),
    aware_features=st.booleans(),
    aware_labels=st.booleans(),
    zone=st.sampled_from([None, "America/New_York", "Asia/Kolkata"]),
)
def test_point_in_time_matches_reference(spark: Any, tmp_path_factory: pytest.TempPathFactory, batches: Any,
                                         labels: Any, ttl: Any, created: bool, aware_features: bool,
                                         aware_labels: bool, zone: str | None) -> None:
    engine = SparkOfflineStore(tmp_path_factory.mktemp("pit") / "wh", spark)
    view = fsnb.FeatureView(
        "v", entities=["k1", "k2"], created_timestamp_field="created" if created else None,
        ttl=None if ttl is None else timedelta(days=ttl),
    )
    ingested = [(2 * b + 1) * DAY for b in range(len(batches))]  # known from then on (without created)
    labels = [*labels, labels[0]]  # a duplicate label row, always
    con = duckdb.connect()
    with _zones(spark, zone):
        for b, batch in enumerate(batches):
            checked = check_batch(con, view, _feature_frame(batch, created, aware_features).to_arrow())
            view = checked.view
            engine.write(checked, ingested_at=_at(ingested[b]).replace(tzinfo=timezone.utc))
        frame = pl.DataFrame({
            "k1": [lab[0][0] for lab in labels], "k2": [lab[0][1] for lab in labels],
            "event_timestamp": [_at(lab[1] * DAY + lab[2]) for lab in labels],
        })
        if aware_labels:  # the same instants, written in another zone
            frame = frame.with_columns(
                pl.col("event_timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone("America/New_York")
            )
        sel = ViewSelection(view, ["value"], ["value"])
        for as_of in (False, True):
            got = engine.point_in_time(_labels_arrow(frame, ["k1", "k2"]), [sel], {"k1": "BIGINT", "k2": "BIGINT"},
                                       as_of_ingestion=as_of, with_event_times=True)
            assert got.column(ROW).to_pylist() == list(range(len(labels)))  # every label row once, in order
            assert got.column("value").to_pylist() == _reference(batches, labels, ttl, created, as_of, ingested)


# -- the two engines on the same random data -------------------------------------------------------
class Twin:
    """A DuckDB FeatureStore and a Spark engine fed the same batches."""

    def __init__(self, tmp: Path, spark: Any) -> None:
        self.duck = fsnb.FeatureStore(tmp / "store")
        self.spark = SparkOfflineStore(tmp / "warehouse", spark)
        self.con = duckdb.connect()

    def ingest(self, name: str, frame: pl.DataFrame) -> None:
        rows = self.duck.ingest(name, frame)
        batch = check_batch(self.con, self.duck.get_feature_view(name), frame.to_arrow())
        assert self.spark.write(batch) == rows

    def training_sets(self, labels: pl.DataFrame, refs: list[str], *, as_of: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
        sel = self.duck.resolve(refs)
        duck = retrieval.point_in_time(self.duck.offline, labels, sel, "event_timestamp", as_of_ingestion=as_of, with_event_times=True)
        key_types = {k: t for s in sel.selections for k, t in (s.view.entity_types or {}).items()}
        got = self.spark.point_in_time(_labels_arrow(labels, sel.entity_columns), sel.selections, key_types,
                                       as_of_ingestion=as_of, with_event_times=True)
        spark = pl.from_arrow(got)
        assert isinstance(spark, pl.DataFrame)
        # The DuckDB store keeps nanoseconds, Spark microseconds: the chosen rows' event
        # times are compared as instants (every time in this test is a whole microsecond).
        duck = duck.with_columns(pl.col(c).cast(pl.Datetime("us", "UTC")) for c, t in duck.schema.items() if isinstance(t, pl.Datetime))
        spark = spark.with_columns(pl.col(c).cast(pl.Datetime("us", "UTC")) for c, t in spark.schema.items() if isinstance(t, pl.Datetime))
        return labels.hstack(duck.drop(ROW)), labels.hstack(spark.drop(ROW))


def _random_rows(rng: np.random.Generator, n: int, *, created: bool) -> pl.DataFrame:
    keys = rng.integers(0, len(KEYS), n)
    days = rng.integers(0, 8, n)
    data: dict[str, Any] = {
        "k1": [KEYS[i][0] for i in keys],
        "k2": [KEYS[i][1] for i in keys],
        "event_timestamp": [_at(int(d) * DAY + int(rng.integers(0, 2))) for d in days],
        "x": rng.integers(-3, 4, n),
        "y": [float("nan") if r < 0.1 else None if r < 0.2 else round(r, 3) for r in rng.random(n)],
        "s": [f"s{i}" for i in rng.integers(0, 3, n)],
    }
    if created:
        data["created"] = [_at(int(d) * DAY + int(rng.integers(-DAY, 3 * DAY))) for d in days]
    frame = pl.DataFrame(data)
    return pl.concat([frame, frame.head(3)])  # exact duplicates within the batch


def test_duckdb_and_spark_engines_give_identical_training_sets(spark: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(20240101)
    twin = Twin(tmp_path, spark)
    twin.duck.register(fsnb.FeatureView("a", entities=["k1", "k2"], created_timestamp_field="created", ttl="3d"))
    twin.duck.register(fsnb.FeatureView("b", entities=["k1"], ttl=None))
    first = _random_rows(rng, 60, created=True)
    twin.ingest("a", first)
    twin.ingest("a", pl.concat([_random_rows(rng, 40, created=True), first.head(5)]))  # duplicates of stored rows
    b_rows = _random_rows(rng, 50, created=False).select("k1", "event_timestamp", pl.col("x").alias("z"))
    twin.ingest("b", b_rows)
    twin.ingest("b", _random_rows(rng, 30, created=False).select("k1", "event_timestamp", pl.col("x").alias("z")))
    n = 120
    keys = rng.integers(0, len(KEYS) + 1, n)
    labels = pl.DataFrame({
        "k1": [[*KEYS, (9, 9)][i][0] for i in keys],
        "k2": [[*KEYS, (9, 9)][i][1] for i in keys],
        # before any feature, ties at exactly an event time, TTL edges, and after every ingestion
        "event_timestamp": [
            datetime(2031, 1, 1) if r < 0.05 else _at(int(d) * DAY + int(o))
            for r, d, o in zip(rng.random(n), rng.integers(-1, 12, n), rng.integers(-1, 2, n), strict=True)
        ],
        "label": rng.integers(0, 2, n),
    })
    labels = pl.concat([labels, labels.head(4)])  # duplicate label rows
    aware = labels.with_columns(
        pl.col("event_timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Kolkata")
    )
    refs = ["a:x", "a:y", "a:s", "b:z"]
    for as_of in (False, True):
        for frame in (labels, aware):
            duck, spark_set = twin.training_sets(frame, refs, as_of=as_of)
            assert duck.height == frame.height
            assert_frame_equal(spark_set, duck)
    twin.duck.close()


# -- write rules -------------------------------------------------------------------------------------
def _checked(view: fsnb.FeatureView, frame: pl.DataFrame) -> Any:
    return check_batch(duckdb.connect(), view, frame.to_arrow())


def test_write_rules_duplicates_entries_replace_and_schema_evolution(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    view = fsnb.FeatureView("v", entities=["k"])
    rows = pl.DataFrame({"k": [1, 1, 2, 1], "event_timestamp": [_at(0), _at(DAY), _at(0), _at(0)], "x": [1, 2, 3, 1]})
    batch = _checked(view, rows)
    view = batch.view
    assert not engine.has_rows("v")
    assert engine.write(batch, entry="e1") == 3  # the repeated row is stored once
    assert engine.has_rows("v")
    assert engine.write(_checked(view, rows.head(2)), entry="e1") == 0  # a replayed log entry
    assert engine.write(_checked(view, rows.head(2))) == 0  # duplicates of stored rows
    before = engine.read(view, system=True)
    # replace: the view's rows become exactly the batch's; a row kept keeps its ingestion time
    kept = rows.slice(1, 1)
    assert engine.write(_checked(view, pl.concat([kept, rows.head(1).with_columns(x=pl.lit(9, dtype=pl.Int64))])), replace=True) == 1
    after = engine.read(view, system=True)
    assert sorted(after.column("x").to_pylist()) == [2, 9]
    old = {r["x"]: r["_fsnb_ingested_at"] for r in before.to_pylist()}
    assert {r["x"]: r["_fsnb_ingested_at"] for r in after.to_pylist()}[2] == old[2]
    seqs = after.column("_fsnb_seq").to_pylist()
    assert len(set(seqs)) == 2 and max(seqs) > max(before.column("_fsnb_seq").to_pylist())
    # a new version adds a feature: the table gains the column, old rows read null
    v2 = fsnb.FeatureView("v", entities=["k"])
    batch2 = _checked(v2, pl.DataFrame({"k": [3], "event_timestamp": [_at(2 * DAY)], "x": [4], "extra": ["new"]}))
    assert engine.write(batch2) == 1
    got = engine.read(batch2.view).to_pylist()
    assert [r["extra"] for r in got] == [None, None, "new"]  # ordered by event time
    assert engine.read(batch2.view, start=_at(DAY), end=_at(DAY)).column("x").to_pylist() == [2]
    stats = engine.stats(batch2.view)
    assert (stats["rows"], stats["entities"]) == (3, 2)
    assert stats["max_ts"] == _at(2 * DAY).replace(tzinfo=timezone.utc).isoformat()
    latest = pa.Table.from_batches(list(engine.latest_per_entity(batch2.view, ["x", "_fsnb_seq"]))).sort_by("k")
    assert latest.column("x").to_pylist() == [2, 4]
    assert latest.column("event_timestamp").type == pa.timestamp("us", tz="UTC")
    engine.drop("v")
    assert not engine.has_rows("v") and engine.read(view).num_rows == 0


def test_ties_go_to_newest_created_then_last_ingested(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    view = fsnb.FeatureView("v", entities=["k"])
    batch = _checked(view, pl.DataFrame({"k": [1, 1], "event_timestamp": [_at(0), _at(0)], "x": [1, 2]}))
    engine.write(batch)
    engine.write(_checked(batch.view, pl.DataFrame({"k": [1], "event_timestamp": [_at(0)], "x": [0]})))
    labels = _labels_arrow(pl.DataFrame({"k": [1], "event_timestamp": [_at(0)]}), ["k"])
    sel = ViewSelection(batch.view, ["x"], ["x"])
    assert engine.point_in_time(labels, [sel], {"k": "BIGINT"}).column("x").to_pylist() == [0]


def test_sub_microsecond_times_are_refused_and_nothing_is_written(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    view = fsnb.FeatureView("v", entities=["k"]).with_schema({"k": "BIGINT"}, {"x": "BIGINT"})
    ns = pa.array([1_700_000_000_000_000_500], pa.timestamp("ns", tz="UTC"))
    with pytest.raises(InvalidData, match="sub-microsecond"):
        engine.write(CheckedBatch(pa.table({"k": [1], "event_timestamp": ns, "x": [1]}), view, {}))
    assert not engine.has_rows("v") and not (tmp_path / "wh" / "v").exists()
    whole = pa.array([1_700_000_000_000_001_000], pa.timestamp("ns"))
    assert engine.write(CheckedBatch(pa.table({"k": [1], "event_timestamp": whole, "x": [1]}), view, {})) == 1
    labels = pa.table({"k": [1], T: ns, ROW: pa.array([0], pa.int64())})
    with pytest.raises(InvalidData, match="sub-microsecond"):
        engine.point_in_time(labels, [ViewSelection(view, ["x"], ["x"])], {"k": "BIGINT"})


def test_spark_frames_in_and_a_spark_training_set_out(spark: Any, tmp_path: Path) -> None:
    engine = SparkOfflineStore(tmp_path / "wh", spark)
    view = fsnb.FeatureView("v", entities=["k"], ttl="2d")
    rows = spark.createDataFrame(
        [(1, datetime(2024, 1, 1), 10), (1, datetime(2024, 1, 3), 30), (2, datetime(2024, 1, 2), 20)],
        "k long, event_timestamp timestamp_ntz, x long",
    )  # naive times are UTC, whatever the session zone
    batch = engine.check_frame(duckdb.connect(), view, rows)
    assert engine.write(batch) == 3
    assert engine.write(engine.check_frame(duckdb.connect(), batch.view, rows)) == 0
    labels = spark.createDataFrame(
        [(2, datetime(2024, 1, 5), "c"), (1, datetime(2024, 1, 2), "a"), (1, datetime(2024, 1, 2), "a"), (3, datetime(2024, 1, 9), "d")],
        "k long, event_timestamp timestamp_ntz, tag string",
    )
    sel = ViewSelection(batch.view, ["x"], ["x"])
    out = engine.training_frame(labels, [sel], {"k": "BIGINT"}, "event_timestamp")
    assert type(out).__name__ == "DataFrame" and out.columns == ["k", "event_timestamp", "tag", "x"]
    got = out.toArrow().to_pydict()
    assert got["tag"] == ["c", "a", "a", "d"] and got["x"] == [None, 10, 10, None]
    with pytest.raises(InvalidData, match="null"):
        engine.check_frame(duckdb.connect(), batch.view, spark.createDataFrame(
            [(None, datetime(2024, 1, 1), 1)], "k long, event_timestamp timestamp_ntz, x long"))


def test_concurrent_writers_each_commit_once_in_order(spark: Any, tmp_path: Path) -> None:
    view = check_batch(duckdb.connect(), fsnb.FeatureView("v", entities=["k"]),
                       pa.table({"k": [0], "event_timestamp": pa.array([0], pa.timestamp("us")), "x": [0]})).view
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        engine = SparkOfflineStore(tmp_path / "wh", spark)
        try:
            for i in range(3):
                data = pa.table({"k": [w], "event_timestamp": pa.array([i], pa.timestamp("us")), "x": [10 * w + i]})
                engine.write(check_batch(duckdb.connect(), view, data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = SparkOfflineStore(tmp_path / "wh", spark).read(view, system=True).to_pylist()
    assert sorted(r["x"] for r in got) == [10, 11, 12, 20, 21, 22]
    assert len({r["_fsnb_seq"] for r in got}) == 6
    for w in (1, 2):  # each writer's rows were ordered as it wrote them
        mine = sorted((r["_fsnb_seq"], r["x"]) for r in got if r["k"] == w)
        assert [x for _, x in mine] == sorted(x for _, x in mine)


# -- crashes -------------------------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import sys, duckdb, pyarrow as pa
    import fsnb
    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.backends.spark_util import local_session
    from fsnb.validation import CheckedBatch, check_batch
    spark = local_session(2)
    engine = SparkOfflineStore(sys.argv[1], spark)
    con = duckdb.connect()
    view = fsnb.FeatureView("v", entities=["k"])
    start = int(sys.argv[2])
    print("ready", flush=True)
    for i in range(start, start + 1000):
        data = pa.table({"k": list(range(200)), "event_timestamp": pa.array([i * 1000] * 200, pa.timestamp("us")),
                         "x": [i * 1000 + j for j in range(200)]})
        if i % 2:  # odd batches take the executors' path (Spark writes, deltalake commits)
            batch = engine.check_frame(con, view, spark.createDataFrame(data))
        else:
            batch = check_batch(con, view, data)
        view = batch.view
        engine.write(batch)
        print("committed", i, flush=True)
    """
)


def _committed_batches(warehouse: Path) -> list[int]:
    from deltalake import DeltaTable

    path = warehouse / "v"
    if not (path / "_delta_log").exists():
        return []
    values = DeltaTable(str(path)).to_pyarrow_table().column("x").to_pylist()
    batches: dict[int, set[int]] = {}
    for v in values:
        batches.setdefault(v // 1000, set()).add(v % 1000)
    assert len(values) == sum(len(s) for s in batches.values())  # no row twice
    for i, rows in batches.items():
        assert rows == set(range(200)), f"batch {i} is partly in the table"
    return sorted(batches)


def test_sigkill_during_spark_writes_leaves_the_old_or_the_new_version(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh"
    rng = random.Random(os.getpid())
    done: list[int] = []
    for _ in range(2):
        # the first write of a child commits (a version to fall back to), then a random moment
        lines = kill_mid_write(["-c", _CHILD, str(warehouse), str(len(done))], pause=rng.uniform(0.0, 6.0))
        acknowledged = [int(line.split()[1]) for line in lines if line.startswith("committed")]
        present = _committed_batches(warehouse)
        # every acknowledged write is there, then at most the one in flight; never a part of one
        assert present == list(range(len(present)))
        assert set(acknowledged) <= set(present) and len(present) <= len(done) + len(acknowledged) + 1
        done = present
