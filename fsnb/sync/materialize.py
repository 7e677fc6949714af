"""Materialization: copy each key's latest offline value into the online store.

Full: rows with event time in [start, end] (end = now). Incremental: rows ingested
since the last run (sequence watermark) or whose event time passed the last end,
up to end. Both upsert with the never-older-over-newer rule, so the online store
ends up holding each key's latest row with event time <= end. Each view is one
SQLite transaction: a crash leaves it as it was before the call.

Views are independent: one that fails (its transaction rolled back, its watermark
unmoved) does not stop the others; after all have run, ``MaterializeFailed`` names
each failed view with its reason (and carries what the others wrote).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from fsnb import aggregation_views
from fsnb.backends.sqlite_online import (
    encode_key_sql,
    encode_sql,
    epoch_us_sql,
    may_hold_nan,
    to_us,
)
from fsnb.definitions import FeatureView
from fsnb.errors import InvalidData, InvalidDefinition, StoreBusy, StoreError, one_line
from fsnb.sqlnames import SEQ, offline_table, q
from fsnb.timeutil import now, utc

if TYPE_CHECKING:
    from fsnb.parts import StoreParts

_CHUNK = 50_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class MaterializeFailed(StoreError):
    """Some views could not be materialized; the others were (see ``written``)."""

    def __init__(self, message: str, written: dict[str, int], failed: dict[str, str]) -> None:
        super().__init__(message)
        self.written = written
        self.failed = failed


def materialize(
    parts: StoreParts,
    *,
    start: Any,
    end: Any,
    views: Sequence[str] | None,
    incremental: bool,
    progress: bool | None,
) -> dict[str, int]:
    end_dt = utc(end, "end") if end is not None else now()
    start_dt = utc(start, "start") if start is not None else None
    if start_dt is not None and start_dt > end_dt:
        msg = f"start {start_dt.isoformat()} is after end {end_dt.isoformat()}; swap them"
        raise InvalidData(msg)
    registry = parts.registry
    if views is None:
        targets = [v for v in (registry.latest(n).view for n in registry.names()) if v.online]
    else:
        targets = [registry.latest(n).view for n in views]
        offline_only = [v.name for v in targets if not v.online]
        if offline_only:
            msg = f"feature view '{offline_only[0]}' is offline-only; register it with online=True to materialize it"
            raise InvalidDefinition(msg)
    written: dict[str, int] = {}
    failed: dict[str, str] = {}
    for view in targets:
        try:
            written[view.name] = _materialize_view(parts, view, start_dt, end_dt, incremental, progress)
        except StoreBusy:
            raise  # the offline store is held: every other view would wait as long
        except Exception as exc:  # reported below, after the other views
            failed[view.name] = one_line(exc)
    if failed:
        parts.caches.forget_readers()
        done = f"the other {len(written)} view(s) were materialized" if written else "no view was materialized"
        reasons = "; ".join(f"'{name}': {reason}" for name, reason in failed.items())
        msg = f"materialize could not write {len(failed)} view(s), left as they were ({reasons}); {done}"
        raise MaterializeFailed(msg, written, failed)
    return written


def _materialize_view(
    parts: StoreParts, view: FeatureView, start: Any, end: Any, incremental: bool, progress: bool | None
) -> int:
    if view.aggregations:  # hook: fsnb.aggregation_views (the online windows hold events)
        return aggregation_views.materialize(parts.engine, parts.online, view)
    if view.features is None or view.entity_types is None:
        return 0  # registered without data: nothing to copy yet
    online = parts.online
    end_us = to_us(end)
    wm_end, wm_seq = online.watermark(view.name) if incremental else (None, None)
    since_seq, after = None, None
    if incremental and wm_end is not None and wm_seq is not None:
        # Exactly "after the last end": a row 400 ns after it was not copied last time.
        since_seq, after = wm_seq, _EPOCH + timedelta(microseconds=wm_end)
    feature_types = view.feature_types
    columns = [*view.feature_names, *([view.created_timestamp_field] if view.created_timestamp_field else []), SEQ]
    backend = parts.offline
    ts = q(view.timestamp_field)
    with backend.connect() as con:
        parts.engine.stage_latest(con, view, start=start, end=end)  # Spark: each key's latest row, computed there
        if not backend.table_exists(con, view.name):
            return 0
        stored = backend.table_columns(con, view.name)
        nan = _features_with_nan(con, view, stored)
        created = (
            f"coalesce({epoch_us_sql(q(view.created_timestamp_field), stored[view.created_timestamp_field])}, 0)"
            if view.created_timestamp_field
            else "0"
        )
        select = [
            *(encode_key_sql(k, (view.entity_types or {}).get(k)) for k in view.entity_columns),
            epoch_us_sql(ts, stored[view.timestamp_field]),
            created,
            q(SEQ),
            *(encode_sql(f, feature_types.get(f) or "VARCHAR", nan=f in nan) for f in view.feature_names),
        ]
        next_seq, _ = backend.meta(con, view.name)
        cursor = backend.latest_per_entity(
            con, view, columns, start=start, end=end, since_seq=since_seq, after=after, select=select
        )
        online.ensure_table(view)
        fresh = online.is_empty(view.name)
        total = 0
        bar = None
        online.begin()
        try:
            while True:
                rows = cursor.fetchmany(_CHUNK)
                if not rows:
                    break
                if bar is None and (progress or (progress is None and len(rows) == _CHUNK)):
                    bar = _progress_bar(view.name, progress)
                online.write_rows(view, rows, fresh=fresh)
                total += len(rows)
                if bar is not None:
                    bar.update(len(rows))
            online.set_watermark(view.name, end_us, next_seq)
            online.commit()
        except BaseException:
            online.rollback()
            raise
        finally:
            if bar is not None:
                bar.close()
    return total


def _features_with_nan(con: Any, view: FeatureView, stored: dict[str, str]) -> set[str]:
    """The float features whose offline history holds a NaN (one scan of those columns)."""
    floats = [f for f in view.feature_names if f in stored and may_hold_nan(stored[f])]
    if not floats:
        return set()
    found = con.execute(
        f"SELECT {', '.join(f'bool_or(isnan({q(f)}))' for f in floats)} FROM {offline_table(view.name)}"
    ).fetchall()[0]
    return {f for f, has in zip(floats, found, strict=True) if has}


def _progress_bar(name: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=f"materialize {name}", unit="rows", unit_scale=True, disable=progress is False)
