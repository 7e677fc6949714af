"""A FeatureStore on the Spark engine (offline="spark"): configuration, both engines on
the same random data through the public API, Spark DataFrames in and out, materialize,
skew and leakage from a Spark store, and a SIGKILL mid-ingest.

One SparkSession serves the whole test run (tests/conftest.py); examples are few.
"""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import fsnb
from fsnb.config import load_config
from fsnb.errors import StoreError
from fsnb.testing import kill_mid_write

BASE = datetime(2024, 1, 1)


# -- configuration (no Spark job runs: the engine starts a session on first use) ----------------
def test_offline_engine_is_configured_like_the_other_backends(tmp_path: Path) -> None:
    assert load_config(tmp_path).offline == "duckdb"  # the default, unchanged
    (tmp_path / "fsnb.toml").write_text('[offline]\nengine = "spark"\nwarehouse = "wh"\n')
    config = load_config(tmp_path)
    assert (config.offline, config.warehouse) == ("spark", str(tmp_path / "wh"))  # relative: the store's
    assert load_config(tmp_path, offline="duckdb").warehouse is None
    bad = {
        '[offline]\nengine = "sparkk"\n': "engine 'sparkk' is unknown",
        '[offline]\nengine = "spark"\n': "needs a warehouse",
        '[offline]\nengine = "spark"\nwarehous = "x"\n': "unknown key 'warehous'",
        '[offline]\nengine = 3\n': "must be a string",
        'offline = "spark"\n': "must be a table",
        '[offline]\nengine = "spark"\nwarehouse = "s3://key:secret@bucket/x"\n': "credentials",
        '[offline]\nengine = "spark"\nwarehouse = "s3://bucket/x?y=1"\n': "'#' or '?'",
    }
    for text, message in bad.items():
        (tmp_path / "fsnb.toml").write_text(text)
        with pytest.raises(StoreError, match=message) as info:
            load_config(tmp_path)
        assert "secret" not in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "fsnb.toml").unlink()
    with pytest.raises(StoreError, match="is for the Spark engine"):
        fsnb.FeatureStore(tmp_path / "s", warehouse=str(tmp_path / "wh"))
    with pytest.raises(StoreError, match="needs a warehouse"):
        fsnb.FeatureStore(tmp_path / "s", offline="spark")


def test_a_spark_store_remembers_its_engine_in_fsnb_toml(tmp_path: Path) -> None:
    from fsnb.config import write_config

    store = fsnb.FeatureStore(tmp_path / "s", offline="spark", warehouse=tmp_path / "wh")
    write_config(store.path, store.config)
    store.close()
    again = fsnb.FeatureStore(tmp_path / "s")  # as the pipeline of fsnb export opens it
    assert again.parts.spark is not None and again.config.warehouse == str(tmp_path / "wh")
    again.close()


# -- both engines through FeatureStore --------------------------------------------------------
def _stores(tmp: Path, spark: Any) -> tuple[fsnb.FeatureStore, fsnb.FeatureStore]:
    return fsnb.FeatureStore(tmp / "duck"), fsnb.FeatureStore(tmp / "spark", offline="spark", warehouse=tmp / "wh", spark=spark)


_row = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 6), st.integers(-2, 3), st.integers(-5, 5))


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    batches=st.lists(st.lists(_row, min_size=1, max_size=8), min_size=1, max_size=2),
    labels=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(-1, 8), st.integers(-1, 1)), min_size=1, max_size=10),
    ttl=st.sampled_from([None, "2d"]),
)
def test_both_engines_give_identical_training_sets(spark: Any, tmp_path_factory: pytest.TempPathFactory, batches: Any,
                                                   labels: Any, ttl: str | None) -> None:
    """Composite keys, ties in event time settled by created time then ingestion order, exact
    duplicates, labels before any feature, TTL edges, as_of_ingestion, naive and aware times."""
    duck, sparky = _stores(tmp_path_factory.mktemp("twin"), spark)
    view = fsnb.FeatureView("v", entities=["a", "b"], created_timestamp_field="created", ttl=ttl)
    for store in (duck, sparky):
        store.register(view)
    for batch in batches:
        frame = pl.DataFrame(
            {
                "a": [r[0] for r in batch],
                "b": [r[1] for r in batch],
                "event_timestamp": [BASE + timedelta(days=r[2]) for r in batch],
                "created": [BASE + timedelta(days=r[2] + r[3]) for r in batch],
                "x": [r[4] for r in batch],
            }
        )
        assert duck.ingest("v", frame) == sparky.ingest("v", frame)
    frame = pl.DataFrame(
        {
            "a": [r[0] for r in labels],
            "b": [r[1] for r in labels],
            "event_timestamp": [BASE + timedelta(days=r[2], microseconds=r[3]) for r in labels],
        }
    )
    aware = frame.with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Kolkata"))
    for as_of in (False, True):
        for lab in (frame, aware):
            want = duck.get_historical_features(lab, ["v:x"], as_of_ingestion=as_of)
            got = sparky.get_historical_features(lab, ["v:x"], as_of_ingestion=as_of)
            assert want.height == lab.height
            assert_frame_equal(got, want)
    duck.close()
    sparky.close()


# -- Spark frames, materialize, skew, leakage -------------------------------------------------------
def test_spark_frames_in_and_out_and_the_seed_example(spark: Any, tmp_path: Path) -> None:
    store = fsnb.FeatureStore(tmp_path / "s", offline="spark", warehouse=tmp_path / "wh", spark=spark)
    rows = spark.createDataFrame(
        [(42, datetime(2024, 1, 1), 2), (42, datetime(2024, 3, 1), 9), (7, datetime(2024, 1, 5), 1)],
        "user_id long, event_timestamp timestamp_ntz, login_count long",
    )
    reg = store.register(fsnb.FeatureView("logins", entities=["user_id"]), rows)
    assert reg.rows_written == 3 and store.stats("logins")["rows"] == 3
    assert store.ingest("logins", rows) == 0  # exact duplicates of stored rows
    assert store.offline.read(store.get_feature_view("logins")).num_rows == 0  # no row in DuckDB: all in Delta
    labels = spark.createDataFrame(
        [(42, datetime(2024, 2, 1), 1), (7, datetime(2024, 2, 1), 0), (99, datetime(2024, 2, 1), 0)],
        "user_id long, event_timestamp timestamp_ntz, y long",
    )
    out = store.get_historical_features(labels, ["logins:login_count"])
    assert type(out).__name__ == "DataFrame" and out.columns == ["user_id", "event_timestamp", "y", "login_count"]
    assert out.toArrow().to_pydict()["login_count"] == [2, 1, None]  # point in time: 2, not 9
    polars_labels = pl.DataFrame({"user_id": [42], "event_timestamp": [datetime(2024, 2, 1)]})
    assert store.get_historical_features(polars_labels, ["logins:login_count"])["login_count"].to_list() == [2]
    assert store.read("logins")["login_count"].to_list() == [2, 1, 9]
    assert store.materialize(end=datetime(2025, 1, 1)) == {"logins": 2}
    online = store.get_online_features(["logins:login_count"], [{"user_id": 42}, {"user_id": 7}])
    assert online["login_count"] == [9, 1]
    assert store.check_skew("logins").mismatches == 0
    report = store.explain_leakage(polars_labels, ["logins:login_count"])
    assert report.summary["leaky_rows"].to_list() == [1]  # the naive join would hand user 42 the 9
    assert report.rows["login_count"].to_list() == [2]
    history = report.history(0, "login_count")  # the explorer's chart: this entity's rows, filtered in Spark
    assert history["value"].to_list() == [2, 9] and history["event_time"].dt.year().to_list() == [2024, 2024]
    store.delete_feature_view("logins")
    assert not (tmp_path / "wh" / "logins").exists()
    store.close()


# -- SIGKILL mid-ingest --------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta
    import polars as pl
    import fsnb
    store = fsnb.FeatureStore(sys.argv[1], offline="spark", warehouse=sys.argv[2])
    store.register(fsnb.FeatureView("v", entities=["k"]))
    for i in range(1000):
        frame = pl.DataFrame({"k": list(range(100)), "event_timestamp": [datetime(2024, 1, 1) + timedelta(days=i)] * 100,
                              "x": [1000 * i + j for j in range(100)]})
        store.ingest("v", frame)
        print("committed", i, flush=True)
    """
)


def test_sigkill_during_a_spark_store_ingest_leaves_the_old_or_the_new_version(spark: Any, tmp_path: Path) -> None:
    store_dir, warehouse = tmp_path / "s", tmp_path / "wh"
    lines = kill_mid_write(["-c", _CHILD, str(store_dir), str(warehouse)], pause=1.5, deadline=500)  # into the next write
    acknowledged = {int(ln.split()[1]) for ln in lines if ln.startswith("committed")}
    store = fsnb.FeatureStore(store_dir, offline="spark", warehouse=warehouse, spark=spark)
    values = store.read("v")["x"].to_list()
    batches: dict[int, set[int]] = {}
    for v in values:
        batches.setdefault(v // 1000, set()).add(v % 1000)
    assert len(values) == sum(len(s) for s in batches.values())  # no row twice
    assert all(s == set(range(100)) for s in batches.values())  # never part of a batch
    assert acknowledged <= set(batches) <= acknowledged | {max(acknowledged) + 1}
    assert store.ingest("v", pl.DataFrame({"k": [0], "event_timestamp": [datetime(2030, 1, 1)], "x": [7]})) == 1
    store.close()


def test_offline_flags_go_with_open_only() -> None:
    from IPython.core.error import UsageError

    from fsnb.notebook import grammar

    args = grammar.parse("fsnb", "open /tmp/x --offline spark --warehouse s3a://b/f")
    assert (args.offline, args.warehouse) == ("spark", "s3a://b/f")
    with pytest.raises(UsageError, match="go with open"):
        grammar.parse("fsnb", "list --offline spark")


def test_a_duckdb_store_takes_spark_frames_too(spark: Any, tmp_path: Path) -> None:
    store = fsnb.FeatureStore(tmp_path / "d")
    rows = spark.createDataFrame(
        [(42, datetime(2024, 1, 1), 2), (42, datetime(2024, 3, 1), 9)],
        "user_id long, event_timestamp timestamp_ntz, login_count long",
    )
    assert store.register(fsnb.FeatureView("logins", entities=["user_id"]), rows).rows_written == 2
    labels = spark.createDataFrame([(42, datetime(2024, 2, 1))], "user_id long, event_timestamp timestamp_ntz")
    out = store.get_historical_features(labels, ["logins:login_count"])
    assert type(out).__name__ == "DataFrame" and out.toArrow().to_pydict()["login_count"] == [2]
    store.close()


# -- the commit protocol, streaming and the engine a store was made with ---------------------------
def test_a_new_version_and_its_delta_rows_commit_together(spark: Any, tmp_path: Path) -> None:
    """A writer that died after its Delta commit, before the registry published the
    version: the next open publishes it (the Delta log holds the write's token). One that
    died before the commit: the pending version is dropped and nothing shows."""
    import fsnb.commit
    from fsnb.validation import check_batch

    store = fsnb.FeatureStore(tmp_path / "s", offline="spark", warehouse=tmp_path / "wh", spark=spark)
    rows = pl.DataFrame({"k": [1, 2], "event_timestamp": [BASE, BASE], "x": [1, 2]})
    store.register(fsnb.FeatureView("v", entities=["k"]), rows)
    assert store.version_of("v") == 1
    wider = fsnb.FeatureView("v", entities=["k"], features={"x": "BIGINT", "y": "DOUBLE"})
    more = rows.with_columns(pl.col("k") + 10, pl.lit(0.5).alias("y")).to_arrow()
    parts = store.parts
    journal = parts.offline.journal
    assert journal is not None
    with parts.offline.connect() as con:  # the write as register() does it, stopped after the commit point
        batch = check_batch(con, wider, more)
        journal.begin(con, "t-committed", batch.view, 2, True)
        assert parts.engine.write(batch, token="t-committed") == 2
        fsnb.commit._LIVE.discard("t-committed")  # as if this process had died here
    assert store.version_of("v") == 1 and parts.registry.pending_writes()
    store.close()
    again = fsnb.FeatureStore(tmp_path / "s", offline="spark", warehouse=tmp_path / "wh", spark=spark)
    assert again.version_of("v") == 2 and not again.parts.registry.pending_writes()
    assert again.stats("v")["rows"] == 4
    assert sorted(again.read("v")["y"].to_list(), key=lambda v: (v is not None, v)) == [None, None, 0.5, 0.5]
    with again.parts.offline.connect() as con:  # died before the commit: dropped
        batch = check_batch(con, fsnb.FeatureView("v", entities=["k"], features={"x": "BIGINT", "y": "DOUBLE", "z": "BIGINT"}),
                            more.append_column("z", more.column("x")))
        journal = again.parts.offline.journal
        assert journal is not None
        journal.begin(con, "t-lost", batch.view, 3, True)
        fsnb.commit._LIVE.discard("t-lost")
    again.close()
    third = fsnb.FeatureStore(tmp_path / "s", offline="spark", warehouse=tmp_path / "wh", spark=spark)
    assert third.version_of("v") == 2 and not third.parts.registry.pending_writes()
    third.close()


def test_push_and_sync_on_a_spark_store(spark: Any, tmp_path: Path) -> None:
    store = fsnb.FeatureStore(tmp_path / "s", offline="spark", warehouse=tmp_path / "wh", spark=spark)
    store.register(fsnb.FeatureView("clicks", entities=["user_id"], sync="stream", features={"n": "BIGINT"}))
    now = datetime.now() - timedelta(minutes=1)
    assert store.push("clicks", pl.DataFrame({"user_id": [1, 2], "event_timestamp": [now, now], "n": [5, 6]})) == 1  # its log offset
    assert store.get_online_features(["clicks:n"], [{"user_id": 1}])["n"] == [5]  # online at once
    later = spark.createDataFrame(pl.DataFrame({"user_id": [2], "event_timestamp": [now + timedelta(seconds=1)], "n": [7]}).to_arrow())
    assert store.push("clicks", later) == 2  # a Spark DataFrame too (a push is small: collected)
    assert store.get_online_features(["clicks:n"], [{"user_id": 2}])["n"] == [7]
    store.sync()
    assert sorted(store.read("clicks")["n"].to_list()) == [5, 6, 7]  # in the Delta table
    assert store.stats("clicks")["rows"] == 3
    store.sync()  # nothing new: nothing written twice
    assert store.parts.engine.row_count("clicks") == 3
    assert store.parts.engine.entry_runs(None, "clicks", store.parts.log.log_id, 0)  # the runs the replay check reads
    assert store.check_skew("clicks").mismatches == 0
    fresh = store.freshness()
    assert fresh.filter(pl.col("view") == "clicks")["offline_latest"].item() is not None
    store.close()


def test_a_store_opens_on_the_engine_that_holds_its_history(tmp_path: Path) -> None:
    duck = fsnb.FeatureStore(tmp_path / "d")
    duck.register(fsnb.FeatureView("v", entities=["k"]), pl.DataFrame({"k": [1], "event_timestamp": [BASE], "x": [1]}))
    duck.close()
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file()}
    with pytest.raises(StoreError, match=r"offline.duckdb \(the DuckDB engine\); open it with offline='duckdb'") as info:
        fsnb.FeatureStore(tmp_path / "d", offline="spark", warehouse=tmp_path / "wh")
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file()} == before
    assert not (tmp_path / "d" / "fsnb.toml").exists()
    empty = fsnb.FeatureStore(tmp_path / "e", offline="spark", warehouse=tmp_path / "wh")  # no views: takes the engine
    empty.close()
    assert fsnb.FeatureStore(tmp_path / "e").parts.spark is None  # still no views: the default again


def test_window_aggregations_on_a_spark_store_match_the_duckdb_store(spark: Any, tmp_path: Path) -> None:
    """The same aggregation view on both engines: training set, online values after
    materialize, skew and the naive side of the leakage analysis."""
    duck, sparky = _stores(tmp_path, spark)
    now = datetime.now().replace(microsecond=0)
    events = pl.DataFrame({
        "user_id": [1, 1, 1, 2, 2],
        "event_timestamp": [now - timedelta(days=d) for d in (9, 3, 1, 2, 0.5)],
        "amount": [10.0, 20.0, None, 5.0, 7.0],
    })
    view = fsnb.FeatureView("txn", entities=["user_id"], aggregations=[
        fsnb.Aggregation("amount", "sum", "7d"), fsnb.Aggregation(None, "count", "2d", name="n_2d"),
        fsnb.Aggregation("amount", "stddev", "30d")])
    labels = pl.DataFrame({"user_id": [1, 2, 1, 3], "event_timestamp": [now - timedelta(days=d) for d in (2, 1, 0, 0)]})
    features = ["txn:amount_sum_7d", "txn:n_2d", "txn:amount_stddev_30d"]
    for store in (duck, sparky):
        store.register(view, events)
    want = duck.get_historical_features(labels, features)
    got = sparky.get_historical_features(labels, features)
    assert_frame_equal(got, want)
    assert got["amount_sum_7d"].to_list() == [20.0, 5.0, 20.0, None]
    spark_labels = spark.createDataFrame(labels.to_arrow())  # Spark in, Spark out: the same rows
    from_spark = sparky.get_historical_features(spark_labels, features).toArrow()
    assert from_spark.column_names == want.columns
    for name in features:
        column = name.split(":")[1]
        assert from_spark.column(column).to_pylist() == want[column].to_list(), column
    assert duck.materialize() == sparky.materialize()
    rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
    assert sparky.get_online_features(features, rows) == duck.get_online_features(features, rows)
    assert sparky.check_skew("txn").mismatches == 0
    want_report, got_report = duck.explain_leakage(labels, features[:1]), sparky.explain_leakage(labels, features[:1])
    assert_frame_equal(got_report.summary, want_report.summary)
    duck.close()
    sparky.close()
