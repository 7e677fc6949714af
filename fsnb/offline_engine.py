"""Where the two offline engines differ, for the store's modules above the backends.

The DuckDB engine (``offline.duckdb``, the default) and the Spark engine (Delta tables
under a warehouse, fsnb/backends/spark_offline.py) take the same checked batches and
answer the same queries through the offline contract (fsnb/backends/contracts.py). What
is left differs only in shape, and is here: what a batch of data is (a Spark DataFrame
stays one on a Spark store, never collected), how it is checked, how a write goes
through the commit protocol (fsnb.commit), and Spark labels in, a Spark DataFrame out.

What runs where on a Spark store: ingest, the point-in-time join, ``read``, statistics
and the latest-per-entity query run in Spark; the driver holds the registry, the label
checks (types from a zero- or one-row sample) and, for materialization, skew checks and
the naive side of the leakage analysis, one row per entity, staged in the store's DuckDB
file's connection (``stage_latest`` of the engines) on its way to the online store or
the comparison (docs/spark.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fsnb.sources import is_spark_frame, to_arrow
from fsnb.sqlnames import offline_table
from fsnb.validation import CheckedBatch, arrow_duck_types, check_batch

if TYPE_CHECKING:
    import duckdb

    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.definitions import FeatureView
    from fsnb.parts import StoreParts
    from fsnb.selection import FeatureSelection


def source(parts: StoreParts, data: Any, namespace: Mapping[str, Any] | None) -> Any:
    """data as a batch the store's engine takes: a Spark DataFrame stays one on a Spark
    store (its executors write it); on a DuckDB store it is collected through Arrow (the
    embedded engine reads everything on this machine anyway). Anything else: to_arrow."""
    if is_spark_frame(data) and parts.spark is not None:
        return data
    return to_arrow(data, namespace)


def check(parts: StoreParts, con: duckdb.DuckDBPyConnection, view: FeatureView, data: Any) -> CheckedBatch:
    """check_batch, or for a Spark DataFrame its Spark counterpart (types from a one-row
    sample, one Spark job for null keys and times)."""
    if is_spark_frame(data):
        return _engine(parts).check_frame(con, view, data)
    return check_batch(con, view, data)


def has_rows(parts: StoreParts, con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the view's offline history holds any row (con: the held offline store)."""
    if parts.spark is None:
        return parts.offline.has_rows(con, name)
    return parts.spark.has_rows(name)


def write(parts: StoreParts, con: duckdb.DuckDBPyConnection, batch: CheckedBatch, *, replace: bool = False,
          version: int, publish: bool) -> int:
    """Write a checked batch through the store's commit protocol (fsnb.commit); rows written.

    The caller holds the offline store (con). On the Spark engine the Delta commit is the
    commit point: it carries the write's token, so after a crash the registry publishes
    the pending definition exactly when the Delta log has the rows."""
    if parts.spark is None:
        return parts.offline.write(batch, replace=replace, version=version, publish=publish)
    journal = parts.offline.journal
    assert journal is not None
    engine, name = parts.spark, batch.view.name
    token = uuid.uuid4().hex
    journal.begin(con, token, batch.view, version, publish)
    try:
        rows = engine.write(batch, replace=replace, token=token)
    except BaseException:
        if engine.committed_write(con, name) != token:  # interrupted after the commit point: it stands
            journal.abort(token)
            raise
        journal.committed(token, batch.view, engine.stats(batch.view), publish)
        raise
    journal.committed(token, batch.view, engine.stats(batch.view), publish)
    return rows


def row_count(parts: StoreParts, name: str) -> int:
    """Rows in a view's offline history now."""
    if parts.spark is not None:
        return parts.spark.row_count(name)
    with parts.offline.connect() as con:
        if not parts.offline.table_exists(con, name):
            return 0
        return int(con.execute(f"SELECT count(*) FROM {offline_table(name)}").fetchall()[0][0])


def drop(parts: StoreParts, name: str) -> None:
    parts.offline.drop(name)
    if parts.spark is not None:
        parts.spark.drop(name)


def read(parts: StoreParts, view: FeatureView, start_ns: int | None, end_ns: int | None) -> pa.Table:
    """A view's history between two event times given in nanoseconds, oldest first."""
    if parts.spark is None:
        return parts.offline.read(view, start_ns, end_ns)
    return parts.spark.read(view, _time(start_ns, "start"), _time(end_ns, "end"))


def _time(ns: int | None, what: str) -> datetime | None:
    if ns is None:
        return None
    if ns % 1000:
        from fsnb.errors import InvalidData

        msg = f"{what} has nanoseconds; the Spark engine keeps microseconds (round it yourself)"
        raise InvalidData(msg)
    from datetime import timedelta

    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)


def training_frame(parts: StoreParts, labels: Any, selection: FeatureSelection, timestamp_field: str,
                   *, as_of_ingestion: bool) -> Any:
    """Spark labels (their columns checked by the caller) in, a Spark DataFrame out: every
    label row once, in order, its columns unchanged, then the features. Nothing is
    collected but a zero-row sample that types the keys the views leave untyped."""
    selections = selection.selections
    keys = selection.entity_columns
    key_types: dict[str, str] = {}
    for sel in selections:
        for k, t in (sel.view.entity_types or {}).items():
            key_types.setdefault(k, t)
    untyped = [k for k in keys if k not in key_types]
    if untyped:
        key_types.update(arrow_duck_types(parts.caches.scratch(), labels.select(*untyped).limit(0).toArrow()))
    return _engine(parts).training_frame(labels, selections, key_types, timestamp_field, as_of_ingestion=as_of_ingestion)


def _engine(parts: StoreParts) -> SparkOfflineStore:
    assert parts.spark is not None, "a Spark path taken on a DuckDB store"
    return parts.spark
