"""What the streaming modules share: the consumers' names, the warnings, the entries
set aside, view identities, the producer session's state and the crash points.

The flow (docs/architecture.md, "Streaming"): ``fsnb.sync.push`` validates a batch and
appends it to the feature log as one fsync'd entry; the consumers (``fsnb.sync.consumers``)
apply what they have not committed, in log order, committing their offsets afterwards,
so a crash anywhere leaves work that ``sync`` replays (at-least-once, replays harmless);
``fsnb.sync.retention`` drops what both consumers committed; ``fsnb.sync.monitor``
reports freshness and online/offline skew. Every function takes the store's parts
(``fsnb.parts.StoreParts``) or narrower, never the store facade.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsnb.backends.sqlite_log import CONSUMERS, consumer_active, uncommitted
from fsnb.errors import one_line

if TYPE_CHECKING:
    from fsnb.backends.contracts import FeatureLog, LogEntry
    from fsnb.parts import StoreParts
    from fsnb.registry import Registry

ONLINE, OFFLINE = CONSUMERS
INTENT = "applying.offline"  # log setting: set while the offline consumer writes, cleared at its commit
_SET_ASIDE = "set_aside"  # log setting: JSON list of the entries consumers passed over
_ID_KEY = "view_id:"  # registry kv: the identity of each view (see view_id())
_DELETED_KEY = "deleted_view_id:"  # registry kv: identities of deleted views, with their name


class UncommittedLog(UserWarning):
    """The store's feature log holds entries a consumer has not applied yet."""


class EntrySetAside(UserWarning):
    """A log entry failed to apply to one store and was passed over (see set_aside())."""


@dataclass
class ProducerSession:
    """An open ``store.producer()`` block (kept in ``StoreParts.caches.producer``)."""

    offline_every: int
    stale: set[str] = field(default_factory=set)  # views whose statistics to refresh at the end


def crash_point(name: str) -> None:
    """Fault injection for the crash tests: FSNB_CRASH_AT=<name> kills the process here."""
    if os.environ.get("FSNB_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# -- view identities --------------------------------------------------------------------
def view_id(registry: Registry, name: str, *, create: bool = False) -> str | None:
    """The view's identity: fixed at its first push, kept across versions, dropped by
    delete_feature_view (so a view created later under the name gets a new one)."""
    key = _ID_KEY + name
    if create:
        return str(registry.setdefault(key, uuid.uuid4().hex[:16]))
    value = registry.get(key)
    return None if value is None else str(value)


def forget_view(registry: Registry, name: str) -> None:
    """Called by delete_feature_view: entries still in the log for the view become orphans."""
    identity = view_id(registry, name)
    if identity is not None:
        registry.set(_DELETED_KEY + identity, name)
        registry.delete(_ID_KEY + name)


def is_deleted(registry: Registry, identity: str) -> bool:
    return registry.get(_DELETED_KEY + identity) is not None


# -- entries set aside ------------------------------------------------------------------
def set_aside(log: FeatureLog) -> list[dict[str, Any]]:
    """The entries a consumer passed over: consumer, offset, view, rows, error."""
    raw = log.get_setting(_SET_ASIDE)
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def record_set_aside(log: FeatureLog, consumer: str, entry: LogEntry, exc: BaseException) -> None:
    reason = one_line(exc)
    records = set_aside(log)
    records.append({"consumer": consumer, "offset": entry.offset, "view": entry.view, "rows": entry.rows, "error": reason})
    log.set_setting(_SET_ASIDE, json.dumps(records[-1000:]))
    msg = (
        f"fsnb: log entry {entry.offset} ('{entry.view}', {entry.rows} rows) could not be applied to the "
        f"{consumer} store and was set aside ({reason}); the other entries were applied"
    )
    warnings.warn(msg, EntrySetAside, stacklevel=4)


def announce_uncommitted(parts: StoreParts) -> None:
    """Called when a store opens: say so if a previous process left entries unapplied."""
    if parts.config.log not in (None, "sqlite"):
        log = parts.log
        end = log.end_offset()
        lag: dict[str, int] | None = {c: end - log.committed(c) for c in CONSUMERS}
    else:
        lag = uncommitted(parts.path)
    if not lag:
        return
    # Entries a live process is applying right now (or a producer session will) are no news.
    lag = {c: n for c, n in lag.items() if n and not consumer_active(parts.path, c)}
    if not lag:
        return
    pieces = [f"{n} {'entry' if n == 1 else 'entries'} not applied to the {c} store" for c, n in lag.items() if n]
    msg = (
        f"fsnb: the feature log of {parts.path} has {' and '.join(pieces)} "
        "(a pushing process stopped early); run store.sync() to apply them"
    )
    warnings.warn(msg, UncommittedLog, stacklevel=3)
