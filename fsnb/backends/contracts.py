"""What a backend of fsnb provides: the offline store, the online store and the feature log.

Each contract is a ``Protocol``: a backend is one module whose class has these methods
(mypy checks it where the store opens its backends, fsnb/parts.py), plus its tests
(tests/test_backend_contracts.py runs the same behaviour checks against every online
backend and every log). Nothing above the backends names a backend class except the
one place that picks it (fsnb/parts.py). See docs/architecture.md, "Backend contracts".

Today: DuckDB implements the offline store (fsnb/backends/duckdb_offline.py), SQLite and
Redis the online store (sqlite_online.py, redis_online.py) and the log (sqlite_log.py,
redis_log.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from fsnb.aggregation import Aggregation
    from fsnb.definitions import FeatureView
    from fsnb.selection import ViewSelection
    from fsnb.validation import CheckedBatch


# -- the offline store ---------------------------------------------------------------
class Journal(Protocol):
    """What the offline store tells the registry around each write, so that a definition
    and the rows written with it commit together (fsnb/commit.py). ``session`` is the
    backend's open handle (a DuckDB connection), passed back to the backend's
    ``committed_write``/``committed_stats``."""

    def recover(self, session: Any) -> None: ...
    def begin(self, session: Any, token: str, view: FeatureView, version: int | None, publish: bool) -> None: ...
    def abort(self, token: str) -> None: ...
    def committed(self, token: str, view: FeatureView, stats: dict[str, Any], publish: bool) -> None: ...


class OfflineBackend(Protocol):
    """Where a store keeps every view's history, and the engine that queries it.

    The point-in-time rules are in docs/architecture.md ("Point-in-time rules")."""

    journal: Journal | None
    # True: each view's history is the table fv__<view> of connect()'s DuckDB connection
    # (the DuckDB engine); False: connect() only stages small results (the Spark engine).
    duckdb_tables: bool

    def write(
        self,
        batch: CheckedBatch,
        *,
        replace: bool = False,
        entry: str | None = None,
        ingested_at: datetime | None = None,
        version: int | None = None,
        publish: bool = False,
    ) -> int:
        """Append a validated batch atomically (all rows or none) and return the rows written.

        Exact duplicates (within the batch or of stored rows) are dropped; replace=True
        makes the view's rows exactly the batch's (rows already stored keep their
        ingestion time); with entry set, a replay of the same log entry writes nothing.
        Each row gets _fsnb_seq (store-wide ingestion order), _fsnb_ingested_at and
        _fsnb_entry. publish=True: the journal publishes batch.view as ``version`` in
        the same commit."""
        ...

    def read(self, view: FeatureView, start: Any = None, end: Any = None, *, system: bool = False) -> pa.Table:
        """The view's rows with event time in [start, end] (integer ns since the epoch),
        ordered by event time then _fsnb_seq; system=True adds _fsnb_ingested_at, _fsnb_seq."""
        ...

    def point_in_time(
        self,
        labels: pa.Table,
        selections: list[ViewSelection],
        key_types: dict[str, str],
        *,
        as_of_ingestion: bool = False,
        with_event_times: bool = False,
    ) -> pa.Table:
        """labels: __fsnb_row (0..n-1), __fsnb_t (label time) and the key columns. Returns
        __fsnb_row, one column per selected feature (output names) and, with
        with_event_times, __fsnb_ts_{i} per selection: every label row once, in order."""
        ...

    def label_types(self, labels: pa.Table) -> dict[str, str]:
        """The engine's type of each label column (to check keys against the views')."""
        ...

    def aggregate(
        self,
        labels: pa.Table,
        view: FeatureView,
        aggregations: Sequence[Aggregation],
        key_types: dict[str, str],
        *,
        as_of_ingestion: bool = False,
    ) -> pa.Table:
        """labels: __fsnb_row (0..n-1), __fsnb_t and the view's keys. Returns __fsnb_row and
        one column per aggregation (in the order asked), ordered by __fsnb_row: each the
        function over the key's events in (t - window, t] (docs/architecture.md)."""
        ...

    def latest_per_entity(
        self,
        view: FeatureView,
        columns: list[str],
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        since_seq: int | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Each key's row with the greatest event time in [start, end] (ties: newest
        created, then last ingested), streamed in batches (materialization)."""
        ...

    def stats(self, view: FeatureView) -> dict[str, Any]:
        """rows, entities, min_ts, max_ts, last_ingested of the view (a full recount)."""
        ...

    def has_rows(self, name: str) -> bool: ...
    def drop(self, name: str) -> None: ...
    def committed_write(self, session: Any, name: str) -> str | None:
        """The token of the view's last committed write (the journal's recovery)."""
        ...

    def committed_stats(self, session: Any, name: str) -> dict[str, Any] | None: ...


# -- the online store ----------------------------------------------------------------
class OnlineReader(Protocol):
    """Reads one view's features for many entities; built once per feature list."""

    view: FeatureView
    features: list[str]
    output_names: list[str]
    exists: bool  # the backend holds every requested feature of the view

    def read(self, key_columns: list[list[Any]], now: int) -> list[list[Any]]:
        """One list per feature, one value per entity (None when absent or older than
        the view's TTL at ``now``, integer µs). key_columns: one list per entity column."""
        ...


class OnlineBackend(Protocol):
    """Each entity's latest feature vector per view.

    Rows written are (keys..., event µs, created µs, sequence, features...); a stored
    value is replaced only by one at least as new in (event, created, sequence), so
    replays and out-of-order writes are harmless. Between begin() and commit() a
    view's writes and its watermark land together or not at all."""

    # A reader that hits one of these retries once, after forget_columns().
    stale_errors: tuple[type[Exception], ...]

    def columns(self, name: str) -> list[str]:
        """The stored columns of a view ([] when it has none)."""
        ...

    def forget_columns(self) -> None: ...
    def ensure_table(self, view: FeatureView) -> None: ...
    def drop(self, name: str) -> None: ...
    def write_rows(self, view: FeatureView, rows: Iterable[Sequence[Any]], *, fresh: bool = False) -> None: ...
    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def watermark(self, name: str) -> tuple[int | None, int | None]:
        """(end µs, next sequence) of the view's last materialization."""
        ...

    def set_watermark(self, name: str, end_us: int | None, seq: int | None) -> None: ...
    def last_update(self, name: str) -> float | None:
        """When the view's online values last changed (seconds since the epoch)."""
        ...

    def latest_event_us(self, name: str) -> int | None:
        """The newest event time stored for the view (None when it has no values)."""
        ...

    def reader(self, view: FeatureView, features: list[str], output_names: list[str]) -> OnlineReader: ...
    def dump(self, view: FeatureView) -> list[tuple[Any, ...]]:
        """Every stored row as (keys..., event µs, features...) (checks and tests)."""
        ...

    def count(self, name: str) -> int: ...
    def is_empty(self, name: str) -> bool: ...
    def close(self) -> None: ...


# -- the feature log -----------------------------------------------------------------
def encode_batch(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes (a log entry's payload): typed, language-neutral, and
    nothing executes on read (never pickle)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def decode_batch(payload: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        return reader.read_all()


@dataclass(frozen=True)
class LogEntry:
    """One appended batch. ``offset`` starts at 1 and is never reused, even after truncation."""

    offset: int
    view: str
    version: int
    rows: int
    appended_us: int
    payload: bytes
    decoded: pa.Table | None = field(default=None, compare=False, repr=False)  # set by the appender
    # The identity of the view the entry was pushed to: it survives new versions but
    # not deletion, so entries of a deleted view never reach one created under its name.
    # "" for entries written before fsnb recorded it (applied to the current view).
    view_id: str = ""

    def table(self) -> pa.Table:
        return self.decoded if self.decoded is not None else decode_batch(self.payload)


class FeatureLog(Protocol):
    """An ordered, durable, append-only sequence of pushed batches, read by two
    consumers (online, offline) that commit the offset of the last entry they applied.
    Offsets are positive integers in append order."""

    log_id: str  # unique per log: offline rows are tagged "<log_id>:<first>-<last>"
    # True when a consumer may apply the entry this process just appended without
    # reading it back (False for a log whose consumer groups must see every read).
    reuses_appended: bool

    def append(self, view: str, version: int, payload: bytes, rows: int, view_id: str = "") -> int:
        """Durably add one entry and return its offset (only once it is durable)."""
        ...

    def read_from(self, offset: int, limit: int | None = None) -> list[LogEntry]:
        """Entries with offset >= ``offset``, oldest first (at most ``limit``)."""
        ...

    def end_offset(self) -> int:
        """Offset of the last entry ever appended (0 for an empty log)."""
        ...

    def start_offset(self) -> int:
        """Offset of the oldest retained entry (end_offset() + 1 when none is retained)."""
        ...

    def committed(self, consumer: str) -> int:
        """Offset of the last entry the consumer applied and committed (0 = none)."""
        ...

    def commit(self, consumer: str, offset: int) -> None:
        """Record the consumer's progress; never moves it backwards."""
        ...

    def truncate_before(self, offset: int) -> int:
        """Drop entries with offset < ``offset``; return how many were dropped."""
        ...

    def pending(self, after: int) -> list[tuple[int, str, int]]:
        """(offset, view, rows) of the entries after ``after``, without their payloads."""
        ...

    def size(self) -> int:
        """Entries currently retained."""
        ...

    def first_offset_since(self, appended_us: int) -> int | None:
        """Offset of the oldest retained entry appended at or after the time (None: none)."""
        ...

    def last_appended_us(self, view: str) -> int | None: ...
    def get_setting(self, key: str) -> str | None: ...
    def set_setting(self, key: str, value: str) -> None: ...
    def consumer_lock(self, consumer: str) -> AbstractContextManager[None]:
        """Held while a consumer applies and commits (one applier per consumer)."""
        ...

    def close(self) -> None: ...
