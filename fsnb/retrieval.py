"""Offline retrieval: label rows in, the point-in-time features of each out, in input
order (docs/architecture.md, "Point-in-time rules"). The checks live here; the SQL runs in
the offline backend (``point_in_time``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from fsnb import aggregation_views, offline_engine, types
from fsnb.backends.duckdb_pit import ROW, T
from fsnb.errors import Hint, InvalidData, InvalidDefinition, SchemaMismatch, one_line
from fsnb.sources import to_arrow
from fsnb.timeutil import NS_RANGE, outside_ns_range

if TYPE_CHECKING:
    from fsnb.backends.duckdb_offline import OfflineStore
    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.definitions import FeatureView
    from fsnb.parts import StoreParts
    from fsnb.registry import Registry
    from fsnb.selection import FeatureSelection, ViewSelection


def feature_view(registry: Registry, name: str, version: int | None) -> FeatureView:
    """A view's newest definition, or the given version of it."""
    if version is None:
        return registry.latest(name).view
    for v in registry.versions(name):
        if v.version == version:
            return v.view
    known = [str(v.version) for v in registry.versions(name)]
    msg = f"feature view '{name}' has no version {version}; it has {', '.join(known)}"
    raise InvalidDefinition(msg)


def read(parts: StoreParts, view: FeatureView, start: Any, end: Any) -> pl.DataFrame:
    """A view's offline history (optionally between two event times), oldest first."""
    from fsnb.timeutil import utc_ns

    table = offline_engine.read(
        parts,
        view,
        utc_ns(start, "start") if start is not None else None,
        utc_ns(end, "end") if end is not None else None,
    )
    return to_polars(table)


def spark_historical_features(
    parts: StoreParts, labels: Any, selection: FeatureSelection, timestamp_field: str, *, as_of_ingestion: bool
) -> Any:
    """Spark labels in, a Spark DataFrame out. On a Spark store the join runs in Spark and
    nothing is collected; on a DuckDB store the labels come to this machine (as all of the
    embedded engine's data does), and the answer goes back to the labels' session."""
    if parts.spark is not None:
        check_label_columns(list(labels.columns), selection, timestamp_field)
        return offline_engine.training_frame(parts, labels, selection, timestamp_field, as_of_ingestion=as_of_ingestion)
    frame = historical_features(parts.offline, labels_frame(labels), selection, timestamp_field, as_of_ingestion=as_of_ingestion)
    return labels.sparkSession.createDataFrame(frame.to_arrow())


def labels_frame(entity_df: Any) -> pl.DataFrame:
    """The labels as a polars DataFrame, their columns unchanged."""
    if isinstance(entity_df, pl.DataFrame):
        return entity_df
    if isinstance(entity_df, pl.LazyFrame):
        try:
            return entity_df.collect()
        except pl.exceptions.PolarsError as exc:
            msg = f"cannot collect the labels LazyFrame: {one_line(exc)}"
            raise InvalidData(msg) from None
    # Not to_polars: label columns pass through unchanged, time zone included.
    frame = pl.from_arrow(to_arrow(entity_df))
    assert isinstance(frame, pl.DataFrame)
    return frame


def to_polars(table: pa.Table) -> pl.DataFrame:
    """Arrow to polars, with DuckDB's 'Etc/UTC' time zones written as 'UTC'."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    fixes = [
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC")
    ]
    return frame.with_columns(fixes) if fixes else frame


def check_label_columns(columns: list[str], selection: FeatureSelection, timestamp_field: str) -> None:
    """The labels' columns hold the time and every key, and no feature's output name."""
    clash = [n for n in selection.output_names if n in columns]
    if clash:
        msg = f"feature '{clash[0]}' has the name of a label column"
        raise InvalidDefinition(msg, hint=Hint("full_feature_names", "True", before="rename the column or "))
    keys = selection.entity_columns
    cols = columns
    shown = ", ".join(cols[:12])
    if timestamp_field not in cols:
        msg = f"labels have no timestamp column '{timestamp_field}' (they have: {shown})"
        raise SchemaMismatch(msg, hint=Hint("timestamp_field", "<your time column>"))
    for k in keys:
        if k not in cols:
            msg = f"labels lack the entity column '{k}' (they have: {shown}); add it to join these features"
            raise SchemaMismatch(msg)


def point_in_time(
    offline: OfflineStore | SparkOfflineStore,
    labels: pl.DataFrame,
    selection: FeatureSelection,
    timestamp_field: str,
    *,
    as_of_ingestion: bool = False,
    with_event_times: bool = False,
) -> pl.DataFrame:
    """The features (and optionally the chosen rows' event times) per label row:
    column __fsnb_row, then one column per output name (+ __fsnb_ts_{i})."""
    check_label_columns(labels.columns, selection, timestamp_field)
    keys = selection.entity_columns
    narrow = labels.select([*keys, timestamp_field]) if timestamp_field not in keys else labels.select(keys)
    arrow = narrow.to_arrow()
    if timestamp_field in keys:
        arrow = arrow.append_column(T, arrow.column(timestamp_field))
    else:
        arrow = arrow.rename_columns([*keys, T])
    arrow = arrow.append_column(ROW, pa.array(np.arange(labels.height, dtype=np.int64)))
    with offline.connect():  # one open of the store for the typing and the join, as one read
        return _checked_join(offline, labels, arrow, selection, timestamp_field, as_of_ingestion, with_event_times)


def _checked_join(
    offline: OfflineStore | SparkOfflineStore,
    labels: pl.DataFrame,
    arrow: pa.Table,
    selection: FeatureSelection,
    timestamp_field: str,
    as_of_ingestion: bool,
    with_event_times: bool,
) -> pl.DataFrame:
    keys = selection.entity_columns
    label_types = offline.label_types(arrow)
    if not types.is_time(label_types[T]):
        msg = f"label column '{timestamp_field}' is {label_types[T]}, not a date/time"
        before = "convert it (e.g. pl.col(...).str.to_datetime()) or "
        raise InvalidData(msg, hint=Hint("timestamp_field", "<your time column>", before=before))
    bad = outside_ns_range(arrow.column(T))
    if bad is not None:
        msg = f"label column '{timestamp_field}' has {bad}, outside {NS_RANGE} (times compare at nanoseconds); drop or fix that row"
        raise InvalidData(msg)
    key_types: dict[str, str] = {}
    for sel in selection.selections:
        for k in sel.view.entity_columns:
            registered = (sel.view.entity_types or {}).get(k)
            if registered is None:
                continue
            if not types.key_compatible(label_types[k], registered):
                msg = (
                    f"label column '{k}' is {label_types[k]} but '{sel.view.name}' keys it as {registered}; "
                    f"cast the label column to {registered}"
                )
                raise SchemaMismatch(msg)
            key_types.setdefault(k, registered)
    for k in keys:
        key_types.setdefault(k, label_types[k])
    nulls = labels.select(pl.col(timestamp_field).null_count()).item()
    if nulls:
        msg = f"{nulls} label row(s) have a null '{timestamp_field}'; drop or fill them"
        raise InvalidData(msg)
    def plain(sels: list[ViewSelection]) -> pa.Table:
        return offline.point_in_time(arrow, sels, key_types, as_of_ingestion=as_of_ingestion, with_event_times=with_event_times)

    if any(s.view.aggregations for s in selection.selections):  # hook: fsnb.aggregation_views
        return to_polars(aggregation_views.point_in_time(
            offline, arrow, selection.selections, key_types, as_of_ingestion=as_of_ingestion,
            with_event_times=with_event_times, plain=plain))
    return to_polars(plain(selection.selections))


def historical_features(
    offline: OfflineStore | SparkOfflineStore,
    labels: pl.DataFrame,
    selection: FeatureSelection,
    timestamp_field: str,
    *,
    as_of_ingestion: bool = False,
) -> pl.DataFrame:
    """The labels with the selected features beside them (what get_historical_features returns)."""
    joined = point_in_time(offline, labels, selection, timestamp_field, as_of_ingestion=as_of_ingestion)
    return labels.hstack(joined.drop(ROW))
