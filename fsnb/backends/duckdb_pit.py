"""The point-in-time planner: SQL for "the value each label row could have seen".

Rules (DESIGN section 2): for a label (k, t) take the row of key k with the greatest
event time in [t - ttl, t]; ties go to the newest created time, then to the row
ingested last; with as_of_ingestion the row must also have been known at t.
The fast path is DuckDB's ASOF LEFT JOIN on a tie-free relation, then the TTL as a
filter on the one row it found (the latest row <= t is the only candidate).
"""

from __future__ import annotations

from typing import Any

from fsnb.definitions import FeatureView
from fsnb.selection import ViewSelection
from fsnb.sqlnames import INGESTED_AT, SEQ, offline_table, q, qlist
from fsnb.timeutil import duration_us

LABELS = "__fsnb_labels"
ROW = "__fsnb_row"
T = "__fsnb_t"




def label_cte(selections: list[ViewSelection], key_types: dict[str, str]) -> str:
    keys = ", ".join(f"CAST({q(k)} AS {t}) AS {q(k)}" for k, t in key_types.items())
    # Nanoseconds: a label time is compared exactly, whatever its unit (DESIGN section 2).
    return f"SELECT {ROW}, CAST({T} AS TIMESTAMPTZ_NS) AS {T}{', ' if keys else ''}{keys} FROM {LABELS}"


def source_sql(sel: ViewSelection) -> str:
    """One row per (key, event time) of the view: the tie winner."""
    view = sel.view
    cols = qlist(dict.fromkeys([*view.entity_columns, view.timestamp_field, *sel.features]))
    table = offline_table(view.name)
    if not sel.has_ties:
        return f"SELECT {cols} FROM {table}"
    part = qlist([*view.entity_columns, view.timestamp_field])
    return f"SELECT {cols} FROM {table} QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {tie_order(view)}) = 1"


def tie_order(view: FeatureView, alias: str = "") -> str:
    parts = []
    if view.created_timestamp_field:
        parts.append(f"{alias}{q(view.created_timestamp_field)} DESC")
    parts.append(f"{alias}{q(SEQ)} DESC")
    return ", ".join(parts)


def _within_ttl(alias: str, view: FeatureView, expr: str) -> str:
    """expr when the joined row is inside the view's TTL window, else NULL."""
    micros = duration_us(view.ttl)
    if micros is None:
        return expr
    ts = f"{alias}.{q(view.timestamp_field)}"
    return f"CASE WHEN {ts} >= l.{T} - to_microseconds({micros}::BIGINT) THEN {expr} END"


def point_in_time_sql(
    selections: list[ViewSelection],
    key_types: dict[str, str],
    *,
    as_of_ingestion: bool = False,
    with_event_times: bool = False,
) -> str:
    """SELECT <row id>, <features...> for every label row, ordered by row id."""
    ctes = [f"l AS ({label_cte(selections, key_types)})"]
    outputs = [f"l.{ROW}"]
    joins = []
    for i, sel in enumerate(selections):
        alias = f"f{i}"
        view = sel.view
        types = view.feature_types
        if not sel.has_table:
            for f, out in zip(sel.features, sel.output_names, strict=True):
                outputs.append(f"CAST(NULL AS {types.get(f) or 'VARCHAR'}) AS {q(out)}")
            if with_event_times:
                outputs.append(f"CAST(NULL AS TIMESTAMPTZ_NS) AS {q(f'__fsnb_ts_{i}')}")
            continue
        if as_of_ingestion:
            ctes.append(f"{alias} AS ({_as_of_ingestion_sql(sel, i)})")
            joins.append(f"LEFT JOIN {alias} ON {alias}.{ROW} = l.{ROW}")
        else:
            ctes.append(f"{alias} AS ({source_sql(sel)})")
            on = " AND ".join(
                [f"l.{q(k)} = {alias}.{q(k)}" for k in view.entity_columns]
                + [f"l.{T} >= {alias}.{q(view.timestamp_field)}"]
            )
            joins.append(f"ASOF LEFT JOIN {alias} ON {on}")
        for f, out in zip(sel.features, sel.output_names, strict=True):
            outputs.append(f"{_within_ttl(alias, view, f'{alias}.{q(f)}')} AS {q(out)}")
        if with_event_times:
            ts = f"{alias}.{q(view.timestamp_field)}"
            outputs.append(f"{_within_ttl(alias, view, ts)} AS {q(f'__fsnb_ts_{i}')}")
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(outputs)} FROM l {' '.join(joins)} ORDER BY l.{ROW}"
    )


def _as_of_ingestion_sql(sel: ViewSelection, i: int) -> str:
    """Per label row, the best row that existed *and was known* at the label time.

    A range join: the known-at-t condition depends on t, so no ASOF shortcut applies.
    """
    view = sel.view
    known = q(view.created_timestamp_field) if view.created_timestamp_field else q(INGESTED_AT)
    on = " AND ".join(
        [f"l.{q(k)} = r.{q(k)}" for k in view.entity_columns]
        + [f"r.{q(view.timestamp_field)} <= l.{T}", f"r.{known} <= l.{T}"]
    )
    micros = duration_us(view.ttl)
    if micros is not None:
        on += f" AND r.{q(view.timestamp_field)} >= l.{T} - to_microseconds({micros}::BIGINT)"
    cols = qlist(dict.fromkeys([view.timestamp_field, *sel.features]), "r.")
    order = f"r.{q(view.timestamp_field)} DESC, {tie_order(view, 'r.')}"
    return (
        f"SELECT l.{ROW}, {cols} FROM l JOIN {offline_table(view.name)} r ON {on} "
        f"QUALIFY row_number() OVER (PARTITION BY l.{ROW} ORDER BY {order}) = 1"
    )


def latest_per_entity_sql(
    view: FeatureView,
    columns: list[str],
    *,
    where: str = "",
    extra: str = "",
) -> str:
    """Each key's row with the greatest event time (ties: newest created, last ingested)."""
    cols = qlist(dict.fromkeys([*view.entity_columns, view.timestamp_field, *columns]))
    order = f"{q(view.timestamp_field)} DESC, {tie_order(view)}"
    part = qlist(view.entity_columns)
    where_sql = f" WHERE {where}" if where else ""
    return (
        f"SELECT {cols}{', ' + extra if extra else ''} FROM {offline_table(view.name)}{where_sql} "
        f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {order}) = 1"
    )


def latest_per_entity_filter(
    view: FeatureView,
    *,
    start: Any = None,
    end: Any = None,
    since_seq: int | None = None,
    after: Any = None,
) -> tuple[str, list[Any]]:
    """The WHERE of a latest-per-entity query and its parameters: event time in
    [start, end]; with since_seq, only rows ingested at or after that sequence or whose
    event time is after ``after`` (what an incremental materialization has not seen)."""
    ts = q(view.timestamp_field)
    conditions: list[str] = []
    params: list[Any] = []
    if end is not None:
        conditions.append(f"{ts} <= ?")
        params.append(end)
    if start is not None:
        conditions.append(f"{ts} >= ?")
        params.append(start)
    if since_seq is not None:
        conditions.append(f"({q(SEQ)} >= ? OR {ts} > ?)" if after is not None else f"{q(SEQ)} >= ?")
        params.extend([since_seq, after] if after is not None else [since_seq])
    return " AND ".join(conditions), params

