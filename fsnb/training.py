"""Training sets: one point-in-time join (with the chosen rows' event times) gives both the
frame get_historical_features returns and the leakage report of it (docs/architecture.md,
"Joins once")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from fsnb import leakage
from fsnb.retrieval import point_in_time

if TYPE_CHECKING:
    from fsnb.backends.duckdb_offline import OfflineStore
    from fsnb.backends.spark_offline import SparkOfflineStore
    from fsnb.leakage import LeakageReport
    from fsnb.selection import FeatureSelection


@dataclass
class TrainingSet:
    """A training set: ``frame`` (the labels with their point-in-time features) and
    ``report`` (what a naive latest-record join would have leaked; None without rows)."""

    frame: pl.DataFrame
    report: LeakageReport | None
    output_names: list[str]
    timestamp_field: str


def build(
    offline: OfflineStore | SparkOfflineStore,
    labels: pl.DataFrame,
    selection: FeatureSelection,
    *,
    timestamp_field: str,
    as_of_ingestion: bool = False,
    label: str | None = None,
) -> TrainingSet:
    """The frame and its leakage report from one join."""
    label = leakage.label_column(labels, selection.entity_columns, timestamp_field, label)
    joined = leakage.joined_selection(selection)
    with offline.connect():  # one open of the store for the join and the analysis
        pit = point_in_time(offline, labels, joined, timestamp_field, as_of_ingestion=as_of_ingestion, with_event_times=True)
        frame = labels.hstack(pit.select(selection.output_names))
        report = None
        if labels.height:
            report = leakage.analyze(offline, labels, joined, pit, timestamp_field=timestamp_field, label=label)
    return TrainingSet(frame, report, selection.output_names, timestamp_field)
