"""Check a batch of rows against a feature view before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from fsnb import types
from fsnb.definitions import FeatureView
from fsnb.errors import InvalidData, InvalidDefinition, SchemaMismatch
from fsnb.sqlnames import SYSTEM_COLUMNS, q


@dataclass(frozen=True)
class CheckedBatch:
    """A batch that passed validation, with the view's full schema."""

    table: pa.Table
    view: FeatureView  # with entity and feature types filled in
    column_types: dict[str, str]  # DuckDB type of each input column


def _show(columns: list[str]) -> str:
    return ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")


def arrow_duck_types(con: duckdb.DuckDBPyConnection, table: pa.Table) -> dict[str, str]:
    """Each column's DuckDB type, in parse_type's spelling (the only one pasted into SQL)."""
    rel = con.from_arrow(table.slice(0, 0) if table.num_rows else table)
    out = {}
    for name, duck_type in zip(rel.columns, rel.types, strict=True):
        try:
            out[name] = types.parse_type(str(duck_type))
        except InvalidDefinition as exc:
            msg = f"column '{name}' cannot be stored: {exc}; cast it first"
            raise SchemaMismatch(msg) from None
    return out


def check_batch(con: duckdb.DuckDBPyConnection, view: FeatureView, table: pa.Table) -> CheckedBatch:
    """Validate table against view; raise a one-line error naming the fix."""
    name = view.name
    if table.num_rows == 0:
        msg = f"no rows to ingest into '{name}'; the data is empty"
        raise InvalidData(msg)
    columns = list(table.column_names)
    clashes = [c for c in columns if c in SYSTEM_COLUMNS]
    if clashes:
        msg = f"column '{clashes[0]}' is reserved by fsnb; rename it"
        raise SchemaMismatch(msg)
    for col in view.entity_columns:
        if col not in columns:
            msg = f"missing entity column '{col}' for '{name}' (data has: {_show(columns)}); add it or change the view's entities"
            raise SchemaMismatch(msg)
    time_columns: tuple[tuple[str | None, str], ...] = (
        (view.timestamp_field, "timestamp"),
        (view.created_timestamp_field, "created timestamp"),
    )
    for time_col, role in time_columns:
        if time_col and time_col not in columns:
            msg = f"missing {role} column '{time_col}' for '{name}' (data has: {_show(columns)}); add it or change the view's {role.replace(' ', '_')} field"
            raise SchemaMismatch(msg)
    duck = arrow_duck_types(con, table)
    for col in filter(None, (view.timestamp_field, view.created_timestamp_field)):
        if not types.is_time(duck[col]):
            msg = (
                f"column '{col}' is {duck[col]}, not a date/time; cast it first, "
                f"e.g. CAST({col} AS TIMESTAMP) in SQL or pl.col('{col}').str.to_datetime() in polars"
            )
            raise InvalidData(msg)

    system = set(view.system_columns)
    data_features = [c for c in columns if c not in system]
    if view.features is None:
        features = data_features
    else:
        features = list(view.feature_names)
        missing = [f for f in features if f not in columns]
        if missing:
            msg = f"data for '{name}' lacks feature column(s) {_show(missing)}; add them or register a new version without them"
            raise SchemaMismatch(msg)
        extra = [c for c in data_features if c not in features]
        if extra:
            msg = f"data for '{name}' has column(s) {_show(extra)} that the view does not define; drop them or add them to the view's features"
            raise SchemaMismatch(msg)
    if not features:
        msg = f"data for '{name}' has no feature columns besides keys and timestamps"
        raise SchemaMismatch(msg)

    # Key types: fixed by the first data; later batches must agree (42 never equals '42').
    entity_types = dict(view.entity_types or {})
    for col in view.entity_columns:
        registered = entity_types.get(col)
        if types.family(duck[col]) not in ("int", "string", "time", "bool"):
            msg = f"entity column '{col}' is {duck[col]}; keys must be integers, strings, booleans or dates"
            raise SchemaMismatch(msg)
        if registered is None:
            entity_types[col] = duck[col] if types.family(duck[col]) != "int" else "BIGINT"
        elif not types.key_compatible(duck[col], registered):
            msg = f"entity column '{col}' is {duck[col]} but '{name}' stores it as {registered}; cast it to {registered}"
            raise SchemaMismatch(msg)

    declared = view.feature_types
    feature_types: dict[str, str] = {}
    for f in features:
        registered = declared.get(f)
        if registered is None:
            feature_types[f] = duck[f] if duck[f] != '"NULL"' else "VARCHAR"
        elif not types.storable_as(duck[f], registered):
            msg = f"feature '{f}' is {duck[f]} but '{name}' stores it as {registered}; cast it or register a new version with the new type"
            raise SchemaMismatch(msg)
        else:
            feature_types[f] = registered

    _check_nulls(con, view, table)
    return CheckedBatch(table, view.with_schema(entity_types, feature_types), duck)


def _check_nulls(con: duckdb.DuckDBPyConnection, view: FeatureView, table: pa.Table) -> None:
    required = list(view.system_columns)
    counts = {}
    for col in required:
        nulls = table.column(col).null_count
        if nulls:
            counts[col] = nulls
    if counts:
        rel = con.from_arrow(table)
        cond = " OR ".join(f"{q(c)} IS NULL" for c in counts)
        (rows,) = rel.filter(cond).aggregate("count(*)").fetchall()[0]
        detail = ", ".join(f"{c}: {n}" for c, n in counts.items())
        msg = f"{rows} row(s) have a null entity key or timestamp ({detail}); drop or fill them before ingesting into '{view.name}'"
        raise InvalidData(msg)
