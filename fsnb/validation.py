"""Check a batch of rows against a feature view before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from fsnb import types
from fsnb.definitions import FeatureView
from fsnb.errors import Hint, InvalidData, InvalidDefinition, SchemaMismatch
from fsnb.sqlnames import q
from fsnb.timeutil import NS_RANGE, is_ns, outside_ns_range

# What every consumer of a batch can hold, checked here once so that nothing is
# written (and no log entry appended) that one of them would refuse later:
# - fsnb's own columns start with "_fsnb"/"__fsnb" in the offline table, the online
#   table and the SQL fsnb builds, so no user column may (SQLite and DuckDB compare
#   names without case, so neither may "_FSNB_TS");
# - SQLite and DuckDB take "X" and "x" for the same column;
# - an online SQLite table holds at most 2,000 columns (SQLITE_MAX_COLUMN): the keys,
#   the three system columns and the features (Redis: the upsert script passes two
#   values per feature, well within Lua's limit at this size);
# - SQLite integers are 64-bit, so an online feature or any key of an unsigned or
#   128-bit integer type must fit in BIGINT.
RESERVED = re.compile(r"^_+fsnb", re.IGNORECASE)
MAX_COLUMNS = 2000
_ONLINE_SYSTEM_NAMES = ("_fsnb_ts", "_fsnb_created", "_fsnb_seq")  # event time, created time, sequence
ONLINE_SYSTEM_COLUMNS = len(_ONLINE_SYSTEM_NAMES)
MAX_NAME_LENGTH = 255
_WIDE_INTS = {"UBIGINT", "HUGEINT", "UHUGEINT"}


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


def check_column_names(where: str, columns: Iterable[str], error: type[Exception] = SchemaMismatch) -> None:
    """Names every store can hold: not empty, no control characters, not fsnb's own
    (``_fsnb...``), no two equal but for case; ``where`` names their origin."""
    seen: dict[str, str] = {}
    for col in columns:
        if not isinstance(col, str) or not col or any(ord(ch) < 32 for ch in col):
            msg = f"{where} has a column named {col!r}; give every column a non-empty name without control characters"
            raise error(msg)
        if len(col) > MAX_NAME_LENGTH:
            msg = f"{where} has a column name of {len(col)} characters ({col[:20]}...); use at most {MAX_NAME_LENGTH}"
            raise error(msg)
        if RESERVED.match(col):
            msg = f"column '{col}' of {where} is reserved: names starting with '_fsnb' are fsnb's own; rename it"
            raise error(msg)
        other = seen.setdefault(col.lower(), col)
        if other != col:
            msg = f"{where} has columns '{other}' and '{col}', which the stores take for the same name; rename one"
            raise error(msg)


def check_view(view: FeatureView, online_columns: Iterable[str] = ()) -> None:
    """What every store can hold of a definition: its names and, if online, its width
    (online_columns: the columns the view's online table already has, since a new
    version adds its new features to them)."""
    where = f"feature view '{view.name}'"
    check_column_names(where, [*view.system_columns, *view.feature_names], InvalidDefinition)
    if view.online:
        own = {*view.entity_columns, *_ONLINE_SYSTEM_NAMES, *view.feature_names}
        width = len(own | set(online_columns))
        if width > MAX_COLUMNS:
            most = MAX_COLUMNS - ONLINE_SYSTEM_COLUMNS - len(view.entity_columns)
            kept = width - len(own)
            earlier = f" (with {kept} kept from earlier versions)" if kept else ""
            msg = (
                f"{where} has {width - ONLINE_SYSTEM_COLUMNS - len(view.entity_columns)} online features{earlier}; "
                f"an online view holds at most {most}; split it into several views, register it with "
                "online=False, or delete it and register it anew"
            )
            raise InvalidDefinition(msg)


def check_batch(con: duckdb.DuckDBPyConnection, view: FeatureView, table: pa.Table) -> CheckedBatch:
    """Validate table against view; raise a one-line error naming the fix."""
    name = view.name
    if table.num_rows == 0:
        msg = f"no rows to ingest into '{name}'; the data is empty"
        raise InvalidData(msg)
    columns = list(table.column_names)
    check_column_names(f"the data for '{name}'", columns)
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
            msg = f"missing {role} column '{time_col}' for '{name}' (data has: {_show(columns)})"
            argument = f"{role.replace(' ', '_')}_field"  # timestamp_field, created_timestamp_field
            raise SchemaMismatch(msg, hint=Hint(argument, "<its time column>", before="add it or "))
    duck = arrow_duck_types(con, table)
    for col in filter(None, (view.timestamp_field, view.created_timestamp_field)):
        if not types.is_time(duck[col]):
            msg = (
                f"column '{col}' is {duck[col]}, not a date/time; cast it first, "
                f"e.g. CAST({col} AS TIMESTAMP) in SQL or pl.col('{col}').str.to_datetime() in polars"
            )
            raise InvalidData(msg)
        _check_ns_range(table, col, f"'{name}'")

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
    if not features and not view.aggregations:  # hook: count(*) needs no event column
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
        elif not types.storable_as(duck[f], registered) or (is_ns(duck[f]) and types.is_time(registered) and not is_ns(registered)):
            # (nanosecond times into a microsecond column would be rounded)
            msg = f"feature '{f}' is {duck[f]} but '{name}' stores it as {registered}; cast it or register a new version with the new type"
            raise SchemaMismatch(msg)
        else:
            if is_ns(registered):
                _check_ns_range(table, f, f"'{name}'")
            feature_types[f] = registered

    checked = view.with_schema(entity_types, feature_types)
    try:
        check_view(checked)
    except InvalidDefinition as exc:
        raise SchemaMismatch(str(exc)) from None
    _check_nulls(con, view, table)
    wide = [c for c in view.entity_columns if duck[c].upper() in _WIDE_INTS]
    if view.online:
        wide += [f for f in features if duck[f].upper() in _WIDE_INTS and types.family(feature_types[f]) == "int"]
    _check_bigint_range(con, view.name, table, wide)
    return CheckedBatch(table, checked, duck)


def _check_bigint_range(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, columns: list[str]) -> None:
    """Keys and online integers are stored as 64-bit integers: larger values are refused."""
    if not columns:
        return
    rel = con.from_arrow(table.select(columns))
    lo, hi = -(2**63), 2**63 - 1
    cond = " OR ".join(f"{q(c)} < {lo} OR {q(c)} > {hi}" for c in columns)
    (rows,) = rel.filter(cond).aggregate("count(*)").fetchall()[0]
    if rows:
        msg = (
            f"{rows} row(s) of the data for '{name}' have a value in {_show(columns)} outside the 64-bit integer range "
            "that keys and online features are stored in; cast the column to DOUBLE or VARCHAR"
        )
        raise InvalidData(msg)


def _check_ns_range(table: pa.Table, column: str, where: str) -> None:
    bad = outside_ns_range(table.column(column))
    if bad is not None:
        msg = f"column '{column}' has {bad}, outside the {NS_RANGE} that {where} stores (nanosecond times); drop or fix that row"
        raise InvalidData(msg)


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
