"""The consumers: apply what the log holds and a consumer has not committed, in order.

Each consumer applies entries in log order and commits its offset afterwards, so a
crash anywhere leaves work that ``sync`` replays (at-least-once). Should an entry fail
to apply (a store written by an older fsnb, a bug), it does not hold up the log: the
consumer applies the entries one by one, and an entry that fails while the entries
after it apply is *set aside*: recorded with its reason (``store.set_aside()``,
the ``set_aside`` column of ``freshness()``), announced with an ``EntrySetAside``
warning, and passed over. A failure that the entries after it share (the store itself
unreachable) sets nothing aside: the consumer stops there and retries at the next push
or ``sync()`` (docs/architecture.md, "Streaming").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fsnb.backends.sqlite_log import LogEntry
from fsnb.commit import mirror_stats
from fsnb.errors import InvalidDefinition, StoreBusy, StoreError, one_line
from fsnb.sync.log_state import INTENT, OFFLINE, ONLINE, record_set_aside
from fsnb.sync.offline_apply import apply_offline
from fsnb.sync.online_apply import apply_online
from fsnb.sync.retention import compact

if TYPE_CHECKING:
    from fsnb.parts import StoreParts

_APPLY_CHUNK = 64  # entries read from the log at a time by a consumer


def apply_pending(parts: StoreParts, consumer: str, just_appended: LogEntry | None = None) -> int:
    """Apply every entry the consumer has not committed, in order; return how many.

    just_appended: the entry this process has just appended, used instead of reading
    it back when it is exactly the next one (the embedded log only: a Redis consumer
    must read through its group so that the group knows what it was given).
    """
    log = parts.log
    if not log.reuses_appended:
        just_appended = None
    applied = 0
    with log.consumer_lock(consumer):
        while True:
            start = log.committed(consumer) + 1
            if just_appended is not None and just_appended.offset == start:
                entries = [just_appended]
            else:
                entries = log.read_from(start, _APPLY_CHUNK)
            just_appended = None
            if not entries:
                break
            done, error = _apply_chunk(parts, consumer, entries)
            if done is not None:
                log.commit(consumer, done)
                if consumer == OFFLINE:
                    log.set_setting(INTENT, "")
                applied += sum(1 for e in entries if e.offset <= done)
            if error is not None:
                raise error
            if len(entries) < _APPLY_CHUNK:
                break
    return applied


def _apply_chunk(
    parts: StoreParts, consumer: str, entries: Sequence[LogEntry]
) -> tuple[int | None, BaseException | None]:
    """Apply entries; return the offset to commit (None: nothing) and the error to raise.

    All at once first (the normal case, one transaction). If that fails, one by one:
    an entry that fails while a later one applies is set aside (the failure is its
    own); failures with no success after them are not (the store may be what fails),
    so the consumer commits up to the last entry handled and reports the error.
    """
    try:
        apply_entries(parts, consumer, entries)
        return entries[-1].offset, None
    except StoreBusy as exc:
        return None, exc
    except Exception as exc:
        if len(entries) == 1:
            return None, _consumer_error(consumer, entries[0], exc)
    done: int | None = None
    failed: list[tuple[LogEntry, Exception]] = []
    for entry in entries:
        try:
            apply_entries(parts, consumer, [entry])
        except StoreBusy as exc:
            return done, exc
        except Exception as exc:
            failed.append((entry, exc))
            continue
        for bad, reason in failed:
            record_set_aside(parts.log, consumer, bad, reason)
        failed.clear()
        done = entry.offset
    if failed:
        return done, _consumer_error(consumer, *failed[0])
    return done, None


def _consumer_error(consumer: str, entry: LogEntry, exc: Exception) -> Exception:
    if isinstance(exc, StoreError):
        return exc
    msg = (
        f"the {consumer} store could not apply log entry {entry.offset} ('{entry.view}'): {one_line(exc)}; "
        "the entry is durable and is retried at the next push or store.sync() "
        "(set aside if the entries after it apply)"
    )
    error = StoreError(msg)
    error.__cause__ = exc
    return error


def apply_entries(parts: StoreParts, consumer: str, entries: Sequence[LogEntry]) -> None:
    """Apply entries to one store without committing (callers commit; replays are harmless)."""
    if consumer == ONLINE:
        apply_online(parts, entries)
    elif consumer == OFFLINE:
        apply_offline(parts, entries)
    else:
        msg = f"unknown consumer {consumer!r}; use 'online' or 'offline'"
        raise InvalidDefinition(msg)


def sync(parts: StoreParts) -> dict[str, int]:
    """Apply what each consumer has not committed, then drop entries both have."""
    online = apply_pending(parts, ONLINE)
    offline = apply_pending(parts, OFFLINE)
    log = parts.log
    truncated = compact(log)
    registry = parts.registry
    for name in registry.names():
        view = registry.latest(name).view
        if view.sync == "stream" and view.schema_known:
            mirror_stats(registry, parts.engine, view)  # exact counts, entities included
    parts.caches.forget_readers()
    return {"online": online, "offline": offline, "end_offset": log.end_offset(), "truncated": truncated}
