"""The bad-input catalogue: every refused input is one line, and no store file changes.

One populated store serves the whole module (views with and without data, a stream
view with a log, materialized online tables, a recorded training set). Every case
snapshots every row of every table of registry.sqlite, online.sqlite, log.sqlite and
offline.duckdb (opened read-only), runs one bad input through the Python API or a
magic in a real InteractiveShell, and asserts an FsnbError (API) or UsageError
(magic) whose message is one line, with every row of every file as it was.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import fsnb
from fsnb.errors import FsnbError

STORE_FILES = ("registry.sqlite", "online.sqlite", "log.sqlite")


def _sqlite_rows(path: Path) -> dict[str, list[str]]:
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    con = sqlite3.connect(uri, uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t}"')) for t in tables}
    finally:
        con.close()


def _duckdb_rows(path: Path) -> dict[str, list[str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
        return {t: sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}
    finally:
        con.close()


_DUCK_ROWS: dict[str, dict[str, list[str]]] = {}


def _duckdb_rows_cached(path: Path) -> dict[str, list[str]]:
    """The rows of a DuckDB file, read once per distinct file content (opening one costs ~70 ms)."""
    digest = hashlib.sha256()
    for part in (path, path.with_name(path.name + ".wal")):
        if part.exists():
            digest.update(part.read_bytes())
    key = digest.hexdigest()
    if key not in _DUCK_ROWS:
        _DUCK_ROWS[key] = _duckdb_rows(path)
    return _DUCK_ROWS[key]


def snapshot(path: Path) -> dict[str, Any]:
    """Every row of every table of every store file (None for a file that is absent)."""
    out: dict[str, Any] = {}
    for name in STORE_FILES:
        out[name] = _sqlite_rows(path / name) if (path / name).exists() else None
    duck = path / "offline.duckdb"
    out["offline.duckdb"] = _duckdb_rows_cached(duck) if duck.exists() else None
    out["files"] = sorted(p.name for p in path.iterdir())
    return out


T0 = datetime(2024, 3, 1)
EVENTS = pl.DataFrame(
    {
        "user_id": [42, 42, 17],
        "event_timestamp": [T0, T0 + timedelta(days=3), T0 - timedelta(days=20)],
        "login_count": [2, 5, 1],
        "avg_purchase": [10.0, 12.5, 5.0],
    }
)
CLICKS = pl.DataFrame({"user_id": [42, 17], "event_timestamp": [T0, T0], "clicks": [3, 4]})
LABELS = pl.DataFrame({"user_id": [42, 17], "event_timestamp": [T0 + timedelta(days=2)] * 2, "label": [1, 0]})
UF = ["user_stats:login_count"]


class Populated:
    """The module's store, with a pristine copy to put back after a case that wrote
    (a failing or xfail case must not change what later cases see)."""

    def __init__(self, store: fsnb.FeatureStore, pristine: Path) -> None:
        self.store = store
        self.path = store.path
        self.pristine = pristine

    def restore(self, shell: InteractiveShell | None = None) -> None:
        if shell is not None:
            shell.magics_manager.registry["FsnbMagics"].close()
        self.store.close()
        shutil.rmtree(self.path)
        shutil.copytree(self.pristine, self.path)
        self.store = fsnb.FeatureStore(self.path)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    path = tmp_path_factory.mktemp("bad") / "store"
    store = fsnb.FeatureStore(path)
    store.register(fsnb.FeatureView("user_stats", entities=["user_id"], ttl="400d"), EVENTS)
    store.register(fsnb.FeatureView("clicks", entities="user_id", sync="stream"))
    store.push("clicks", CLICKS)
    store.register(fsnb.FeatureView("archive", entities=["user_id"], online=False), EVENTS)
    store.register(fsnb.FeatureView("empty_view", entities=["user_id"]))
    store.materialize(end=T0 + timedelta(days=30))
    frame = store.get_historical_features(LABELS, UF)
    store.record_training_set("train", frame, UF)
    assert store.store_id
    store.close()
    pristine = path.parent / "pristine"
    shutil.copytree(path, pristine)
    held = Populated(fsnb.FeatureStore(path), pristine)
    yield held
    held.store.close()


def xfail(branch: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason=f"fixed on branch {branch}", strict=False)


def case(name: str, fn: Callable[[fsnb.FeatureStore], Any], *marks: pytest.MarkDecorator) -> Any:
    return pytest.param(fn, id=name, marks=marks)


def view(**kw: Any) -> fsnb.FeatureView:
    kw.setdefault("name", "fresh")
    kw.setdefault("entities", ["user_id"])
    return fsnb.FeatureView(**kw)


def _dup_arrow() -> pa.Table:
    t = EVENTS.to_arrow()
    return pa.Table.from_arrays([*t.columns, t.column("login_count")], names=[*t.column_names, "login_count"])


def _dup_pandas() -> pd.DataFrame:
    frame = EVENTS.to_pandas()
    return pd.concat([frame, frame[["login_count"]]], axis=1)


def _wide() -> pl.DataFrame:
    return EVENTS.select("user_id", "event_timestamp").with_columns([pl.lit(1).alias(f"f{i}") for i in range(2000)])


# -- FeatureView(...) ---------------------------------------------------------------------------
DEFINITIONS = [
    case("name-space", lambda s: view(name="bad name")),
    case("name-empty", lambda s: view(name="")),
    case("name-int", lambda s: view(name=123)),
    case("name-none", lambda s: view(name=None)),
    case("name-digit", lambda s: view(name="1abc")),
    case("name-dash", lambda s: view(name="a-b")),
    case("name-newline", lambda s: view(name="a\nb")),
    case("name-unicode", lambda s: view(name="ｅｘｅｃ")),
    case("entities-empty", lambda s: view(entities=[])),
    case("entities-empty-str", lambda s: view(entities="")),
    case("entities-blank", lambda s: view(entities=[""])),
    case("entities-space", lambda s: view(entities=["user id"])),
    case("entities-int", lambda s: view(entities=[1])),
    case("entities-twice", lambda s: view(entities=["k", "k"])),
    case("entities-none", lambda s: view(entities=None)),
    case("entities-number", lambda s: view(entities=5)),
    case("entities-nested", lambda s: view(entities=[["k"]])),
    case("timestamp-empty", lambda s: view(timestamp_field="")),
    case("timestamp-none", lambda s: view(timestamp_field=None)),
    case("timestamp-int", lambda s: view(timestamp_field=5)),
    case("timestamp-space", lambda s: view(timestamp_field="event time")),
    case("timestamp-is-entity", lambda s: view(timestamp_field="user_id")),
    case("created-is-timestamp", lambda s: view(created_timestamp_field="event_timestamp")),
    case("created-is-entity", lambda s: view(created_timestamp_field="user_id")),
    case("created-empty", lambda s: view(created_timestamp_field="")),
    case("created-int", lambda s: view(created_timestamp_field=5)),
    case("created-space", lambda s: view(created_timestamp_field="made at")),
    case("ttl-overflow", lambda s: view(ttl="99999999999d")),
    case("ttl-overflow-weeks", lambda s: view(ttl="9999999999w")),
    case("ttl-nan", lambda s: view(ttl=float("nan"))),
    case("ttl-inf", lambda s: view(ttl=float("inf"))),
    case("ttl-minus-inf", lambda s: view(ttl=-math.inf)),
    case("ttl-huge-float", lambda s: view(ttl=1e300)),
    case("ttl-negative-number", lambda s: view(ttl=-5)),
    case("ttl-negative-str", lambda s: view(ttl="-1d")),
    case("ttl-negative-delta", lambda s: view(ttl=timedelta(days=-1))),
    case("ttl-words", lambda s: view(ttl="3 fortnights")),
    case("ttl-bool", lambda s: view(ttl=True)),
    case("ttl-list", lambda s: view(ttl=[1])),
    case("ttl-nan-str", lambda s: view(ttl="nand")),
    case("ttl-np-nan", lambda s: view(ttl=np.float64("nan"))),
    case("features-int", lambda s: view(features=5)),
    case("features-int-item", lambda s: view(features=[1])),
    case("features-space", lambda s: view(features=["login count"])),
    case("features-blank", lambda s: view(features=[""])),
    case("features-empty-str", lambda s: view(features="")),
    case("features-is-key", lambda s: view(features=["user_id"])),
    case("features-is-timestamp", lambda s: view(features=["event_timestamp"])),
    case("features-twice", lambda s: view(features=["a", "a"])),
    case("features-type-int", lambda s: view(features={"a": 5})),
    case("features-type-none", lambda s: view(features={"a": None})),
    case("features-type-sql", lambda s: view(features={"a": "BIGINT); DROP TABLE x; --"})),
    case("features-reserved", lambda s: view(features=["_fsnb_ts"])),
    case("online-str", lambda s: view(online="yes")),
    case("online-none", lambda s: view(online=None)),
    case("sync-push", lambda s: view(sync="push")),
    case("sync-none", lambda s: view(sync=None)),
    case("description-int", lambda s: view(description=5)),
    case("tags-str", lambda s: view(tags="team")),
    case("tags-int-value", lambda s: view(tags={"team": 1})),
    case("tags-int-key", lambda s: view(tags={1: "a"})),
    case("query-int", lambda s: view(query=5)),
    case("entity-types-not-mapping", lambda s: view(entity_types=["BIGINT"])),
    case("entity-types-sql", lambda s: view(entity_types={"user_id": "BIGINT); SELECT 1; --"})),
]

# -- register / ingest / push -----------------------------------------------------------------------
WRITES = [
    case("register-str", lambda s: s.register("user_stats")),
    case("register-none", lambda s: s.register(None)),
    case("register-dict", lambda s: s.register({"name": "x"})),
    case("register-data-int", lambda s: s.register(view(), data=5)),
    case("register-data-list", lambda s: s.register(view(), data=[1, 2])),
    case("register-data-sql-error", lambda s: s.register(view(), data="SELECT nope FROM nowhere")),
    case("register-data-no-file", lambda s: s.register(view(), data="/no/such/file.parquet")),
    case("register-data-empty", lambda s: s.register(view(), data=EVENTS.clear())),
    case("register-data-ts-string", lambda s: s.register(view(), data=EVENTS.with_columns(pl.col("event_timestamp").cast(pl.String)))),
    case("register-data-null-key", lambda s: s.register(view(), data=EVENTS.with_columns(pl.lit(None, pl.Int64).alias("user_id")))),
    case("register-data-float-key", lambda s: s.register(view(), data=EVENTS.with_columns(pl.col("user_id").cast(pl.Float64)))),
    case("register-data-no-features", lambda s: s.register(view(), data=EVENTS.select("user_id", "event_timestamp"))),
    case("register-rekey-with-data", lambda s: s.register(view(name="user_stats", entities=["account_id"]))),
    case("register-retimestamp-with-data", lambda s: s.register(view(name="user_stats", timestamp_field="ts"))),
    case("register-retype-with-data", lambda s: s.register(view(name="user_stats", features={"login_count": "VARCHAR", "avg_purchase": "DOUBLE"}))),
    case("register-existing-retyped-data", lambda s: s.register(view(name="user_stats"), data=EVENTS.with_columns(pl.lit("x").alias("login_count")))),
    case("register-existing-view-new-name-bad-data", lambda s: s.register(view(name="user_stats", ttl="1d"), data=EVENTS.with_columns(pl.col("user_id").cast(pl.String)))),
    case("register-replace-str", lambda s: s.register(view(), EVENTS, replace="yes")),
    case("register-namespace-int", lambda s: s.register(view(), "SELECT * FROM events", namespace=5)),
    case("register-reserved-column", lambda s: s.register(view(), data=EVENTS.with_columns(_fsnb_created=pl.lit(1)))),
    case("register-2000-features", lambda s: s.register(view(), data=_wide())),
    case("register-dup-arrow", lambda s: s.register(view(), data=_dup_arrow())),
    case("register-dup-pandas", lambda s: s.register(view(), data=_dup_pandas())),
    case("register-string-key-for-bigint", lambda s: s.register(view(name="user_stats"), data=EVENTS.with_columns(pl.col("user_id").cast(pl.String)))),
    case("ingest-name-int", lambda s: s.ingest(5, EVENTS)),
    case("ingest-name-none", lambda s: s.ingest(None, EVENTS)),
    case("ingest-unknown", lambda s: s.ingest("nope", EVENTS)),
    case("ingest-name-space", lambda s: s.ingest("user stats", EVENTS)),
    case("ingest-data-none", lambda s: s.ingest("user_stats", None)),
    case("ingest-data-int", lambda s: s.ingest("user_stats", 5)),
    case("ingest-data-list", lambda s: s.ingest("user_stats", [1, 2])),
    case("ingest-data-set", lambda s: s.ingest("user_stats", {1, 2})),
    case("ingest-data-bytes", lambda s: s.ingest("user_stats", b"SELECT 1")),
    case("ingest-sql-error", lambda s: s.ingest("user_stats", "SELECT nope FROM nowhere")),
    case("ingest-sql-no-rows", lambda s: s.ingest("user_stats", "CREATE TABLE t (a INT)")),
    case("ingest-missing-key", lambda s: s.ingest("user_stats", EVENTS.drop("user_id"))),
    case("ingest-missing-ts", lambda s: s.ingest("user_stats", EVENTS.drop("event_timestamp"))),
    case("ingest-missing-feature", lambda s: s.ingest("user_stats", EVENTS.drop("login_count"))),
    case("ingest-extra-column", lambda s: s.ingest("user_stats", EVENTS.with_columns(extra=pl.lit(1)))),
    case("ingest-empty", lambda s: s.ingest("user_stats", EVENTS.clear())),
    case("ingest-null-ts", lambda s: s.ingest("user_stats", EVENTS.with_columns(pl.lit(None, pl.Datetime).alias("event_timestamp")))),
    case("ingest-string-key", lambda s: s.ingest("user_stats", EVENTS.with_columns(pl.col("user_id").cast(pl.String)))),
    case("ingest-string-feature", lambda s: s.ingest("user_stats", EVENTS.with_columns(pl.col("login_count").cast(pl.String)))),
    case("ingest-list-key", lambda s: s.ingest("user_stats", EVENTS.with_columns(pl.concat_list("user_id").alias("user_id")))),
    case("ingest-no-file", lambda s: s.ingest("user_stats", "/no/such/file.csv")),
    case("ingest-directory", lambda s: s.ingest("user_stats", Path("/"))),
    case("ingest-garbage-file", lambda s: s.ingest("user_stats", Path(__file__))),
    case("ingest-namespace-int", lambda s: s.ingest("user_stats", "SELECT 1", namespace=5)),
    case("ingest-pandas-mixed-object", lambda s: s.ingest("user_stats", EVENTS.to_pandas().assign(login_count=[1, "a", 2.5]))),
    case("ingest-dict-uneven", lambda s: s.ingest("user_stats", {"user_id": [1, 2], "login_count": [1]})),
    case("ingest-pandas-complex", lambda s: s.ingest("user_stats", EVENTS.to_pandas().assign(login_count=[1j, 2j, 3j]))),
    case("ingest-lazy-error", lambda s: s.ingest("user_stats", EVENTS.lazy().select(pl.col("nope")))),
    case("ingest-reserved-column", lambda s: s.ingest("user_stats", EVENTS.with_columns(_fsnb_seq=pl.lit(1)))),
    case("ingest-dup-arrow", lambda s: s.ingest("user_stats", _dup_arrow())),
    case("ingest-dup-pandas", lambda s: s.ingest("user_stats", _dup_pandas())),
    case("push-materialize-view", lambda s: s.push("user_stats", EVENTS)),
    case("push-unknown", lambda s: s.push("nope", CLICKS)),
    case("push-name-int", lambda s: s.push(5, CLICKS)),
    case("push-data-none", lambda s: s.push("clicks", None)),
    case("push-data-int", lambda s: s.push("clicks", 5)),
    case("push-empty", lambda s: s.push("clicks", CLICKS.clear())),
    case("push-wrong-schema", lambda s: s.push("clicks", CLICKS.rename({"clicks": "taps"}))),
    case("push-null-key", lambda s: s.push("clicks", CLICKS.with_columns(pl.lit(None, pl.Int64).alias("user_id")))),
    case("push-string-key", lambda s: s.push("clicks", CLICKS.with_columns(pl.col("user_id").cast(pl.String)))),
    case("push-reserved-column", lambda s: s.push("clicks", CLICKS.with_columns(_fsnb_ts=pl.lit(1)))),
    case("push-sql-error", lambda s: s.push("clicks", "SELECT nope")),
    case("push-namespace-int", lambda s: s.push("clicks", "SELECT 1", namespace=5)),
]

# -- retrieval -------------------------------------------------------------------------------------
READS = [
    case("hist-labels-int", lambda s: s.get_historical_features(5, UF)),
    case("hist-labels-none", lambda s: s.get_historical_features(None, UF)),
    case("hist-labels-list", lambda s: s.get_historical_features([1, 2], UF)),
    case("hist-labels-sql-error", lambda s: s.get_historical_features("SELECT nope", UF)),
    case("hist-labels-no-file", lambda s: s.get_historical_features("/no/labels.parquet", UF)),
    case("hist-labels-lazy-error", lambda s: s.get_historical_features(LABELS.lazy().select(pl.col("nope")), UF)),
    case("hist-labels-dict-uneven", lambda s: s.get_historical_features({"user_id": [1, 2], "event_timestamp": [T0]}, UF)),
    case("hist-labels-missing-ts", lambda s: s.get_historical_features(LABELS.drop("event_timestamp"), UF)),
    case("hist-labels-missing-key", lambda s: s.get_historical_features(LABELS.drop("user_id"), UF)),
    case("hist-labels-ts-string", lambda s: s.get_historical_features(LABELS.with_columns(pl.col("event_timestamp").cast(pl.String)), UF)),
    case("hist-labels-ts-null", lambda s: s.get_historical_features(LABELS.with_columns(pl.lit(None, pl.Datetime).alias("event_timestamp")), UF)),
    case("hist-labels-key-string", lambda s: s.get_historical_features(LABELS.with_columns(pl.col("user_id").cast(pl.String)), UF)),
    case("hist-labels-key-list", lambda s: s.get_historical_features(LABELS.with_columns(pl.concat_list("user_id").alias("user_id")), UF)),
    case("hist-labels-column-is-feature", lambda s: s.get_historical_features(LABELS.with_columns(login_count=pl.lit(1)), UF)),
    case("hist-labels-dup-pandas", lambda s: s.get_historical_features(pd.concat([LABELS.to_pandas(), LABELS.to_pandas()[["label"]]], axis=1), UF)),
    case("hist-features-int", lambda s: s.get_historical_features(LABELS, 5)),
    case("hist-features-none", lambda s: s.get_historical_features(LABELS, None)),
    case("hist-features-empty", lambda s: s.get_historical_features(LABELS, [])),
    case("hist-features-int-item", lambda s: s.get_historical_features(LABELS, [5])),
    case("hist-features-no-colon", lambda s: s.get_historical_features(LABELS, "login_count")),
    case("hist-features-view-only", lambda s: s.get_historical_features(LABELS, ["user_stats"])),
    case("hist-features-two-colons", lambda s: s.get_historical_features(LABELS, ["user_stats:a:b"])),
    case("hist-features-unknown-view", lambda s: s.get_historical_features(LABELS, ["nope:x"])),
    case("hist-features-unknown-feature", lambda s: s.get_historical_features(LABELS, ["user_stats:nope"])),
    case("hist-features-no-data-view", lambda s: s.get_historical_features(LABELS, ["empty_view:x"])),
    case("hist-features-bytes", lambda s: s.get_historical_features(LABELS, b"user_stats:login_count")),
    case("hist-features-dict", lambda s: s.get_historical_features(LABELS, {"user_stats": "login_count"})),
    case("hist-features-space", lambda s: s.get_historical_features(LABELS, ["user stats:login_count"])),
    case("hist-features-collision", lambda s: s.get_historical_features(LABELS, ["user_stats:login_count", "archive:login_count"])),
    case("hist-timestamp-int", lambda s: s.get_historical_features(LABELS, UF, timestamp_field=5)),
    case("hist-timestamp-none", lambda s: s.get_historical_features(LABELS, UF, timestamp_field=None)),
    case("hist-timestamp-unknown", lambda s: s.get_historical_features(LABELS, UF, timestamp_field="nope")),
    case("hist-timestamp-is-key", lambda s: s.get_historical_features(LABELS, UF, timestamp_field="user_id")),
    case("hist-full-names-str", lambda s: s.get_historical_features(LABELS, UF, full_feature_names="yes")),
    case("hist-as-of-int", lambda s: s.get_historical_features(LABELS, UF, as_of_ingestion=5)),
    case("online-features-int", lambda s: s.get_online_features(5, [{"user_id": 1}])),
    case("online-features-none", lambda s: s.get_online_features(None, [{"user_id": 1}])),
    case("online-features-empty", lambda s: s.get_online_features([], [{"user_id": 1}])),
    case("online-features-int-item", lambda s: s.get_online_features([5], [{"user_id": 1}])),
    case("online-features-no-colon", lambda s: s.get_online_features(["login_count"], [{"user_id": 1}])),
    case("online-features-unknown-view", lambda s: s.get_online_features(["nope:x"], [{"user_id": 1}])),
    case("online-features-unknown-feature", lambda s: s.get_online_features(["user_stats:nope"], [{"user_id": 1}])),
    case("online-features-offline-only", lambda s: s.get_online_features(["archive:login_count"], [{"user_id": 1}])),
    case("online-features-dict", lambda s: s.get_online_features({"user_stats": "login_count"}, [{"user_id": 1}])),
    case("online-rows-ints", lambda s: s.get_online_features(UF, [1, 2])),
    case("online-rows-int", lambda s: s.get_online_features(UF, 1)),
    case("online-rows-none", lambda s: s.get_online_features(UF, None)),
    case("online-rows-str", lambda s: s.get_online_features(UF, "user_id")),
    case("online-rows-none-item", lambda s: s.get_online_features(UF, [None])),
    case("online-rows-missing-key", lambda s: s.get_online_features(UF, [{"nope": 1}])),
    case("online-rows-empty-row", lambda s: s.get_online_features(UF, [{}])),
    case("online-rows-list-value", lambda s: s.get_online_features(UF, [{"user_id": [1, 2]}])),
    case("online-rows-dict-value", lambda s: s.get_online_features(UF, [{"user_id": {"a": 1}}])),
    case("online-rows-object-value", lambda s: s.get_online_features(UF, [{"user_id": object()}])),
    case("online-rows-columns-unequal", lambda s: s.get_online_features(UF, {"user_id": [1, 2], "other": [1]})),
    case("online-rows-columns-mixed", lambda s: s.get_online_features(UF, {"user_id": [1, 2], "other": 1})),
    case("online-rows-nested-columns", lambda s: s.get_online_features(UF, {"user_id": [[1], [2]]})),
    case("online-rows-frame", lambda s: s.get_online_features(UF, LABELS)),
    case("online-rows-string-for-bigint", lambda s: s.get_online_features(UF, [{"user_id": "42"}])),
    case("materialize-start-garbage", lambda s: s.materialize(start="garbage")),
    case("materialize-end-garbage", lambda s: s.materialize(end="yesterday")),
    case("materialize-start-int", lambda s: s.materialize(start=5)),
    case("materialize-end-nan", lambda s: s.materialize(end=float("nan"))),
    case("materialize-start-after-end", lambda s: s.materialize(start="2024-03-02", end="2024-03-01")),
    case("materialize-views-str", lambda s: s.materialize(views="user_stats")),
    case("materialize-views-unknown", lambda s: s.materialize(views=["nope"])),
    case("materialize-views-int", lambda s: s.materialize(views=[5])),
    case("materialize-views-number", lambda s: s.materialize(views=5)),
    case("materialize-views-offline-only", lambda s: s.materialize(views=["archive"])),
    case("materialize-progress-str", lambda s: s.materialize(progress="yes")),
    case("materialize-incremental-end-garbage", lambda s: s.materialize_incremental(end="soon")),
    case("materialize-incremental-views-str", lambda s: s.materialize_incremental(views="user_stats")),
    case("read-unknown", lambda s: s.read("nope")),
    case("read-int", lambda s: s.read(5)),
    case("read-none", lambda s: s.read(None)),
    case("read-start-garbage", lambda s: s.read("user_stats", start="garbage")),
    case("read-end-int", lambda s: s.read("user_stats", end=5)),
    case("read-start-list", lambda s: s.read("user_stats", start=[1])),
    case("leakage-labels-int", lambda s: s.explain_leakage(5, UF)),
    case("leakage-features-bad", lambda s: s.explain_leakage(LABELS, ["login_count"])),
    case("leakage-features-int", lambda s: s.explain_leakage(LABELS, 5)),
    case("leakage-unknown-view", lambda s: s.explain_leakage(LABELS, ["nope:x"])),
    case("leakage-label-unknown", lambda s: s.explain_leakage(LABELS, UF, label="nope")),
    case("leakage-label-int", lambda s: s.explain_leakage(LABELS, UF, label=5)),
    case("leakage-timestamp-unknown", lambda s: s.explain_leakage(LABELS, UF, timestamp_field="nope")),
    case("leakage-timestamp-int", lambda s: s.explain_leakage(LABELS, UF, timestamp_field=5)),
    case("leakage-labels-missing-key", lambda s: s.explain_leakage(LABELS.drop("user_id"), UF)),
    case("leakage-labels-ts-string", lambda s: s.explain_leakage(LABELS.with_columns(pl.col("event_timestamp").cast(pl.String)), UF)),
]

# -- definitions, deletion, training sets, opening -------------------------------------------------
OTHERS = [
    case("get-view-unknown", lambda s: s.get_feature_view("nope")),
    case("get-view-int", lambda s: s.get_feature_view(5)),
    case("get-view-none", lambda s: s.get_feature_view(None)),
    case("get-view-version-missing", lambda s: s.get_feature_view("user_stats", version=99)),
    case("get-view-version-str", lambda s: s.get_feature_view("user_stats", version="1")),
    case("get-view-version-bool", lambda s: s.get_feature_view("user_stats", version=True)),
    case("get-view-version-float", lambda s: s.get_feature_view("user_stats", version=1.0)),
    case("list-versions-unknown", lambda s: s.list_versions("nope")),
    case("version-of-unknown", lambda s: s.version_of("nope")),
    case("stats-unknown", lambda s: s.stats("nope")),
    case("stats-int", lambda s: s.stats(5)),
    case("delete-unknown", lambda s: s.delete_feature_view("nope")),
    case("delete-int", lambda s: s.delete_feature_view(5)),
    case("delete-none", lambda s: s.delete_feature_view(None)),
    case("delete-space", lambda s: s.delete_feature_view("user stats")),
    case("delete-list", lambda s: s.delete_feature_view(["user_stats"])),
    case("training-name-int", lambda s: s.record_training_set(5, LABELS, UF)),
    case("training-name-empty", lambda s: s.record_training_set("", LABELS, UF)),
    case("training-name-newline", lambda s: s.record_training_set("a\nb", LABELS, UF)),
    case("training-frame-str", lambda s: s.record_training_set("t2", "frame", UF)),
    case("training-frame-none", lambda s: s.record_training_set("t2", None, UF)),
    case("training-features-bytes", lambda s: s.record_training_set("t2", LABELS, b"user_stats:login_count")),
    case("training-features-int", lambda s: s.record_training_set("t2", LABELS, 5)),
    case("training-features-empty", lambda s: s.record_training_set("t2", LABELS, [])),
    case("training-features-bad-ref", lambda s: s.record_training_set("t2", LABELS, ["login_count"])),
    case("training-features-unknown-view", lambda s: s.record_training_set("t2", LABELS, ["nope:x"])),
    case("training-features-unknown-feature", lambda s: s.record_training_set("t2", LABELS, ["user_stats:nope"])),
    case("skew-unknown", lambda s: s.check_skew("nope")),
    case("open-path-int", lambda s: fsnb.FeatureStore(5)),
    case("open-path-file", lambda s: fsnb.FeatureStore(Path(__file__))),
    case("open-lock-timeout-str", lambda s: fsnb.FeatureStore(s.path, lock_timeout="soon")),
    case("open-lock-timeout-negative", lambda s: fsnb.FeatureStore(s.path, lock_timeout=-1)),
    case("open-online-unknown", lambda s: fsnb.FeatureStore(s.path, online="memcached://x")),
    case("open-online-bad-port", lambda s: fsnb.FeatureStore(s.path, online="redis://localhost:notaport/0")),
    case("open-log-bad-port", lambda s: fsnb.FeatureStore(s.path, log="redis://localhost:99999/0")),
    # The offline engine (DESIGN section 11): checked before anything is opened or created.
    case("open-offline-int", lambda s: fsnb.FeatureStore(s.path, offline=3)),
    case("open-offline-unknown", lambda s: fsnb.FeatureStore(s.path, offline="sparkk")),
    case("open-spark-no-warehouse", lambda s: fsnb.FeatureStore(s.path, offline="spark")),
    case("open-warehouse-without-spark", lambda s: fsnb.FeatureStore(s.path, warehouse="/tmp/wh")),
    case("open-warehouse-int", lambda s: fsnb.FeatureStore(s.path, offline="spark", warehouse=7)),
    case("open-warehouse-credentials", lambda s: fsnb.FeatureStore(s.path, offline="spark", warehouse="s3a://k:secret@b/x")),
    case("open-warehouse-query", lambda s: fsnb.FeatureStore(s.path, offline="spark", warehouse="s3a://b/x?v=1")),
    case("open-warehouse-control", lambda s: fsnb.FeatureStore(s.path, offline="spark", warehouse="/tmp/w\nh")),
    case("open-spark-not-a-session", lambda s: fsnb.FeatureStore(s.path, offline="spark", warehouse="/tmp/wh", spark="local")),
    case("open-duckdb-store-on-spark", lambda s: fsnb.FeatureStore(s.path, offline="spark", warehouse="/tmp/fsnb-wh-unused")),
]


@pytest.mark.parametrize("call", DEFINITIONS + WRITES + READS + OTHERS)
def test_api_bad_input(populated: Populated, call: Callable[[fsnb.FeatureStore], Any]) -> None:
    before = snapshot(populated.path)
    try:
        with pytest.raises(FsnbError) as info:
            call(populated.store)
        message = str(info.value)
        assert message and "\n" not in message, message
        assert snapshot(populated.path) == before
    except BaseException:
        populated.restore()
        raise


# -- the magics ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ip(populated: Populated) -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    old = os.environ.get("FSNB_STORE")
    os.environ["FSNB_STORE"] = str(populated.path)
    try:
        shell.run_line_magic("load_ext", "fsnb")
    finally:
        if old is None:
            os.environ.pop("FSNB_STORE")
        else:
            os.environ["FSNB_STORE"] = old
    shell.user_ns.update(
        events=EVENTS,
        labels=LABELS,
        not_a_frame=5,
        labels_str_key=LABELS.with_columns(pl.col("user_id").cast(pl.String)),
        labels_no_key=LABELS.drop("user_id"),
    )
    yield shell
    shell.run_line_magic("unload_ext", "fsnb")
    for name in ("events", "labels", "not_a_frame", "labels_str_key", "labels_no_key"):
        shell.user_ns.pop(name, None)


def fv(flags: str, body: str = "SELECT * FROM events", *marks: pytest.MarkDecorator) -> Any:
    return pytest.param("feature_view", flags, body, id=f"%%feature_view {flags} | {body[:30]}", marks=marks)


def line(magic: str, text: str, *marks: pytest.MarkDecorator) -> Any:
    return pytest.param(magic, text, None, id=f"%{magic} {text}", marks=marks)


MAGICS = [
    fv(""),
    fv("fresh"),
    fv("--entity user_id"),
    fv("bad-name --entity user_id"),
    fv("'bad name' --entity user_id"),
    fv("1x --entity user_id"),
    fv("fresh --entity user_id --ttl 99999999999d"),
    fv("fresh --entity user_id --ttl nan"),
    fv("fresh --entity user_id --ttl inf"),
    fv("fresh --entity user_id --ttl soon"),
    fv("fresh --entity user_id --ttl -1d"),
    fv("fresh --entity a,,b"),
    fv("fresh --entity ,"),
    fv("fresh --entity 'user id'"),
    fv("fresh --entity user_id --timestamp user_id"),
    fv("fresh --entity user_id --created event_timestamp"),
    fv("fresh --entity user_id --created user_id"),
    fv("fresh --entity user_id --timestamp 'event time'"),
    fv("fresh --entity user_id --bogus"),
    fv("fresh --entity 'user_id"),
    fv("fresh --entity user_id", ""),
    fv("fresh --entity user_id", "   "),
    fv("fresh --entity user_id", "SELECT nope FROM nowhere"),
    fv("fresh --entity user_id", "SELEC * FROM events"),
    fv("fresh --entity user_id", "SELECT * FROM events WHERE false"),
    fv("fresh --entity user_id", "SELECT user_id, login_count FROM events"),
    fv("fresh --entity user_id", "SELECT user_id, CAST(event_timestamp AS VARCHAR) AS event_timestamp, login_count FROM events"),
    fv("fresh --entity user_id", "SELECT user_id, event_timestamp FROM events"),
    fv("fresh --entity nope", "SELECT * FROM events"),
    fv("fresh --entity user_id", "not_a_frame"),
    fv("fresh --entity user_id", "SELECT NULL::BIGINT AS user_id, event_timestamp, login_count FROM events"),
    fv("fresh --entity user_id", "SELECT 1.5 AS user_id, event_timestamp, login_count FROM events"),
    fv("fresh --entity user_id", "SELECT *, 1 AS _fsnb_ts FROM events"),
    fv("fresh --entity user_id", "SELECT * FROM '/no/such/file.parquet'"),
    fv("fresh --entity user_id", "COPY (SELECT 1) TO '/dev/null'"),
    fv("user_stats --entity account_id", "SELECT user_id AS account_id, event_timestamp, login_count, avg_purchase FROM events"),
    fv("user_stats --entity user_id --timestamp ts", "SELECT user_id, event_timestamp AS ts, login_count, avg_purchase FROM events"),
    fv("user_stats --entity user_id", "SELECT CAST(user_id AS VARCHAR) AS user_id, event_timestamp, login_count, avg_purchase FROM events"),
    fv("user_stats --entity user_id", "SELECT user_id, event_timestamp, 'x' AS login_count, avg_purchase FROM events"),
    line("training_set", ""),
    line("training_set", "labels"),
    line("training_set", "nope user_stats:login_count"),
    line("training_set", "not_a_frame user_stats:login_count"),
    line("training_set", "labels login_count"),
    line("training_set", "labels nope:x"),
    line("training_set", "labels user_stats:nope"),
    line("training_set", "labels user_stats:login_count --timestamp nope"),
    line("training_set", "labels user_stats:login_count -o 1bad"),
    line("training_set", "labels user_stats:login_count -o 'a b'"),
    line("training_set", "labels_str_key user_stats:login_count"),
    line("training_set", "labels_no_key user_stats:login_count"),
    line("training_set", "/no/such/labels.parquet user_stats:login_count"),
    line("training_set", "labels user_stats:login_count archive:login_count"),
    line("training_set", "labels user_stats:login_count --bogus"),
    line("training_set", "'labels user_stats:login_count"),
    line("online_features", ""),
    line("online_features", "user_stats:login_count"),
    line("online_features", "user_stats:login_count --entity user_id"),
    line("online_features", "user_stats:login_count --entity =5"),
    line("online_features", "user_stats:login_count --entity nope=1"),
    line("online_features", "user_stats:login_count --entity user_id=abc"),
    line("online_features", "user_stats:login_count --entity user_id=1,user_id=2"),
    line("online_features", "user_stats:login_count --entity user_id=1,"),
    line("online_features", "nope:x --entity user_id=1"),
    line("online_features", "login_count --entity user_id=1"),
    line("online_features", "user_stats:nope --entity user_id=1"),
    line("online_features", "archive:login_count --entity user_id=1"),
    line("online_features", "user_stats:login_count --entity user_id=1 -o 1x"),
    line("online_features", "user_stats:login_count --entity user_id=99999999999999999999999"),
    line("online_features", "user_stats:login_count --entity 'user_id=\"42\"'"),
    line("materialize", "--start garbage"),
    line("materialize", "--end yesterday"),
    line("materialize", "--start 2024-03-02 --end 2024-03-01"),
    line("materialize", "--incremental --start 2024-01-01"),
    line("materialize", "--view nope"),
    line("materialize", "--view archive"),
    line("materialize", "--view 'bad name'"),
    line("materialize", "--bogus"),
    line("materialize", "now"),
    line("materialize", "--incremental --end never"),
    line("leakage", ""),
    line("leakage", "labels"),
    line("leakage", "nope user_stats:login_count"),
    line("leakage", "labels login_count"),
    line("leakage", "labels nope:x"),
    line("leakage", "labels user_stats:login_count --timestamp nope"),
    line("leakage", "labels_no_key user_stats:login_count"),
    line("leakage", "not_a_frame user_stats:login_count"),
    line("fsnb", "bogus"),
    line("fsnb", "lst"),
    line("fsnb", "list extra"),
    line("fsnb", "list --offline spark"),
    line("fsnb", "open --offline spark"),
    line("fsnb", "open /tmp/fsnb-never-created --offline spark"),
    line("fsnb", "open /tmp/fsnb-never-created --offline sparkk --warehouse wh"),
    line("fsnb", "show"),
    line("fsnb", "show nope"),
    line("fsnb", "show 'bad name'"),
    line("fsnb", "open"),
    line("fsnb", "list --online redis://localhost:6379/0"),
    line("fsnb", "'unclosed"),
    line("fsnb", f"open {__file__}"),
    line("fsnb", "open /proc/1"),
]


@pytest.mark.parametrize(("magic", "text", "body"), MAGICS)
def test_magic_bad_input(populated: Populated, ip: InteractiveShell, magic: str, text: str, body: str | None) -> None:
    magics = ip.magics_manager.registry["FsnbMagics"]
    if magics.path != populated.path:  # a failed %fsnb open elsewhere must not move later cases
        magics.close()
        magics.path = populated.path
    before = snapshot(populated.path)
    try:
        with pytest.raises(UsageError) as info:
            if body is None:
                ip.run_line_magic(magic, text)
            else:
                ip.run_cell_magic(magic, text, body)
        message = str(info.value)
        if message.startswith("DuckDB: ") and "\nLINE 1: " in message:
            # issue 12: DuckDB's message about the cell's SQL keeps its caret line (and nothing else is multi-line)
            *_, caret = message.splitlines()
            assert caret.strip().startswith("^"), message
        else:
            assert message and "\n" not in message, message
        assert snapshot(populated.path) == before
    except BaseException:
        populated.restore(ip)
        raise


def test_the_catalogue_is_big_enough() -> None:
    assert len(DEFINITIONS + WRITES + READS + OTHERS) + len(MAGICS) >= 150
