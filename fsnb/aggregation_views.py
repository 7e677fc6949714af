"""Views with window aggregations, wired into the store (docs/architecture.md).

A view with ``aggregations`` ingests raw events: its ``features`` are the event
columns it stores (given, or inferred at first ingest as for any view), and the
features it serves are the aggregations' names. Everything here is called from small
hooks in the store's modules ("if the view has aggregations: call X"):

- definitions (in fsnb.aggregation, which definitions.py may import without a circle):
  ``check_view_aggregations`` (run whenever a FeatureView is built, so again when the
  first ingest fixes the column types), ``aggregations_from_dict``, ``describe``;
- selection: ``served_features`` (in fsnb.aggregation, as is the display's ``schema_rows``);
- offline retrieval: ``point_in_time`` (ordinary views through the usual plan, the
  aggregation views through the engine's ``aggregate``: fsnb.aggregation_sql on DuckDB,
  fsnb.backends.spark_agg on Spark; merged in label order);
- online: ``reader`` (reads over (now - window, now] from the online SQLite file),
  ``materialize``, ``push_online`` and ``check_skew``.

Callers hand in the pieces used (an offline backend, an online backend, a DuckDB
connection), never the FeatureStore; nothing here imports the modules that call it.
Where the engines differ (the DuckDB one keeps each view as a table of its connection,
the Spark one does not: ``offline.duckdb_tables``), the Spark engine computes in Spark
and the DuckDB connection only holds small results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fsnb.aggregation import Aggregation, served_features, served_types
from fsnb.errors import InvalidDefinition

if TYPE_CHECKING:
    from fsnb.definitions import FeatureView
    from fsnb.online_windows import WindowStore
    from fsnb.selection import ViewSelection

SQLITE_ONLY = "aggregation views need the SQLite online store for now; open the store with online='sqlite'"
_LATEST = "fsnb_latest_event_time"  # the internal max(event time) asked for leakage's event times


# -- selection -------------------------------------------------------------------------
def _by_name(view: FeatureView, names: Sequence[str]) -> list[Aggregation]:
    found = {a.name: a for a in view.aggregations or ()}
    return [found[n] for n in names]


# -- offline ---------------------------------------------------------------------------
def point_in_time(
    offline: Any,
    labels: pa.Table,
    selections: Sequence[ViewSelection],
    key_types: Mapping[str, str],
    *,
    as_of_ingestion: bool,
    with_event_times: bool,
    plain: Callable[[list[ViewSelection]], pa.Table],
) -> pa.Table:
    """What the point-in-time plan returns (row id, each selection's outputs and, with
    with_event_times, ``__fsnb_ts_{i}``) when some selections are aggregation views.

    plain runs the ordinary plan on the other selections. An aggregation view's event
    time is its latest event inside the longest window asked (null when it is empty).
    """
    ordinary = [s for s in selections if not s.view.aggregations]
    base = plain(ordinary) if ordinary else None
    return _merged(offline, base, labels, selections, key_types, as_of_ingestion, with_event_times)


def _merged(
    offline: Any, base: pa.Table | None, labels: pa.Table, selections: Sequence[ViewSelection],
    key_types: Mapping[str, str], as_of_ingestion: bool, with_event_times: bool,
) -> pa.Table:
    """Each aggregation view's columns from the engine's ``aggregate``, between the others'."""
    from fsnb.aggregation_sql import ROW

    columns: list[pa.ChunkedArray | pa.Array] = [labels.column(ROW) if base is None else base.column(ROW)]
    names = [ROW]
    j = 0
    for i, sel in enumerate(selections):
        if not sel.view.aggregations:
            columns += [base.column(out) for out in sel.output_names]  # type: ignore[union-attr]
            names += sel.output_names
            if with_event_times:
                columns.append(base.column(f"__fsnb_ts_{j}"))  # type: ignore[union-attr]
                names.append(f"__fsnb_ts_{i}")
            j += 1
            continue
        served = set(served_features(sel.view))
        # Anything else asked (leakage's created time) has no value for a window of events.
        aggs = _by_name(sel.view, [f for f in sel.features if f in served])
        asked = len(aggs)
        if with_event_times:
            longest = max(aggs, key=lambda a: a.window)
            aggs.append(Aggregation(sel.view.timestamp_field, "max", longest.window, name=_unused(sel.view)))
        narrow = labels.select([ROW, "__fsnb_t", *sel.view.entity_columns])
        got = offline.aggregate(narrow, sel.view, aggs, dict(key_types), as_of_ingestion=as_of_ingestion)
        values = {a.name: got.column(a.name) for a in aggs[:asked]}
        columns += [values[f] if f in values else pa.nulls(labels.num_rows, pa.timestamp("us", "UTC")) for f in sel.features]
        names += sel.output_names
        if with_event_times:
            columns.append(got.column(aggs[-1].name))
            names.append(f"__fsnb_ts_{i}")
    return pa.Table.from_arrays(columns, names=names)


def naive_relation(con: Any, view: FeatureView, features: Sequence[str], i: int, *, offline: Any) -> str:
    """What a naive join reads for an aggregation view: per key, each aggregation as of
    the key's latest event (time named as the view's timestamp). Registered on con (it
    lives as long as the connection); returns the relation's name.

    offline: the store's engine, holding con (the DuckDB engine reads con's own fv__
    table). On an engine without DuckDB tables (Spark) the engine computes the latest
    events; con only holds the result."""
    import numpy as np

    from fsnb.aggregation_sql import ROW, T
    from fsnb.sqlnames import offline_table, q, qlist

    keys = list(view.entity_columns)
    if offline.duckdb_tables:
        latest = con.sql(
            f"SELECT {qlist(keys)}, max({q(view.timestamp_field)}) AS {T} FROM {offline_table(view.name)} GROUP BY {qlist(keys)}"
        ).to_arrow_table()
    else:
        found = _latest_events(offline, view)
        latest = found if found is not None else pa.table({**{k: pa.nulls(0) for k in keys}, T: pa.nulls(0, pa.timestamp("us", "UTC"))})
    latest = latest.append_column(ROW, pa.array(np.arange(latest.num_rows, dtype=np.int64)))
    aggs = _by_name(view, [f for f in features if f in set(served_features(view))])
    key_types = dict(view.entity_types or {})
    got = offline.aggregate(latest, view, aggs, key_types)
    out = latest.select(keys).append_column(view.timestamp_field, latest.column(T))
    for agg in aggs:
        out = out.append_column(agg.name, got.column(agg.name))
    name = f"__fsnb_naive_agg_{i}"
    con.register(name, out)
    return name


def _latest_events(offline: Any, view: FeatureView) -> pa.Table | None:
    """Each key's latest event time (keys, __fsnb_t), computed by an engine without DuckDB
    tables (its latest_per_entity); None when the view has no table."""
    from fsnb.aggregation_sql import T

    stored = offline.stored_schema(view.name)
    if stored is None:
        return None
    names = [*view.entity_columns, view.timestamp_field]
    schema = pa.schema([stored.field(n) for n in names])
    table = pa.Table.from_batches(list(offline.latest_per_entity(view, [])), schema=schema)
    return table.rename_columns([*view.entity_columns, T])


def _unused(view: FeatureView) -> str:
    taken = {*served_features(view), *view.system_columns}
    name = _LATEST
    while name in taken:
        name += "_"
    return name


# -- online ----------------------------------------------------------------------------
def _windows(online: Any) -> WindowStore:
    from fsnb.backends.sqlite_online import OnlineStore
    from fsnb.online_windows import WindowStore

    if not isinstance(online, OnlineStore):
        raise InvalidDefinition(SQLITE_ONLY)
    return WindowStore(con=online.con)  # type: ignore[arg-type]  # a connection per thread, same interface


def check_online(online: Any, view: FeatureView) -> None:
    """Refuse an online aggregation view on a store whose online side is not SQLite (before anything is written)."""
    if view.aggregations and view.online:
        _windows(online)


class AggregationReader:
    """get_online_features' reader for an aggregation view: each aggregation over (now - window, now]."""

    exists = True  # a read of a view never materialized gives count 0 and nulls

    def __init__(self, online: Any, view: FeatureView, features: list[str], output_names: list[str]) -> None:
        self.windows = _windows(online)
        self.view = view
        self.features = features
        self.output_names = output_names
        self.aggs = _by_name(view, features)

    def read(self, key_columns: list[list[Any]], now: int) -> list[list[Any]]:
        keys = self.view.entity_columns
        out: list[list[Any]] = [[] for _ in self.aggs]
        for i in range(len(key_columns[0]) if key_columns else 0):
            entity = {k: col[i] for k, col in zip(keys, key_columns, strict=True)}
            values = self.windows.read(self.view, self.aggs, entity, now_us=now)
            for column, agg in zip(out, self.aggs, strict=True):
                column.append(values[agg.name])
        return out


def reader(online: Any, view: FeatureView, features: list[str], output_names: list[str]) -> AggregationReader:
    return AggregationReader(online, view, features, output_names)


def materialize(offline: Any, online: Any, view: FeatureView) -> int:
    """Make the view's online events exactly its offline events inside the longest window of now."""
    from fsnb.timeutil import now_us

    windows = _windows(online)
    if view.features is None or view.entity_types is None:
        return 0  # registered without data: nothing to copy yet
    aggs = list(view.aggregations or ())
    now = now_us()
    if not offline.duckdb_tables:
        return _materialize_staged(offline, windows, view, aggs, now)
    with offline.connect() as con:
        has = offline.table_exists(con, view.name)
        return windows.materialize(con if has else None, view, aggs, now_us=now)


def _materialize_staged(offline: Any, windows: WindowStore, view: FeatureView, aggs: list[Aggregation], now: int) -> int:
    """An engine without DuckDB tables (Spark): it reads the events inside the longest
    window of now, and the window store takes them from the store's DuckDB connection."""
    from datetime import timedelta

    start = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=now) - max(a.window for a in aggs)
    rows = offline.read(view, start=start)
    with offline.connect() as con:
        if rows.num_columns == 0:  # no table yet
            return windows.materialize(None, view, aggs, now_us=now)
        name = "__fsnb_window_events"
        con.register(name, rows)
        try:
            return windows.materialize(con, view, aggs, now_us=now, source=name)
        finally:
            con.unregister(name)


def push_online(online: Any, view: FeatureView, table: pa.Table) -> int:
    """Add a pushed batch's events to the view's online windows (inside the caller's transaction)."""
    from fsnb.timeutil import now_us

    windows = _windows(online)
    return windows.push(view, list(view.aggregations or ()), table.to_pylist(), now_us=now_us(), transaction=False)


def _close(a: Any, b: Any) -> bool:
    numbers = isinstance(a, float | int) and isinstance(b, float | int)
    if numbers and (isinstance(a, float) or isinstance(b, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def check_skew(
    offline: Any, online: Any, view: FeatureView, *, now_us: int | None = None
) -> tuple[datetime, int, int, Any]:
    """Every key's online aggregations against the offline ones at the same instant:
    (as of, keys compared, mismatches, details), what fsnb.sync.monitor's SkewReport holds.

    Keys: those with an event offline or online. Floats compare to 1e-9 (the two stores
    add in different orders); everything else exactly.
    """
    import polars as pl

    from fsnb.timeutil import now_us as clock

    now = clock() if now_us is None else now_us
    as_of = datetime.fromtimestamp(now / 1_000_000, timezone.utc)
    windows = _windows(online)
    aggs = list(view.aggregations or ())
    keys = list(view.entity_columns)
    offline_keys: list[tuple[Any, ...]] = []
    values: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    if view.schema_known:
        offline_keys, values = _offline_at(offline, view, aggs, now)
    online_keys: list[tuple[Any, ...]] = []
    from fsnb.online_windows import window_table
    from fsnb.sqlnames import qlist

    try:
        online_keys = [tuple(r) for r in online.con.execute(f"SELECT DISTINCT {qlist(keys)} FROM {window_table(view.name)}").fetchall()]
    except Exception as exc:  # no such table: nothing materialized or pushed yet
        if "no such table" not in str(exc):
            raise
    empty = tuple(0 if a.function == "count" else None for a in aggs)
    details: list[dict[str, Any]] = []
    every = list(dict.fromkeys([*offline_keys, *online_keys]))
    for key in every:
        got_online = windows.read(view, aggs, dict(zip(keys, key, strict=True)), now_us=now)
        on = tuple(got_online[a.name] for a in aggs)
        off = values.get(key, empty)
        if all(_close(a, b) for a, b in zip(on, off, strict=True)):
            continue
        details.append({**dict(zip(keys, key, strict=True)), "kind": "value", "online_event_time": None, "offline_event_time": None})
    schema = {**dict.fromkeys(keys, pl.String), "kind": pl.String}
    frame = pl.DataFrame(details) if details else pl.DataFrame(schema=schema)
    return as_of, len(every), len(details), frame


def _offline_at(offline: Any, view: FeatureView, aggs: list[Aggregation], now: int
                ) -> tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], tuple[Any, ...]]]:
    """The keys with an offline event, and each one's aggregations at now (the engine computes both)."""
    from fsnb.aggregation_sql import ROW, T
    from fsnb.sqlnames import offline_table, qlist

    keys = list(view.entity_columns)
    with offline.connect() if offline.duckdb_tables else nullcontext() as con:
        if con is None:  # an engine without DuckDB tables (Spark): its own latest events
            latest = _latest_events(offline, view)
            found = [] if latest is None else list(zip(*[latest.column(k).to_pylist() for k in keys], strict=True))
        elif offline.table_exists(con, view.name):
            found = [tuple(r) for r in con.execute(f"SELECT DISTINCT {qlist(keys)} FROM {offline_table(view.name)}").fetchall()]
        else:
            found = []
        if not found:
            return [], {}
        labels = pa.table({k: [r[i] for r in found] for i, k in enumerate(keys)})
        n = labels.num_rows
        labels = labels.append_column(T, pa.array([now] * n, pa.timestamp("us", "UTC")))
        labels = labels.append_column(ROW, pa.array(range(n), pa.int64()))
        got = offline.aggregate(labels, view, aggs, dict(view.entity_types or {})).to_pydict()
    return found, {key: tuple(got[a.name][i] for a in aggs) for i, key in enumerate(found)}


# -- display -----------------------------------------------------------------------------
def view_json(view: FeatureView) -> list[dict[str, Any]] | None:
    """The aggregations as the sidebar lists them (None for an ordinary view)."""
    if not view.aggregations:
        return None
    served = served_types(view)
    return [
        {"name": a.name, "function": a.function, "column": a.column, "window": a.window_text, "type": served.get(a.name)}
        for a in view.aggregations
    ]
