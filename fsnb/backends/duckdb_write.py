"""The offline store's write path: one validated batch into a view's table, in one transaction.

What a write guarantees (docs/architecture.md): all or nothing, together with the
registry's commit protocol (fsnb.commit); exact duplicates (within the batch or of
stored rows) dropped; ties (two rows of one key at one event time) recorded;
nanosecond times stored exactly; the view's statistics exact after every write.

Most batches meet no stored row in their event-time range (the first data of a view,
an append of newer rows) and hold no two rows of one key at one time. Such a batch
goes straight from Arrow into the table: one pass, cast on the way. The second is
checked on the batch before (its rows' hashes of key and time, sorted: an exact
duplicate is a tie too). Any other batch takes the general path: deduplicated in a
temporary table, inserted without the stored rows' duplicates, then checked for ties.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from fsnb.sqlnames import (
    ENTRY,
    EVENT_TIME_TYPE,
    INGESTED_AT,
    OFFLINE_META,
    SEQ,
    keys_table,
    offline_table,
    q,
    qlist,
)
from fsnb.validation import CheckedBatch

if TYPE_CHECKING:
    from fsnb.backends.duckdb_offline import OfflineStore
    from fsnb.definitions import FeatureView

_BATCH = "__fsnb_batch"
_NEW = "__fsnb_new"
_IDX = "__fsnb_idx"


class Written(int):
    """What write() returns: the rows it inserted (an int, as the contract says), and with
    replace=True the stored rows it removed and the stored rows the batch kept unchanged."""

    removed: int
    kept: int

    def __new__(cls, inserted: int, *, removed: int = 0, kept: int = 0) -> Written:
        self = super().__new__(cls, inserted)
        self.removed, self.kept = removed, kept
        return self


def write_batch(
    store: OfflineStore,
    batch: CheckedBatch,
    *,
    replace: bool,
    entry: str | None,
    ingested_at: datetime | None,
    version: int | None,
    publish: bool,
) -> Written:
    """OfflineStore.write (see there)."""
    view = batch.view
    table = offline_table(view.name)
    now = ingested_at or datetime.now(timezone.utc)
    token = uuid.uuid4().hex
    with store.connect() as con:
        if store.journal is not None:
            store.journal.begin(con, token, view, version, publish)
        con.execute("BEGIN TRANSACTION")
        try:
            store.ensure_table(con, view)
            if entry is not None:
                seen = con.execute(f"SELECT count(*) FROM {table} WHERE {q(ENTRY)} = ?", [entry]).fetchall()[0]
                if seen and seen[0]:
                    con.execute("ROLLBACK")
                    if store.journal is not None:
                        store.journal.abort(token)
                    return Written(0)
            arrow = batch.table.append_column(_IDX, pa.array(np.arange(batch.table.num_rows, dtype=np.int64)))
            con.register(_BATCH, arrow)
            (base,) = con.execute(f"SELECT next_seq FROM {OFFLINE_META} WHERE name = ?", [view.name]).fetchall()[0]
            _, had_ties = store.meta(con, view.name)
            ts = q(view.timestamp_field)
            # Stored rows outside the batch's event-time range cannot be duplicates or ties
            # of it; saying so lets DuckDB skip row groups by their min/max. As integer
            # nanoseconds: a Python datetime would drop them, and a row 1 ns past the range
            # would be missed as a duplicate or a tie.
            lo, hi = con.execute(
                f"SELECT epoch_ns(min(CAST({ts} AS {EVENT_TIME_TYPE}))), epoch_ns(max(CAST({ts} AS {EVENT_TIME_TYPE}))) FROM {_BATCH}"
            ).fetchall()[0]
            bounds = [lo, hi]
            in_range = f"e.{ts} BETWEEN CAST(make_timestamp_ns(?) AS {EVENT_TIME_TYPE}) AND CAST(make_timestamp_ns(?) AS {EVENT_TIME_TYPE})"
            # replace=True must see every stored row (those the batch lacks are deleted).
            where, params = ("true", []) if replace else (in_range, bounds)
            (crowded,) = con.execute(f"SELECT EXISTS (SELECT 1 FROM {table} e WHERE {where})", params).fetchall()[0]
            if not crowded and not _may_tie(con, view):
                # Nothing stored to meet, and no two of its rows share a key and a time
                # (so no exact duplicates either): no new tie, nothing to drop.
                written, removed, ties = _insert_direct(con, view, base, now, entry), 0, had_ties
            else:
                written, removed = _insert_deduplicated(con, view, base, now, entry, bounds, replace=replace)
                ties = had_ties or (bool(written) and _new_ties(con, view, base, bounds))
            stats = _next_stats(con, view, base, int(written), now, recount=replace)
            # With replace the table now holds exactly the batch: what it did not insert was there.
            kept = int(stats.get("rows") or 0) - int(written) if replace else 0
            con.execute(
                f"UPDATE {OFFLINE_META} SET next_seq = ?, has_ties = ?, write_token = ?, "
                "version = coalesce(?, version), definition_hash = coalesce(?, definition_hash) WHERE name = ?",
                [base + written, bool(ties), token, version, view.definition_hash() if publish else None, view.name],
            )
            con.execute(f"DROP TABLE IF EXISTS {_NEW}")
            con.unregister(_BATCH)
            con.execute("COMMIT")  # the commit point
        except BaseException:
            store.forget_columns(view.name)  # a rolled-back CREATE/ALTER never happened
            with suppress(duckdb.Error):
                con.execute("ROLLBACK")
            if store.journal is not None:
                with suppress(Exception):
                    store.journal.abort(token)
            raise
        if store.journal is not None:
            store.journal.committed(token, view, stats, publish)
    return Written(int(written), removed=int(removed), kept=kept)


def _user_columns(view: FeatureView) -> list[str]:
    return [*view.system_columns, *view.feature_names]


def _casts(view: FeatureView, prefix: str = "") -> str:
    return ", ".join(f"CAST({prefix}{q(c)} AS {_target_type(view, c)}) AS {q(c)}" for c in _user_columns(view))


def _may_tie(con: duckdb.DuckDBPyConnection, view: FeatureView) -> bool:
    """Whether two rows of the batch may share their key and event time: equal rows hash
    alike, so distinct hashes of (key, time) as stored prove there is no such pair
    (equal hashes send the batch to the exact checks)."""
    cols = ", ".join(f"CAST({q(c)} AS {_target_type(view, c)})" for c in [*view.entity_columns, view.timestamp_field])
    hashes = con.execute(f"SELECT hash({cols}) AS h FROM {_BATCH}").fetchnumpy()["h"]
    hashes = np.sort(np.asarray(hashes))
    return bool((hashes[1:] == hashes[:-1]).any())


def _insert_direct(con: duckdb.DuckDBPyConnection, view: FeatureView, base: int, now: datetime, entry: str | None) -> int:
    """Every row of the batch, cast to the stored types, in the batch's order."""
    cols = _user_columns(view)
    (written,) = con.execute(
        f"INSERT INTO {offline_table(view.name)} ({qlist(cols)}, {q(SEQ)}, {q(INGESTED_AT)}, {q(ENTRY)}) "
        f"SELECT {_casts(view)}, ? + {_IDX}, ?, ? FROM {_BATCH}",
        [base, now, entry],
    ).fetchall()[0]
    return int(written)


def _insert_deduplicated(
    con: duckdb.DuckDBPyConnection,
    view: FeatureView,
    base: int,
    now: datetime,
    entry: str | None,
    bounds: list[Any],
    *,
    replace: bool,
) -> tuple[int, int]:
    """The batch without its own exact duplicates nor those of stored rows (with replace,
    the stored rows not in the batch deleted first); returns (inserted, removed)."""
    table = offline_table(view.name)
    cols = _user_columns(view)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_NEW} AS SELECT {_casts(view)}, {_IDX} FROM {_BATCH} "
        f"QUALIFY row_number() OVER (PARTITION BY {qlist(cols)} ORDER BY {_IDX}) = 1"
    )
    same = " AND ".join(f"e.{q(c)} IS NOT DISTINCT FROM n.{q(c)}" for c in cols)
    ts = q(view.timestamp_field)
    in_range = f"e.{ts} BETWEEN CAST(make_timestamp_ns(?) AS {EVENT_TIME_TYPE}) AND CAST(make_timestamp_ns(?) AS {EVENT_TIME_TYPE})"
    removed = 0
    if replace:
        (removed,) = con.execute(
            f"DELETE FROM {table} AS e WHERE NOT EXISTS (SELECT 1 FROM {_NEW} n WHERE {same})"
        ).fetchall()[0]
    (written,) = con.execute(
        f"INSERT INTO {table} ({qlist(cols)}, {q(SEQ)}, {q(INGESTED_AT)}, {q(ENTRY)}) "
        f"SELECT {qlist(cols, 'n.')}, ? + row_number() OVER (ORDER BY n.{_IDX}) - 1, ?, ? "
        f"FROM {_NEW} n WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE {in_range} AND {same})",
        [base, now, entry, *bounds],
    ).fetchall()[0]
    return int(written), int(removed)


def _new_ties(con: duckdb.DuckDBPyConnection, view: FeatureView, base: int, bounds: list[Any]) -> bool:
    """Whether a row written from sequence number base on shares its key and event time
    with another stored row (written in this batch or before)."""
    table = offline_table(view.name)
    ts = q(view.timestamp_field)
    on = " AND ".join(f"e.{q(c)} = n.{q(c)}" for c in [*view.entity_columns, view.timestamp_field])
    in_range = f"e.{ts} BETWEEN CAST(make_timestamp_ns(?) AS {EVENT_TIME_TYPE}) AND CAST(make_timestamp_ns(?) AS {EVENT_TIME_TYPE})"
    (ties,) = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM {table} n JOIN {table} e ON {on} "
        f"AND e.{q(SEQ)} <> n.{q(SEQ)} WHERE n.{q(SEQ)} >= ? AND {in_range})",
        [base, *bounds],
    ).fetchall()[0]
    return bool(ties)


def _next_stats(
    con: duckdb.DuckDBPyConnection, view: FeatureView, base: int, written: int, now: datetime, *, recount: bool
) -> dict[str, Any]:
    """Update the view's statistics for the rows just written (inside the write's transaction).

    Incremental: rows += written, the time range widened by the new rows' (those from
    sequence number base on), and their keys not seen before added to a per-view keys
    table (an anti-join against the distinct keys, never a scan of the history). A
    full count runs only when the view had no counted rows (first data, an older
    store) or the rows were replaced (then the table holds just this batch).
    """
    row = con.execute(
        f"SELECT rows, entities, min_ts, max_ts, last_ingested FROM {OFFLINE_META} WHERE name = ?", [view.name]
    ).fetchall()[0]
    rows, entities, lo, hi, last = row
    table = offline_table(view.name)
    keys = keys_table(view.name)
    ts = q(view.timestamp_field)
    if recount or not rows:
        con.execute(f"CREATE OR REPLACE TABLE {keys} AS SELECT DISTINCT {qlist(view.entity_columns)} FROM {table}")
        rows, lo, hi, last = con.execute(
            f"SELECT count(*), min({ts}), max({ts}), max({q(INGESTED_AT)}) FROM {table}"
        ).fetchall()[0]
        (entities,) = con.execute(f"SELECT count(*) FROM {keys}").fetchall()[0]
    elif written:
        on = " AND ".join(f"k.{q(c)} = n.{q(c)}" for c in view.entity_columns)
        new = f"{table} n WHERE n.{q(SEQ)} >= ?"
        (added,) = con.execute(
            f"INSERT INTO {keys} SELECT DISTINCT {qlist(view.entity_columns, 'n.')} FROM {new} "
            f"AND NOT EXISTS (SELECT 1 FROM {keys} k WHERE {on})",
            [base],
        ).fetchall()[0]
        b_lo, b_hi = con.execute(f"SELECT min({ts}), max({ts}) FROM {new}", [base]).fetchall()[0]
        rows, entities = int(rows) + written, int(entities or 0) + int(added)
        lo, hi, last = min(lo, b_lo) if lo else b_lo, max(hi, b_hi) if hi else b_hi, now
    con.execute(
        f"UPDATE {OFFLINE_META} SET rows = ?, entities = ?, min_ts = ?, max_ts = ?, last_ingested = ? WHERE name = ?",
        [rows, entities, lo, hi, last, view.name],
    )
    return stats_dict(rows, entities, lo, hi, last)


def stats_dict(rows: Any, entities: Any, lo: Any, hi: Any, last: Any) -> dict[str, Any]:
    return {
        "rows": int(rows),
        "entities": int(entities or 0),
        "min_ts": lo.isoformat() if lo else None,
        "max_ts": hi.isoformat() if hi else None,
        "last_ingested": last.isoformat() if last else None,
    }


def _target_type(view: FeatureView, column: str) -> str:
    if column in (view.timestamp_field, view.created_timestamp_field):
        return EVENT_TIME_TYPE
    if column in view.entity_columns:
        return (view.entity_types or {})[column]
    return view.feature_types.get(column) or "VARCHAR"
