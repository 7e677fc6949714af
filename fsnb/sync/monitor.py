"""Watching the streaming path: freshness per view and online/offline skew.

``freshness`` reports, per view, the newest event time offline and online, the log's
end, each consumer's offset and lag, and the entries set aside; ``check_skew`` compares
every online vector with the offline value a training set would get now
(docs/architecture.md, "Streaming").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from fsnb import aggregation_views
from fsnb.backends.sqlite_online import encode_key_sql, encode_sql, epoch_us_sql
from fsnb.definitions import FeatureView
from fsnb.errors import InvalidDefinition
from fsnb.sqlnames import q
from fsnb.sync.log_state import OFFLINE, ONLINE, set_aside

if TYPE_CHECKING:
    from fsnb.backends.contracts import OnlineBackend
    from fsnb.parts import StoreParts


def _from_us(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, timezone.utc)


def _online_rows_now(online: OnlineBackend, view: FeatureView) -> list[tuple[Any, ...]]:
    """Every online row of the view as (keys..., ts_us, features...), through the online
    store's own interface (SQLite or Redis); features it lacks a column for are None."""
    columns = online.columns(view.name)
    if not columns:
        return []
    present = [f for f in view.feature_names if f in columns]
    if len(present) == len(view.feature_names):
        return online.dump(view)
    rows = online.dump(replace(view, features=present or None))
    nkeys = len(view.entity_columns) + 1
    where = {f: i for i, f in enumerate(present)}
    return [
        (*r[:nkeys], *(r[nkeys + where[f]] if f in where else None for f in view.feature_names)) for r in rows
    ]


def freshness(parts: StoreParts) -> pl.DataFrame:
    """Per view: newest event time offline and online, log end, each consumer's offset
    and lag, and how many of its entries a consumer set aside (see set_aside())."""
    log = parts.log
    passed_over: dict[str, int] = {}
    for record in set_aside(log):
        passed_over[str(record.get("view"))] = passed_over.get(str(record.get("view")), 0) + 1
    end = log.end_offset()
    committed = {c: log.committed(c) for c in (ONLINE, OFFLINE)}
    lag_by_view: dict[str, dict[str, int]] = {}
    for consumer, done in committed.items():
        for _, pending_view, _rows in log.pending(done):
            lag_by_view.setdefault(pending_view, {ONLINE: 0, OFFLINE: 0})[consumer] += 1
    views = [parts.registry.latest(n).view for n in parts.registry.names()]
    offline_latest: dict[str, datetime | None] = {}
    with parts.offline.connect() as con:
        for view in views:
            offline_latest[view.name] = parts.engine.latest_event_time(con, view)
    records = []
    for view in views:
        online_latest = _from_us(parts.online.latest_event_us(view.name)) if view.online else None
        lag = lag_by_view.get(view.name, {ONLINE: 0, OFFLINE: 0})
        records.append(
            {
                "view": view.name,
                "sync": view.sync,
                "offline_latest": offline_latest.get(view.name),
                "online_latest": online_latest,
                "last_push": _from_us(log.last_appended_us(view.name)),
                "log_end": end,
                "online_offset": committed[ONLINE],
                "offline_offset": committed[OFFLINE],
                "online_lag": lag[ONLINE] if view.online else None,
                "offline_lag": lag[OFFLINE],
                "set_aside": passed_over.get(view.name, 0),
            }
        )
    schema: dict[str, Any] = {
        "view": pl.String,
        "sync": pl.String,
        "offline_latest": pl.Datetime("us", "UTC"),
        "online_latest": pl.Datetime("us", "UTC"),
        "last_push": pl.Datetime("us", "UTC"),
        "log_end": pl.Int64,
        "online_offset": pl.Int64,
        "offline_offset": pl.Int64,
        "online_lag": pl.Int64,
        "offline_lag": pl.Int64,
        "set_aside": pl.Int64,
    }
    return pl.DataFrame(records, schema=schema)


@dataclass
class SkewReport:
    """Online vectors compared with the offline point-in-time value at ``as_of``."""

    view: str
    as_of: datetime
    keys: int  # keys compared (online or offline)
    mismatches: int
    details: pl.DataFrame  # one row per mismatching key: keys, kind, online/offline event time

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def __repr__(self) -> str:
        kinds = ""
        if self.mismatches:
            counts = self.details.group_by("kind").len().sort("kind").rows()
            kinds = " (" + ", ".join(f"{k}: {n}" for k, n in counts) + ")"
        return f"<SkewReport {self.view}: {self.mismatches} mismatches in {self.keys} keys{kinds}>"




def check_skew(parts: StoreParts, name: str) -> SkewReport:
    """Compare every online vector with the offline value a training set would get now.

    Per key: the offline row with the greatest event time not after now (ties as the
    point-in-time join breaks them) against the stored online row, event time and every
    feature, both encoded as the online store holds them. TTL is left out on purpose:
    it hides old values on both sides alike, so comparing the stored rows is stricter.
    """
    view = parts.registry.latest(name).view
    if not view.online:
        msg = f"feature view '{name}' is offline-only; it has no online values to compare"
        raise InvalidDefinition(msg)
    if view.aggregations:  # hook: fsnb.aggregation_views (windows compared at one instant)
        return SkewReport(name, *aggregation_views.check_skew(parts.engine, parts.online, view))
    as_of = datetime.now(timezone.utc)
    keys = list(view.entity_columns)
    feats = list(view.feature_names)
    offline: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    if view.schema_known:
        feature_types = view.feature_types
        backend = parts.offline
        with backend.connect() as con:
            parts.engine.stage_latest(con, view, end=as_of)  # Spark: each key's latest row, computed there
            if backend.table_exists(con, name):
                existing = backend.table_columns(con, name)
                present = [f for f in feats if f in existing]
                select = [
                    *(encode_key_sql(k, (view.entity_types or {}).get(k)) for k in keys),
                    epoch_us_sql(q(view.timestamp_field), existing[view.timestamp_field]),
                    *(encode_sql(f, feature_types.get(f) or "VARCHAR", nan=True) if f in present else "NULL" for f in feats),
                ]
                created = [view.created_timestamp_field] if view.created_timestamp_field else []
                cursor = backend.latest_per_entity(con, view, [*present, *created], end=as_of, select=select)
                for row in cursor.fetchall():
                    offline[tuple(row[: len(keys)])] = tuple(row[len(keys) :])
    online = {tuple(row[: len(keys)]): tuple(row[len(keys) :]) for row in _online_rows_now(parts.online, view)}
    details: list[dict[str, Any]] = []
    for key in dict.fromkeys([*offline, *online]):
        on, off = online.get(key), offline.get(key)
        if on == off:
            continue
        if on is None:
            kind = "missing online"
        elif off is None:
            kind = "missing offline"
        elif on[0] != off[0]:
            kind = "event time"
        else:
            kind = "value"
        details.append(
            {
                **dict(zip(keys, key, strict=True)),
                "kind": kind,
                "online_event_time": _from_us(on[0]) if on else None,
                "offline_event_time": _from_us(off[0]) if off else None,
            }
        )
    empty = {**dict.fromkeys(keys, pl.String), "kind": pl.String}
    frame = pl.DataFrame(details) if details else pl.DataFrame(schema=empty)
    return SkewReport(name, as_of, len({*offline, *online}), len(details), frame)

