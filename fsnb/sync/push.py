"""push: validate a batch, append it to the feature log durably, apply it to both stores.

The batch is validated against the view, trying older versions too (a producer still
sending the previous schema keeps working); everything a consumer would refuse is
refused before the append (``fsnb.validation``). A producer session keeps the offline
store open and applies to it in groups (docs/architecture.md, "Streaming").
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fsnb.backends.sqlite_log import LogEntry, encode_batch
from fsnb.commit import mirror_stats
from fsnb.errors import FsnbError, InvalidData, InvalidDefinition, SchemaMismatch, StoreBusy
from fsnb.sources import to_arrow
from fsnb.sync.consumers import apply_pending
from fsnb.sync.log_state import (
    OFFLINE,
    ONLINE,
    ProducerSession,
    UncommittedLog,
    crash_point,
    view_id,
)
from fsnb.sync.retention import compact
from fsnb.sync.views import checked
from fsnb.timeutil import now_us
from fsnb.validation import CheckedBatch

if TYPE_CHECKING:
    from fsnb.parts import StoreParts

_COMPACT_EVERY = 16  # appends between automatic retention passes


def push(parts: StoreParts, name: str, data: Any, *, namespace: Mapping[str, Any] | None = None) -> int:
    """Validate, append durably, apply to both stores; return the entry's log offset."""
    registry = parts.registry
    latest = registry.latest(name)
    if latest.view.sync != "stream":
        msg = (
            f"feature view '{name}' is kept in sync by materialization; register it with "
            f"sync='stream' (or %%feature_view --stream) to push to it, or use store.ingest('{name}', data)"
        )
        raise InvalidDefinition(msg)
    table = to_arrow(data, namespace)
    version, batch_checked = _match_version(parts, name, table)
    view = batch_checked.view
    if version == latest.version and view.to_dict() != latest.view.to_dict():
        # First data of a view registered without a schema: fix its types in place.
        registry.put(view, in_place_version=version)
    columns = [*view.system_columns, *view.feature_names]
    batch = batch_checked.table.select(columns)
    log = parts.log
    payload = encode_batch(batch)
    identity = view_id(registry, name, create=True) or ""
    offset = log.append(name, version, payload, batch.num_rows, identity)
    crash_point("after_append")
    session: ProducerSession | None = parts.caches.producer
    # The entry just appended need not be read back and decoded for the online consumer.
    just_appended = LogEntry(offset, name, version, batch.num_rows, now_us(), payload, batch, identity)
    apply_pending(parts, ONLINE, just_appended)
    compact_now = offset % _COMPACT_EVERY == 0
    if session is None:
        try:
            apply_pending(parts, OFFLINE)
        except StoreBusy as exc:
            # The entry is durable and online already: report the lag, do not fail the push.
            msg = f"entry {offset} is durable and online, but not yet offline: {exc}; it is applied at the next push or store.sync()"
            warnings.warn(msg, UncommittedLog, stacklevel=3)
    elif log.end_offset() - log.committed(OFFLINE) >= session.offline_every:
        compact_now = bool(apply_pending(parts, OFFLINE)) or compact_now  # after each group
    if compact_now:
        compact(log)
    return offset


def _match_version(parts: StoreParts, name: str, table: pa.Table) -> tuple[int, CheckedBatch]:
    """The newest version of the view the batch fits; nothing matching is an error."""
    versions = list(reversed(parts.registry.versions(name)))
    errors: list[tuple[int, FsnbError]] = []
    for vv in versions:
        try:
            return vv.version, checked(parts.caches, vv.view, table)
        except SchemaMismatch as exc:
            errors.append((vv.version, exc))
    if len(errors) == 1:
        raise errors[0][1]
    reasons = "; ".join(f"version {v}: {str(e).split('; ')[0]}" for v, e in errors)
    msg = f"the batch matches no version of '{name}' ({reasons}); nothing was appended"
    raise SchemaMismatch(msg)


@contextmanager
def producer(parts: StoreParts, *, offline_every: int = 64) -> Iterator[None]:
    """Push many batches fast: keep the offline store open and apply to it in groups.

    Inside the block every push is still durable and online at once when it returns;
    the offline store trails by at most ``offline_every`` entries and has everything
    when the block ends (or at ``store.sync()``).
    """
    if isinstance(offline_every, bool) or not isinstance(offline_every, int) or offline_every < 1:
        msg = f"offline_every must be a whole number of entries >= 1 (got {offline_every!r})"
        raise InvalidData(msg)
    if parts.caches.producer is not None:
        msg = "a producer session is already open on this store; nest pushes inside it instead"
        raise InvalidDefinition(msg)
    session = ProducerSession(offline_every)
    parts.caches.producer = session
    try:
        # The offline consumer's lock first, then the offline database: the order every
        # pusher uses, so a concurrent pusher waits for the session instead of deadlocking.
        with parts.log.consumer_lock(OFFLINE), parts.offline.connect():
            try:
                yield
            finally:
                apply_pending(parts, OFFLINE)
                for name in session.stale:
                    if parts.registry.has(name):
                        mirror_stats(parts.registry, parts.engine, parts.registry.latest(name).view)
                compact(parts.log)
    finally:
        parts.caches.producer = None
