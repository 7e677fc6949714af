"""Bad input: one clear line naming the problem and the fix; the store unchanged."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

import fsnb

GOOD = pl.DataFrame({
    "user_id": [42, 42, 17],
    "event_timestamp": [datetime(2024, 3, 1), datetime(2024, 3, 4), datetime(2024, 2, 1)],
    "login_count": [2, 5, 1],
})
LABELS = pl.DataFrame({"user_id": [42], "event_timestamp": [datetime(2024, 3, 3)]})


@pytest.fixture
def seeded(store):
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), GOOD)
    return store


def snapshot(store) -> tuple:
    versions = [(v.version, v.view.to_dict()) for n in store.registry.names() for v in store.list_versions(n)]
    frames = tuple(store.read(n).rows() for n in store.registry.names())
    return versions, frames


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 400, text
    return text


BAD_INGESTS = [
    (GOOD.drop("user_id"), fsnb.SchemaMismatch, "missing entity column 'user_id'"),
    (GOOD.drop("event_timestamp"), fsnb.SchemaMismatch, "missing timestamp column 'event_timestamp'"),
    (GOOD.with_columns(pl.col("event_timestamp").dt.strftime("%Y-%m-%d")), fsnb.InvalidData, "not a date/time; cast it"),
    (GOOD.with_columns(pl.Series("user_id", [None, 42, None], dtype=pl.Int64)), fsnb.InvalidData, "2 row(s) have a null"),
    (GOOD.with_columns(pl.Series("event_timestamp", [None, datetime(2024, 1, 1), None], dtype=pl.Datetime)), fsnb.InvalidData, "(event_timestamp: 2)"),
    (GOOD.with_columns(pl.col("user_id").cast(pl.String)), fsnb.SchemaMismatch, "is VARCHAR but 'user_stats' stores it as BIGINT; cast it"),
    (GOOD.with_columns(extra=pl.lit(1)), fsnb.SchemaMismatch, "has column(s) extra that the view does not define"),
    (GOOD.drop("login_count"), fsnb.SchemaMismatch, "lacks feature column(s) login_count"),
    (GOOD.clear(), fsnb.InvalidData, "no rows to ingest"),
    (GOOD.with_columns(pl.col("login_count").cast(pl.String)), fsnb.SchemaMismatch, "stores it as BIGINT"),
    ("SELECT nope FROM nowhere", fsnb.QueryError, "DuckDB: Catalog Error"),
    ("/no/such/file.parquet", fsnb.InvalidData, "file not found"),
]


@pytest.mark.parametrize(("data", "error", "message"), BAD_INGESTS)
def test_bad_ingest_is_rejected_whole(seeded, data, error, message) -> None:
    before = snapshot(seeded)
    with pytest.raises(error) as info:
        seeded.ingest("user_stats", data)
    assert message in _one_line(info.value)
    assert snapshot(seeded) == before


@pytest.mark.parametrize(("data", "error", "message"), BAD_INGESTS[:5])
def test_bad_register_leaves_no_version(store, data, error, message) -> None:
    with pytest.raises(error, match=r"."):
        store.register(fsnb.FeatureView("user_stats", entities=["user_id"]), data)
    assert store.registry.names() == []


def test_unknown_view_and_feature_suggest_the_closest_name(seeded) -> None:
    with pytest.raises(fsnb.UnknownFeatureView) as info:
        seeded.get_historical_features(LABELS, ["user_stat:login_count"])
    assert _one_line(info.value) == "no feature view 'user_stat'; did you mean 'user_stats'?"
    with pytest.raises(fsnb.UnknownFeature) as info:
        seeded.get_online_features(["user_stats:logins"], [{"user_id": 1}])
    assert "did you mean 'login_count'?" in _one_line(info.value)
    with pytest.raises(fsnb.UnknownFeatureView, match=r"did you mean 'user_stats'"):
        seeded.ingest("users_stats", GOOD)


def test_labels_missing_key_or_timestamp(seeded) -> None:
    with pytest.raises(fsnb.SchemaMismatch, match=r"labels lack the entity column 'user_id'"):
        seeded.get_historical_features(LABELS.rename({"user_id": "uid"}), ["user_stats:login_count"])
    with pytest.raises(fsnb.SchemaMismatch, match=r"no timestamp column 'event_timestamp'.*timestamp_field"):
        seeded.get_historical_features(LABELS.rename({"event_timestamp": "ts"}), ["user_stats:login_count"])
    got = seeded.get_historical_features(LABELS.rename({"event_timestamp": "ts"}), ["user_stats:*"], timestamp_field="ts")
    assert got["login_count"].to_list() == [2]
    with pytest.raises(fsnb.SchemaMismatch, match=r"cast the label column to BIGINT"):
        seeded.get_historical_features(LABELS.with_columns(pl.col("user_id").cast(pl.String)), ["user_stats:*"])
    with pytest.raises(fsnb.InvalidData, match=r"not a date/time"):
        seeded.get_historical_features(LABELS.with_columns(pl.lit("x").alias("event_timestamp")), ["user_stats:*"])


def test_feature_name_collisions(seeded) -> None:
    seeded.register(fsnb.FeatureView("other", entities=["user_id"]), GOOD)
    with pytest.raises(fsnb.InvalidDefinition, match=r"comes from both 'user_stats' and 'other'.*full_feature_names"):
        seeded.get_historical_features(LABELS, ["user_stats:login_count", "other:login_count"])
    got = seeded.get_historical_features(LABELS, ["user_stats:login_count", "other:*"], full_feature_names=True)
    assert got.columns == ["user_id", "event_timestamp", "user_stats__login_count", "other__login_count"]


def test_bad_definitions() -> None:
    with pytest.raises(fsnb.InvalidDefinition, match=r"cannot read ttl"):
        fsnb.FeatureView("v", entities=["k"], ttl="3 fortnights")
    with pytest.raises(fsnb.InvalidDefinition, match=r"not valid"):
        fsnb.FeatureView("bad name", entities=["k"])
    with pytest.raises(fsnb.InvalidDefinition, match=r"'view:feature'"):
        from fsnb.definitions import parse_feature_refs

        parse_feature_refs(["login_count"])


def test_incompatible_redefinition_is_refused(seeded) -> None:
    before = snapshot(seeded)
    with pytest.raises(fsnb.SchemaMismatch, match=r"cannot be re-keyed.*delete_feature_view"):
        seeded.register(fsnb.FeatureView("user_stats", entities=["account_id"]))
    assert snapshot(seeded) == before


# -- one line at the boundary (issue 11: "One clear line, never a traceback") ---------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamp_field": "user_id"}, "'user_id' is an entity column of 'v'"),
        ({"created_timestamp_field": "event_timestamp"}, "is the timestamp_field of 'v'"),
        ({"created_timestamp_field": "user_id"}, "is an entity column of 'v'"),
        ({"ttl": "99999999999d"}, "is too long"),
        ({"ttl": 1e300}, "is too long"),
        ({"ttl": float("nan")}, "not a finite duration"),
        ({"ttl": float("inf")}, "not a finite duration"),
        ({"ttl": [30]}, "ttl must be a timedelta"),
        ({"entities": None, "name": "v"}, "must be a name or a list of names"),
        ({"timestamp_field": None}, "timestamp column name None"),
        ({"features": {"a": None}}, "a type is not a str"),
        ({"online": "no"}, "online must be True or False"),
        ({"tags": "team"}, "tags of 'v' must be a dict"),
    ],
)
def test_definition_mistakes_are_one_line(kwargs, message) -> None:
    with pytest.raises(fsnb.InvalidDefinition) as info:
        fsnb.FeatureView(**{"name": "v", "entities": ["user_id"], **kwargs})
    assert message in _one_line(info.value)


def test_timestamp_equal_to_a_key_never_reaches_duckdb(store) -> None:
    # On main the view was accepted and ingest died with a DuckDB Binder error.
    with pytest.raises(fsnb.InvalidDefinition, match="entity column"):
        store.register(fsnb.FeatureView("v", entities=["user_id"], timestamp_field="user_id"), GOOD)
    assert store.registry.names() == []


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([1, 2], "entity row 0 is a int, not a dict"),
        (None, "entity_rows cannot be a NoneType"),
        ("user_id", "entity_rows cannot be a str"),
        ([{"user_id": [1, 2]}], "gives 'user_id' a list"),
        ({"user_id": [42, 17], "region": [1]}, "differ in length"),
        ({"user_id": [42, 17], "region": 1}, "mixes columns ('user_id') and single values ('region')"),
    ],
)
def test_entity_rows_of_the_wrong_shape(seeded, rows, message) -> None:
    seeded.materialize(end=datetime(2024, 4, 1))
    with pytest.raises(fsnb.InvalidData) as info:
        seeded.get_online_features(["user_stats:login_count"], rows)
    assert message in _one_line(info.value)


def test_entity_rows_as_columns(seeded) -> None:
    import numpy as np

    seeded.materialize(end=datetime(2024, 4, 1))
    want = {"user_id": [42, 17, 5], "login_count": [5, 1, None]}
    assert seeded.get_online_features(["user_stats:login_count"], {"user_id": [42, 17, 5]}) == want
    assert seeded.get_online_features(["user_stats:login_count"], {"user_id": np.array([42, 17, 5])}) == want
    assert seeded.get_online_features(["user_stats:login_count"], {"user_id": pl.Series([42, 17, 5])}) == want
    assert seeded.get_online_features(["user_stats:login_count"], {"user_id": 42}) == {"user_id": [42], "login_count": [5]}


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_historical_features(LABELS, 5),
        lambda s: s.get_historical_features(LABELS, ["user_stats:login_count"], full_feature_names="yes"),
        lambda s: s.get_online_features(None, [{"user_id": 1}]),
        lambda s: s.materialize(views="user_stats"),
        lambda s: s.materialize(views=[5]),
        lambda s: s.read(5),
        lambda s: s.ingest(None, GOOD),
        lambda s: s.get_feature_view("user_stats", version="1"),
        lambda s: s.record_training_set("t", GOOD, ["user_stats:nope"]),
        lambda s: s.record_training_set("t", "not a frame", ["user_stats:login_count"]),
        lambda s: fsnb.FeatureStore(5),
    ],
)
def test_wrong_argument_types_are_fsnb_errors(seeded, call) -> None:
    before = snapshot(seeded)
    with pytest.raises(fsnb.FsnbError) as info:
        call(seeded)
    _one_line(info.value)
    assert snapshot(seeded) == before
    assert seeded.list_training_sets() == []


def test_a_message_quoting_user_text_stays_one_line(seeded) -> None:
    frame = GOOD.with_columns(pl.lit(1).alias("new\ncol"))
    with pytest.raises(fsnb.SchemaMismatch) as info:
        seeded.ingest("user_stats", frame)
    # The name is quoted escaped (repr), so the message stays one line.
    assert "'new\\ncol'" in _one_line(info.value)


def test_a_directory_is_not_data(seeded, tmp_path) -> None:
    with pytest.raises(fsnb.InvalidData, match="is a directory"):
        seeded.ingest("user_stats", tmp_path)


def test_new_data_must_fit_the_stored_types(seeded) -> None:
    # On main: a new version was registered, then DuckDB's ConversionException escaped.
    before = snapshot(seeded)
    with pytest.raises(fsnb.SchemaMismatch, match="stores it as BIGINT"):
        seeded.register(fsnb.FeatureView("user_stats", entities=["user_id"]), GOOD.with_columns(login_count=pl.lit("x")))
    assert snapshot(seeded) == before


def test_a_refused_redis_url_writes_no_store_id(tmp_path) -> None:
    with pytest.raises(fsnb.FsnbError):
        fsnb.FeatureStore(tmp_path / "s", online="redis://127.0.0.1:1/0")
    registry = fsnb.FeatureStore(tmp_path / "s").registry
    assert registry.get("store_id") is None


# -- the magics' error plumbing ------------------------------------------------------------------
@pytest.fixture
def shell(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    monkeypatch.setenv("FSNB_STORE", str(tmp_path / "store"))
    ip.run_line_magic("load_ext", "fsnb")
    ip.user_ns["labels"] = LABELS
    yield ip
    ip.run_line_magic("unload_ext", "fsnb")
    ip.user_ns.pop("labels", None)


def _engine_errors() -> list:
    import sqlite3

    import duckdb
    import pyarrow as pa

    return [
        (duckdb.ConversionException("Conversion Error: bad\nLINE 1: SELECT\n    ^"), "DuckDB: Conversion Error: bad LINE 1: SELECT ^"),
        (duckdb.BinderException("Binder Error: x"), "DuckDB: Binder Error: x"),
        (sqlite3.OperationalError("database is locked"), "SQLite: database is locked"),
        (pa.ArrowInvalid("cannot mix\nlist and int"), "Arrow: cannot mix list and int"),
        (pl.exceptions.ComputeError("bad\ncast"), "polars: bad cast"),
        (OSError(28, "No space left on device"), "[Errno 28] No space left on device"),
        (fsnb.InvalidData("two\nlines"), "two lines"),
    ]


@pytest.mark.parametrize("index", range(7))
def test_magics_turn_engine_errors_into_one_line(shell, monkeypatch, index) -> None:
    from IPython.core.error import UsageError

    error, message = _engine_errors()[index]

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(fsnb.FeatureStore, "build_training_set", fail)  # what %training_set calls
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("training_set", "labels user_stats:login_count")
    assert str(info.value) == message


def test_a_bug_in_fsnb_keeps_its_traceback(shell, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(fsnb.FeatureStore, "build_training_set", fail)  # what %training_set calls
    with pytest.raises(KeyError):
        shell.run_line_magic("training_set", "labels user_stats:login_count")


def test_magic_definition_is_checked_before_the_query_runs(shell) -> None:
    from IPython.core.error import UsageError

    shell.user_ns["events"] = GOOD
    try:
        for flags, message in [
            ("--timestamp user_id", "is an entity column"),
            ("--created event_timestamp", "is the timestamp_field"),
            ("--ttl 99999999999d", "is too long"),
            ("--ttl nan", "cannot read ttl"),
        ]:
            with pytest.raises(UsageError, match=message):
                shell.run_cell_magic("feature_view", f"v --entity user_id {flags}", "SELECT nope FROM nowhere")
        shell.run_cell_magic("feature_view", "v --entity user_id", "SELECT * FROM events")
        with pytest.raises(UsageError, match="gives 'user_id' twice"):
            shell.run_line_magic("online_features", "v:login_count --entity user_id=1,user_id=2")
    finally:
        shell.user_ns.pop("events", None)
