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
