"""The offline store: every feature row ever ingested, in one DuckDB database file.

DuckDB lets one process at a time open a database file for writing, so fsnb opens
it per operation and closes it right after: a kernel, the CLI and an exported
pipeline can take turns on one store. A process that finds it held waits (with a
deadline) instead of failing at once.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from fsnb.definitions import FeatureView
from fsnb.errors import StoreBusy, StoreError
from fsnb.sqlnames import ENTRY, INGESTED_AT, SEQ, offline_table, q, qlist
from fsnb.validation import CheckedBatch

_META = "_fsnb_offline_meta"
# DuckDB 2 refuses new work on a connection with an unfinished result, so every
# query here is read with fetchall(), never fetchone().


class OfflineStore:
    def __init__(self, path: Path, *, lock_timeout: float = 60.0) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._con: duckdb.DuckDBPyConnection | None = None
        self._known_columns: dict[str, set[str]] = {}
        self._thread_lock = threading.RLock()

    # -- connections ------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the database (waiting for another process to let go), yield, close.

        Nested uses in one thread share one connection so a caller can compose
        operations; other threads of the process wait their turn (a DuckDB connection
        serves one call at a time, and concurrent writers would conflict anyway).
        """
        with self._thread_lock:
            if self._con is not None:
                yield self._con
                return
            con = self._open()
            self._con = con
            try:
                yield con
            finally:
                self._con = None
                con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower():
                    msg = f"cannot open the offline store {self.path}: {text.splitlines()[0]}"
                    raise StoreError(msg) from None
                if time.monotonic() >= deadline:
                    holder = _lock_holder(text)
                    msg = (
                        f"the offline store {self.path} is held by another process{holder} for more than "
                        f"{self.lock_timeout:g}s; wait for it to finish or close that notebook's kernel"
                    )
                    raise StoreBusy(msg) from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.25)
        # Naive timestamps mean UTC: casts to TIMESTAMPTZ must not depend on the machine's zone.
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB's own progress bar prints to stdout, in the middle of notebook output.
        con.execute("SET enable_progress_bar = false")
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_META} (name VARCHAR PRIMARY KEY, next_seq BIGINT NOT NULL, has_ties BOOLEAN NOT NULL)"
        )
        return con

    # -- schema ----------------------------------------------------------------
    @staticmethod
    def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
        row = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [f"fv__{name}"]
        ).fetchall()[0]
        return bool(row and row[0])

    @staticmethod
    def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [f"fv__{name}"],
        ).fetchall()
        return {c: t for c, t in rows}

    def ensure_table(self, con: duckdb.DuckDBPyConnection, view: FeatureView) -> None:
        """Create the view's table, or add columns that a new version introduced."""
        entity_types = view.entity_types or {}
        wanted: dict[str, str] = {c: entity_types[c] for c in view.entity_columns}
        wanted[view.timestamp_field] = "TIMESTAMPTZ"
        if view.created_timestamp_field:
            wanted[view.created_timestamp_field] = "TIMESTAMPTZ"
        for f, t in view.feature_types.items():
            wanted[f] = t or "VARCHAR"
        table = offline_table(view.name)
        if self._known_columns.get(view.name, set()) >= wanted.keys():
            return  # created or checked earlier by this process: no catalog query per write
        if not self.table_exists(con, view.name):
            cols = ", ".join(f"{q(c)} {t}" for c, t in wanted.items())
            con.execute(
                f"CREATE TABLE {table} ({cols}, {q(SEQ)} BIGINT NOT NULL, {q(INGESTED_AT)} TIMESTAMPTZ NOT NULL, {q(ENTRY)} VARCHAR)"
            )
            con.execute(f"INSERT OR IGNORE INTO {_META} VALUES (?, 0, false)", [view.name])
            self._known_columns[view.name] = set(wanted)
            return
        existing = self.table_columns(con, view.name)
        for c, t in wanted.items():
            if c not in existing:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {q(c)} {t}")
        con.execute(f"INSERT OR IGNORE INTO {_META} VALUES (?, 0, false)", [view.name])
        self._known_columns[view.name] = set(existing) | set(wanted)

    def drop(self, name: str) -> None:
        self._known_columns.pop(name, None)
        with self.connect() as con:
            con.execute(f"DROP TABLE IF EXISTS {offline_table(name)}")
            con.execute(f"DELETE FROM {_META} WHERE name = ?", [name])

    # -- writes ----------------------------------------------------------------
    def write(
        self,
        batch: CheckedBatch,
        *,
        replace: bool = False,
        entry: str | None = None,
        ingested_at: datetime | None = None,
    ) -> int:
        """Append a validated batch in one transaction; return the rows written.

        Exact duplicates (within the batch or of stored rows) are dropped. With
        replace=True the view's rows become exactly the batch's (rows already stored
        keep their ingestion time). With entry set, a replay of the same log entry
        writes nothing.
        """
        view = batch.view
        table = offline_table(view.name)
        user_cols = [*view.system_columns, *view.feature_names]
        now = ingested_at or datetime.now(timezone.utc)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                self.ensure_table(con, view)
                if entry is not None:
                    seen = con.execute(f"SELECT count(*) FROM {table} WHERE {q(ENTRY)} = ?", [entry]).fetchall()[0]
                    if seen and seen[0]:
                        con.execute("ROLLBACK")
                        return 0
                arrow = batch.table.append_column(
                    "__fsnb_idx", pa.array(np.arange(batch.table.num_rows, dtype=np.int64))
                )
                con.register("__fsnb_batch", arrow)
                (base,) = con.execute(f"SELECT next_seq FROM {_META} WHERE name = ?", [view.name]).fetchall()[0]
                casts = ", ".join(
                    f"CAST({q(c)} AS {_target_type(view, c)}) AS {q(c)}" for c in user_cols
                )
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE __fsnb_new AS "
                    f"SELECT {casts}, __fsnb_idx FROM __fsnb_batch "
                    f"QUALIFY row_number() OVER (PARTITION BY {qlist(user_cols)} ORDER BY __fsnb_idx) = 1"
                )
                same = " AND ".join(f"e.{q(c)} IS NOT DISTINCT FROM n.{q(c)}" for c in user_cols)
                ts = q(view.timestamp_field)
                # Stored rows outside the batch's event-time range cannot be duplicates or
                # ties of it; saying so lets DuckDB skip row groups by their min/max, so a
                # small append does not scan the whole history.
                lo, hi = con.execute(f"SELECT min({ts}), max({ts}) FROM __fsnb_new").fetchall()[0]
                in_range = f"e.{ts} BETWEEN ? AND ?"
                if replace:
                    con.execute(
                        f"DELETE FROM {table} AS e WHERE NOT EXISTS (SELECT 1 FROM __fsnb_new n WHERE {same})"
                    )
                (written,) = con.execute(
                    f"INSERT INTO {table} ({qlist(user_cols)}, {q(SEQ)}, {q(INGESTED_AT)}, {q(ENTRY)}) "
                    f"SELECT {qlist(user_cols, 'n.')}, ? + row_number() OVER (ORDER BY n.__fsnb_idx) - 1, ?, ? "
                    f"FROM __fsnb_new n WHERE NOT EXISTS (SELECT 1 FROM {table} e WHERE {in_range} AND {same})",
                    [base, now, entry, lo, hi],
                ).fetchall()[0]
                _, had_ties = self.meta(con, view.name)
                ties = had_ties
                if written and not had_ties:
                    keys = [*view.entity_columns, view.timestamp_field]
                    on = " AND ".join(f"e.{q(c)} = n.{q(c)}" for c in keys)
                    (ties,) = con.execute(
                        f"SELECT EXISTS (SELECT 1 FROM {table} n JOIN {table} e ON {on} "
                        f"AND e.{q(SEQ)} <> n.{q(SEQ)} WHERE n.{q(SEQ)} >= ? AND {in_range})",
                        [base, lo, hi],
                    ).fetchall()[0]
                con.execute(
                    f"UPDATE {_META} SET next_seq = ?, has_ties = ? WHERE name = ?",
                    [base + written, bool(ties), view.name],
                )
                con.execute("DROP TABLE __fsnb_new")
                con.unregister("__fsnb_batch")
                con.execute("COMMIT")
            except BaseException:
                self._known_columns.pop(view.name, None)  # a rolled-back CREATE/ALTER never happened
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        return int(written)

    # -- reads -----------------------------------------------------------------
    def meta(self, con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, bool]:
        rows = con.execute(f"SELECT next_seq, has_ties FROM {_META} WHERE name = ?", [name]).fetchall()
        row = rows[0] if rows else None
        return (int(row[0]), bool(row[1])) if row else (0, False)


    def read(self, view: FeatureView, start: Any = None, end: Any = None, *, system: bool = False) -> pa.Table:
        with self.connect() as con:
            if not self.table_exists(con, view.name):
                return pa.table({})
            existing = self.table_columns(con, view.name)
            cols = [c for c in [*view.system_columns, *view.feature_names] if c in existing]
            if system:
                cols += [INGESTED_AT, SEQ]
            where, params = [], []
            if start is not None:
                where.append(f"{q(view.timestamp_field)} >= ?")
                params.append(start)
            if end is not None:
                where.append(f"{q(view.timestamp_field)} <= ?")
                params.append(end)
            sql = f"SELECT {qlist(cols)} FROM {offline_table(view.name)}"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += f" ORDER BY {q(view.timestamp_field)}, {q(SEQ)}"
            return con.sql(sql, params=params).to_arrow_table()

    def stats(self, view: FeatureView) -> dict[str, Any]:
        with self.connect() as con:
            if not self.table_exists(con, view.name):
                return {"rows": 0, "entities": 0, "min_ts": None, "max_ts": None}
            keys = qlist(view.entity_columns)
            ts = q(view.timestamp_field)
            rows, entities, lo, hi, last = con.execute(
                f"SELECT count(*), count(DISTINCT ({keys})), min({ts}), max({ts}), max({q(INGESTED_AT)}) "
                f"FROM {offline_table(view.name)}"
            ).fetchall()[0]
        return {
            "rows": int(rows),
            "entities": int(entities),
            "min_ts": lo.isoformat() if lo else None,
            "max_ts": hi.isoformat() if hi else None,
            "last_ingested": last.isoformat() if last else None,
        }


def _target_type(view: FeatureView, column: str) -> str:
    if column in (view.timestamp_field, view.created_timestamp_field):
        return "TIMESTAMPTZ"
    if column in view.entity_columns:
        return (view.entity_types or {})[column]
    return view.feature_types.get(column) or "VARCHAR"


def _lock_holder(text: str) -> str:
    import re

    match = re.search(r"PID (\d+)", text)
    if match and int(match.group(1)) != os.getpid():
        return f" (PID {match.group(1)})"
    return ""
