"""Store files fsnb did not write: crafted types and definitions never reach SQL, damaged
files are one clear error naming the file (DESIGN section 10)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

import fsnb
from fsnb import types
from fsnb.errors import FsnbError, InvalidDefinition, StoreError
from fsnb.types import parse_type

EVENTS = pl.DataFrame({
    "user_id": [1, 2], "event_timestamp": [datetime(2024, 3, 1), datetime(2024, 3, 2)],
    "amount": [1.5, 2.5],
})
LABELS = pl.DataFrame({"user_id": [1, 2], "event_timestamp": [datetime(2024, 3, 5), datetime(2024, 3, 5)]})


def one_line_fsnb_error(exc: BaseException) -> bool:
    return isinstance(exc, FsnbError) and "\n" not in str(exc) and 0 < len(str(exc)) < 2000


# -- the type grammar ---------------------------------------------------------------------
ACCEPTED = {
    "bigint": "BIGINT", "Int": "INTEGER", "INT8": "BIGINT", "UBIGINT": "UBIGINT", "HUGEINT": "HUGEINT",
    "REAL": "FLOAT", "double precision": "DOUBLE", "decimal": "DECIMAL(18,3)", "DECIMAL(38)": "DECIMAL(38,0)",
    "numeric(4, 2)": "DECIMAL(4,2)", "TEXT": "VARCHAR", "string": "VARCHAR", "VARCHAR(20)": "VARCHAR",
    "BLOB": "BLOB", "UUID": "UUID", "DATE": "DATE", "TIME": "TIME", "INTERVAL": "INTERVAL",
    "TIMESTAMP": "TIMESTAMP", "TIMESTAMP_S": "TIMESTAMP_S", "TIMESTAMP_MS": "TIMESTAMP_MS",
    "TIMESTAMP_NS": "TIMESTAMP_NS", "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS": "TIMESTAMPTZ_NS",
    "BOOLEAN": "BOOLEAN", '"NULL"': '"NULL"', "BIGINT[]": "BIGINT[]", "INTEGER[3][]": "INTEGER[3][]",
    "MAP(VARCHAR, DOUBLE[])": "MAP(VARCHAR, DOUBLE[])",
    'STRUCT(a BIGINT, "x""y" VARCHAR, "select" MAP(INT, TEXT))':
        'STRUCT("a" BIGINT, "x""y" VARCHAR, "select" MAP(INTEGER, VARCHAR))',
}
INJECTIONS = [
    "DECIMAL(18,3)); COPY (SELECT 1) TO 'x.csv'; --",
    "DECIMAL(18,3) ) ; DROP TABLE t; --",
    "BIGINT); DROP TABLE t; --",
    "BIGINT --",
    "BIGINT /* */",
    "DECIMAL(18,3), (SELECT 1)",
    "STRUCT(\"a\" BIGINT)) ; SELECT 1 --",
    'STRUCT("a"" BIGINT); SELECT 1; --" BIGINT',
    "VARCHAR COLLATE nocase",
    "ENUM('a', 'b')",
    "UNION(a INT, b VARCHAR)",
    "DECIMAL(39,0)", "DECIMAL(5,6)", "DECIMAL(99999999999999999999,1)", "INTEGER[0]", "INTEGER[100001]",
    "STRUCT()", "STRUCT(a INT, A INT)", 'STRUCT("" INT)', "MAP(VARCHAR)", "BIGINT[", "", "   ",
    "ＢＩＧＩＮＴ", "BIGINT\x00", "DECIMAL(1٣,2)", "x" * 5000, "STRUCT(a " * 40 + "INT" + ")" * 40,
    "DECIMAL", "TIME WITH TIME ZONE", "BIT", "JSON", "geometry",
]


@pytest.mark.parametrize(("text", "canonical"), ACCEPTED.items())
def test_parse_type_accepts_duckdb_types_and_emits_what_duckdb_takes(text: str, canonical: str) -> None:
    assert parse_type(text) == canonical
    assert parse_type(canonical) == canonical  # canonical text is a fixed point
    duckdb.sql(f"SELECT CAST(NULL AS {canonical})").fetchall()


@pytest.mark.parametrize("text", [t for t in INJECTIONS if t != "DECIMAL"])
def test_parse_type_refuses_anything_else_with_one_line(text: str) -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse_type(text)
    assert one_line_fsnb_error(info.value)


@pytest.mark.parametrize("value", [None, 3, ["BIGINT"], {"t": "BIGINT"}, b"BIGINT"])
def test_parse_type_refuses_non_strings(value: object) -> None:
    with pytest.raises(InvalidDefinition):
        parse_type(value)


def test_enum_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidDefinition, match="VARCHAR"):
        parse_type("ENUM('a','b')")


def test_family_no_longer_takes_anything_starting_with_decimal() -> None:
    assert types.family("DECIMAL(18,3)") == "float"
    assert types.family("DECIMAL(18,3)); DROP TABLE x; --") != "float"


def test_every_type_duckdb_reports_for_arrow_data_parses() -> None:
    import pandas as pd
    import pyarrow as pa

    frame = pd.DataFrame({"tz_ns": pd.to_datetime(["2024-01-01"]).tz_localize("UTC").astype("datetime64[ns, UTC]")})
    table = pa.Table.from_pandas(frame).append_column(
        "s", pa.array([{"a b": 1, 'x"y': "v"}], pa.struct([("a b", pa.int64()), ('x"y', pa.string())]))
    ).append_column("cat", pa.array(["x"]).dictionary_encode())
    rel = duckdb.connect().from_arrow(table)
    parsed = [parse_type(str(t)) for t in rel.types]
    assert parsed == ["TIMESTAMPTZ_NS", 'STRUCT("a b" BIGINT, "x""y" VARCHAR)', "VARCHAR"]


def test_user_feature_types_go_through_the_grammar() -> None:
    view = fsnb.FeatureView("v", entities="k", features={"a": "decimal", "b": "text"})
    assert view.feature_types == {"a": "DECIMAL(18,3)", "b": "VARCHAR"}
    with pytest.raises(InvalidDefinition, match="feature 'a'"):
        fsnb.FeatureView("v", entities="k", features={"a": "DECIMAL(18,3)); COPY (SELECT 1) TO 'x'; --"})
    with pytest.raises(InvalidDefinition):
        fsnb.FeatureView("v", entities="k", entity_types={"k": "BIGINT); DROP TABLE x; --"})


# -- crafted registry rows -----------------------------------------------------------------
def _build(path: Path) -> None:
    s = fsnb.FeatureStore(path)
    s.register(fsnb.FeatureView("victim", entities="user_id"), EVENTS)
    s.register(fsnb.FeatureView("other", entities="user_id"), EVENTS)
    s.materialize()
    s.record_training_set("ts", s.get_historical_features(LABELS, ["victim:amount"]), ["victim:amount"])
    s.close()


def _definition(path: Path, name: str) -> dict:
    con = sqlite3.connect(path / "registry.sqlite")
    (text,) = con.execute("SELECT definition FROM views WHERE name = ?", (name,)).fetchone()
    con.close()
    return json.loads(text)


def _set(path: Path, sql: str, *params: object) -> None:
    con = sqlite3.connect(path / "registry.sqlite")
    con.execute(sql, params)
    con.commit()
    con.close()


def _offline_tables(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path / "offline.duckdb"), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in names}
    finally:
        con.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "store"
    _build(path)
    return path


@pytest.fixture
def built(template: Path, tmp_path: Path) -> Path:
    """A copy of a real small store (built once per module)."""
    path = tmp_path / "store"
    shutil.copytree(template, path)
    return path


@pytest.mark.parametrize("where", ["feature", "entity"])
def test_an_injected_type_in_the_registry_never_runs_its_sql(built: Path, where: str) -> None:
    canary = built.parent / "canary.csv"
    payload = f"DECIMAL(18,3)); COPY (SELECT 42) TO '{canary}'; DROP TABLE fv__other; --"
    definition = _definition(built, "victim")
    if where == "feature":
        definition["features"] = [["amount", payload]]
    else:
        definition["entity_types"] = {"user_id": payload}
    _set(built, "UPDATE views SET definition = ? WHERE name = 'victim'", json.dumps(definition))
    before = _offline_tables(built)

    store = fsnb.FeatureStore(built)
    try:
        for action in (
            lambda: store.ingest("victim", EVENTS),
            lambda: store.get_historical_features(LABELS, ["victim:amount"]),
            lambda: store.get_online_features(["victim:amount"], [{"user_id": 1}]),
        ):
            with pytest.raises(StoreError, match=r"registry\.sqlite") as info:
                action()
            assert one_line_fsnb_error(info.value) and "victim" in str(info.value)
        # The other view keeps working, and so does materialize for it.
        assert store.get_historical_features(LABELS, ["other:amount"])["amount"].to_list() == [1.5, 2.5]
        store.ingest("other", EVENTS.with_columns(pl.col("amount") + 1))
        store.materialize()
    finally:
        store.close()
    assert not canary.exists()
    after = _offline_tables(built)
    assert after["fv__victim"] == before["fv__victim"] and "fv__other" in after


def test_a_garbage_definition_sets_only_that_view_aside(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _set(built, "UPDATE views SET definition = '{not json' WHERE name = 'victim'")
    store = fsnb.FeatureStore(built)
    try:
        assert [v.name for v in store.list_feature_views()] == ["other"]
        with pytest.raises(StoreError, match="victim"):
            store.get_feature_view("victim")
        with pytest.raises(StoreError, match="victim"):  # the name is not free for a new view either
            store.register(fsnb.FeatureView("victim", entities="user_id"), EVENTS)
        assert store.get_online_features(["other:amount"], [{"user_id": 2}])["amount"] == [2.5]
    finally:
        store.close()
    from fsnb.cli import main

    assert main(["list", "--store", str(built)]) == 0
    out = capsys.readouterr().out
    assert "other" in out and "victim  UNREADABLE" in out
    store = fsnb.FeatureStore(built)
    try:
        store.delete_feature_view("victim")  # the way out the message offers
        assert "victim" not in store.registry.broken()
    finally:
        store.close()


@pytest.mark.parametrize(("field", "value"), [
    ("ttl_seconds", "30d"), ("ttl_seconds", 1e300), ("ttl_seconds", -1), ("ttl_seconds", True),
    ("online", "yes"), ("sync", "cron"), ("tags", {"a": 1}), ("description", 7), ("query", ["x"]),
    ("features", [["amount"]]), ("features", [[1, "DOUBLE"]]), ("features", "amount"),
    ("entities", "user_id"), ("entities", [["user_id"]]), ("entities", ['user_id"; DROP TABLE x; --']),
    ("timestamp_field", None), ("name", "other"), ("entity_types", ["BIGINT"]),
])
def test_each_field_of_a_definition_is_checked(built: Path, field: str, value: object) -> None:
    definition = _definition(built, "victim")
    definition[field] = value
    _set(built, "UPDATE views SET definition = ? WHERE name = 'victim'", json.dumps(definition))
    store = fsnb.FeatureStore(built)
    try:
        with pytest.raises(StoreError, match=r"registry\.sqlite") as info:
            store.ingest("victim", EVENTS)
        assert one_line_fsnb_error(info.value)
        assert store.registry.names() == ["other"]
    finally:
        store.close()


def test_nan_in_a_definition_is_refused(built: Path) -> None:
    text = json.dumps(_definition(built, "victim")).replace('"ttl_seconds": null', '"ttl_seconds": NaN')
    _set(built, "UPDATE views SET definition = ? WHERE name = 'victim'", text)
    store = fsnb.FeatureStore(built)
    try:
        with pytest.raises(StoreError, match="NaN"):
            store.get_feature_view("victim")
    finally:
        store.close()


def test_bad_statistics_training_sets_and_settings_are_one_line_errors(built: Path) -> None:
    _set(built, "UPDATE view_stats SET stats = '{\"rows\": \"many\"}' WHERE name = 'victim'")
    _set(built, "UPDATE training_sets SET detail = '[1, 2' WHERE name = 'ts'")
    _set(built, "INSERT OR REPLACE INTO kv VALUES ('store_id', '{')")
    store = fsnb.FeatureStore(built)
    try:
        with pytest.raises(StoreError, match="statistics of 'victim'"):
            store.stats("victim")
        assert store.stats("other")["rows"] == 2
        assert store.list_training_sets() == []
        assert "ts" in store.registry.broken_training_sets()
        with pytest.raises(StoreError, match="store_id"):
            _ = store.store_id
    finally:
        store.close()


def test_a_store_id_that_is_not_fsnbs_is_refused(built: Path) -> None:
    _set(built, "INSERT OR REPLACE INTO kv VALUES ('store_id', ?)", json.dumps("x:*"))
    store = fsnb.FeatureStore(built)
    try:
        with pytest.raises(StoreError, match="store id"):
            _ = store.store_id
    finally:
        store.close()


def test_a_registry_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir()
    con = sqlite3.connect(path / "registry.sqlite")
    con.execute("CREATE TABLE views (name TEXT, stuff TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"registry\.sqlite.*not an fsnb registry"):
        fsnb.FeatureStore(path)


# -- damaged files ---------------------------------------------------------------------------
FILES = ["registry.sqlite", "online.sqlite", "offline.duckdb", "log.sqlite"]


def _open_and_use(path: Path) -> None:
    store = fsnb.FeatureStore(path)
    try:
        store.get_historical_features(LABELS, ["victim:amount"])
        store.materialize()
    finally:
        store.close()


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_a_damaged_file_is_one_line_naming_it(built: Path, name: str, damage: str) -> None:
    target = built / name
    if name == "log.sqlite":
        sqlite3.connect(target).execute("PRAGMA journal_mode=WAL").fetchall()  # a log that exists
    data = target.read_bytes()
    for side in target.parent.glob(name + "-*"):
        side.unlink()  # WAL files would otherwise fill in what the damage removed
    if damage == "empty":
        target.write_bytes(b"")
    elif damage == "garbage":
        target.write_bytes(b"\x13garbage, not a database\x00" * 300)
    else:
        target.write_bytes(data[: len(data) // 3] if len(data) > 4096 else data[:100])
    with pytest.raises(StoreError) as info:
        _open_and_use(built)
    assert one_line_fsnb_error(info.value)
    assert str(target) in str(info.value) and "damaged" in str(info.value)
    assert ("restore" in str(info.value)) or ("move it away" in str(info.value))


def test_missing_files_are_a_new_store(built: Path) -> None:
    (built / "online.sqlite").unlink()
    _open_and_use(built)  # online values are rebuilt by materialize
    store = fsnb.FeatureStore(built)
    try:
        assert store.get_online_features(["victim:amount"], [{"user_id": 1}])["amount"] == [1.5]
    finally:
        store.close()


def test_the_cli_reports_a_damaged_registry_in_one_line(built: Path) -> None:
    (built / "registry.sqlite").write_bytes(b"\x00" * 10)
    for side in built.glob("registry.sqlite-*"):
        side.unlink()
    out = subprocess.run(
        [sys.executable, "-m", "fsnb.cli", "list", "--store", str(built)], capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "registry.sqlite is damaged" in out.stderr
