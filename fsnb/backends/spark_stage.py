"""What the Spark engine hands to the store's DuckDB connection: results of one row per
entity (or one entity's rows), staged as the temporary table ``fv__<view>`` so that the
callers' SQL (materialization, check_skew, the naive side of the leakage analysis, the
explorer's history) runs unchanged (docs/spark.md). The DuckDB engine's ``stage_*``
do nothing: its tables are there already."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fsnb.backends.duckdb_offline import OfflineStore
from fsnb.sqlnames import SEQ, offline_table

if TYPE_CHECKING:
    import duckdb

    from fsnb.definitions import FeatureView

_STAGED = "__fsnb_staged"


class SparkStaging:
    """A mixin of SparkOfflineStore."""

    def stored_columns(self, name: str) -> list[str]:
        raise NotImplementedError

    def stored_schema(self, name: str) -> pa.Schema | None:
        raise NotImplementedError

    def latest_per_entity(self, view: FeatureView, columns: list[str], *, start: datetime | None = None,
                          end: datetime | None = None, since_seq: int | None = None) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def entity_rows(self, view: FeatureView, key: dict[str, Any]) -> pa.Table | None:
        raise NotImplementedError

    def table_exists(self, con: duckdb.DuckDBPyConnection, name: str) -> bool:
        """Whether the view has a Delta table (as the DuckDB engine's: whether it has an
        offline table); what stage_* put in con exists exactly then."""
        return bool(self.stored_columns(name))

    # The staged table's columns, as the DuckDB engine reads its own.
    table_columns = staticmethod(OfflineStore.table_columns)

    def stage_latest(self, con: duckdb.DuckDBPyConnection, view: FeatureView, *,
                     start: datetime | None = None, end: datetime | None = None) -> None:
        """Each key's latest row of view (event time in [start, end]), computed by Spark,
        as ``fv__<view>`` of con (dropped first; not made when the view has no table).

        Columns: keys, event time, every stored feature, the created time, the ingestion order."""
        con.execute(f"DROP TABLE IF EXISTS temp.{offline_table(view.name)}")
        stored = self.stored_columns(view.name)
        if not stored:
            return
        wanted = [*view.feature_names, *([view.created_timestamp_field] if view.created_timestamp_field else []), SEQ]
        columns = [c for c in wanted if c in stored]
        batches = list(self.latest_per_entity(view, columns, start=start, end=end))
        if batches:
            table = pa.Table.from_batches(batches)
        else:
            schema = self.stored_schema(view.name)
            assert schema is not None
            names = list(dict.fromkeys([*view.entity_columns, view.timestamp_field, *columns]))
            table = pa.schema([schema.field(n) for n in names]).empty_table()
        _stage(con, view, table)

    def stage_entity(self, con: duckdb.DuckDBPyConnection, view: FeatureView, key: Mapping[str, Any]) -> None:
        """One entity's whole history of view (filtered in Spark) as ``fv__<view>`` of con:
        what the explorer's history chart reads."""
        con.execute(f"DROP TABLE IF EXISTS temp.{offline_table(view.name)}")
        table = self.entity_rows(view, dict(key))
        if table is not None:
            _stage(con, view, table)


def _stage(con: duckdb.DuckDBPyConnection, view: FeatureView, table: pa.Table) -> None:
    con.register(_STAGED, table)
    try:
        con.execute(f"CREATE TEMP TABLE {offline_table(view.name)} AS SELECT * FROM {_STAGED}")
    finally:
        con.unregister(_STAGED)
