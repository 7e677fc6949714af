"""The SQL of the leakage analysis (fsnb/leakage.py): the naive latest-record join per
label row, its comparison with the point-in-time rows, and the per-feature summary.
Identifiers are quoted (fsnb.sqlnames.q), text literals escaped."""

from __future__ import annotations

from fsnb.backends.duckdb_pit import ROW, T, latest_per_entity_sql
from fsnb.leakage_columns import (
    HORIZON,
    LATE,
    LEAKED,
    NAIVE,
    NAIVE_TIME,
    PIT_TIME,
    ExplainedFeature,
)
from fsnb.selection import ViewSelection
from fsnb.sqlnames import q

INPUT = "__fsnb_leak_in"
RESULT = "__fsnb_leak"
NAIVE_TABLE = "__fsnb_leak_naive"
LABEL = "__fsnb_label"
CREATED = "__fsnb_created_{}"
EVENT_TS = "__fsnb_ts_{}"

def key_types(selections: list[ViewSelection]) -> dict[str, str]:
    types: dict[str, str] = {}
    for sel in selections:
        for k in sel.view.entity_columns:
            registered = (sel.view.entity_types or {}).get(k)
            if registered:
                types.setdefault(k, registered)
    return types


def row_columns(name: str) -> list[str]:
    return [name + s for s in ("", NAIVE, LEAKED, PIT_TIME, NAIVE_TIME, HORIZON, LATE)]


def comparison_sql(
    selections: list[ViewSelection],
    explained: list[ExplainedFeature],
    keys: list[str],
    key_types: dict[str, str],
    stored: set[str],
    has_label: bool,
    relations: dict[int, str] | None = None,
) -> tuple[str, str]:
    """Two queries: the naive rows per label row (narrow, in label order), then one row
    per label row with naive value/time, leaked, horizon and late flag per feature;
    stored: the views that have an offline table; relations: selection index -> a relation
    registered on the connection that stands for its naive rows (aggregation views).

    The second pastes the first next to the planner's output by position (both are in
    label order), so the wide result is never sorted.
    """
    casts = [f"CAST({q(k)} AS {t}) AS {q(k)}" for k, t in key_types.items() if k in keys]
    casts.append(f"CAST({T} AS TIMESTAMPTZ_NS) AS {T}")
    p = f"p AS (SELECT * REPLACE ({', '.join(casts)}) FROM {INPUT})"
    ctes, joins, naive_cols = [p], [], []
    by_view = {sel.view.name: (i, sel) for i, sel in enumerate(selections)}
    for i, sel in enumerate(selections):
        if sel.view.name in stored:
            real = [f for f in sel.features if f != sel.view.created_timestamp_field]
            source = f"SELECT * FROM {relations[i]}" if relations and i in relations else latest_per_entity_sql(sel.view, real)
            ctes.append(f"n{i} AS ({source})")
            on = " AND ".join(f"p.{q(k)} = n{i}.{q(k)}" for k in sel.view.entity_columns)
            joins.append(f"LEFT JOIN n{i} ON {on}")
            naive_cols.append(f"n{i}.{q(sel.view.timestamp_field)} AS {q(f'__fsnb_nts_{i}')}")
            naive_cols += [f"n{i}.{q(f)} AS {q(f'__fsnb_nv_{i}_{f}')}" for f in real]
    naive_sql = (
        f"WITH {', '.join(ctes)} SELECT {', '.join(naive_cols) or 'NULL AS __fsnb_none'} "
        f"FROM p {' '.join(joins)} ORDER BY p.{ROW}"
    )
    outputs = [f"p.{ROW}", f"p.{T}"] + ([f"p.{LABEL}"] if has_label else [])
    for f in explained:
        i, sel = by_view[f.view.name]
        view = f.view
        pit_ts = f"p.{q(EVENT_TS.format(i))}"
        if view.name in stored:
            naive, naive_ts = f"x.{q(f'__fsnb_nv_{i}_{f.feature}')}", f"x.{q(f'__fsnb_nts_{i}')}"
        else:
            naive, naive_ts = f"CAST(NULL AS {view.feature_types.get(f.feature) or 'VARCHAR'})", "CAST(NULL AS TIMESTAMPTZ_NS)"
        leaked = f"coalesce({naive_ts} > p.{T}, false)"
        if view.created_timestamp_field:
            late = f"coalesce(p.{q(CREATED.format(i))} > p.{T}, false)"
        else:
            late = "CAST(NULL AS BOOLEAN)"
        outputs += [
            f"p.{q(f.name)} AS {q(f.name)}",
            f"{naive} AS {q(f.name + NAIVE)}",
            f"{leaked} AS {q(f.name + LEAKED)}",
            f"{pit_ts} AS {q(f.name + PIT_TIME)}",
            f"{naive_ts} AS {q(f.name + NAIVE_TIME)}",
            f"CASE WHEN {leaked} THEN epoch_ns(CAST({naive_ts} AS TIMESTAMPTZ_NS)) - epoch_ns(p.{T}) END AS {q(f.name + HORIZON)}",
            f"{late} AS {q(f.name + LATE)}",
        ]
    compare_sql = f"WITH {p} SELECT {', '.join(outputs)} FROM p POSITIONAL JOIN {NAIVE_TABLE} x"
    return naive_sql, compare_sql


def summary_sql(explained: list[ExplainedFeature], metric: str | None) -> str:
    parts = []
    for f in explained:
        c = f.name
        leaked, horizon, late = q(c + LEAKED), q(c + HORIZON), q(c + LATE)
        late_rows = f"count(*) FILTER ({late})" if f.view.created_timestamp_field else "CAST(NULL AS BIGINT)"
        if metric and f.numeric:
            naive_metric, pit_metric = metric_sql(c + NAIVE, metric), metric_sql(c, metric)
        else:
            naive_metric = pit_metric = "CAST(NULL AS DOUBLE)"
        parts.append(
            f"SELECT {literal(c)} AS feature, {literal(f.view.name)} AS view, count(*) AS rows, "
            f"count(*) FILTER ({leaked}) AS leaky_rows, "
            f"coalesce(count(*) FILTER ({leaked}) / nullif(count(*), 0), 0.0) AS leak_rate, "
            f"median({horizon}) AS median_horizon, max({horizon}) AS max_horizon, "
            f"{late_rows} AS late_rows, "
            f"count(*) FILTER ({leaked} AND {q(c + NAIVE)} IS DISTINCT FROM {q(c)}) AS changed_rows, "
            f"{literal(metric) if metric else 'CAST(NULL AS VARCHAR)'} AS metric, "
            f"({naive_metric}) AS naive_metric, ({pit_metric}) AS pit_metric "
            f"FROM {RESULT}"
        )
    summary = " UNION ALL ".join(f"SELECT * FROM ({p})" for p in parts)
    return (
        f"SELECT *, CAST(naive_metric - pit_metric AS DOUBLE) AS inflation FROM ({summary})"
    )


def metric_sql(column: str, metric: str) -> str:
    x, y = f"CAST({q(column)} AS DOUBLE)", f"CAST({LABEL} AS DOUBLE)"
    if metric == "abs_pearson":
        return f"SELECT abs(corr({x}, {y})) FROM {RESULT}"
    # ROC AUC from counts per distinct value (ties count one half), so no global sort
    # of the label rows is needed; reported as max(AUC, 1 - AUC): the ranking power
    # of the feature whichever way it points.
    return (
        f"SELECT greatest(a, 1 - a) FROM ("
        f"SELECT CASE WHEN sum(pos) > 0 AND sum(neg) > 0 "
        f"THEN sum(pos * (neg_below + neg / 2.0)) / (sum(pos) * sum(neg)) END AS a FROM ("
        f"SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS neg_below FROM ("
        f"SELECT {x} AS v, count(*) FILTER ({y} = 1) AS pos, count(*) FILTER ({y} = 0) AS neg "
        f"FROM {RESULT} WHERE {q(column)} IS NOT NULL AND {LABEL} IS NOT NULL GROUP BY 1)))"
    )


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
