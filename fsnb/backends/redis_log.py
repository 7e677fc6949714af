"""The feature log as a Redis Stream with one consumer group per consumer.

Layout (``<ns>`` is the store's id)::

    fsnb:<ns>:log            stream   entries with ids 0-<offset>: view, version, rows, at, payload, view_id
    fsnb:<ns>:log:seq        string   last offset handed out (INCR)
    fsnb:<ns>:log:meta       hash     log_id, settings, last:<view> (append time), committed:<consumer>

``append`` is one Lua script (INCR + XADD), so offsets are dense integers in append
order whatever the number of writers. Its durability is the server's: run Redis with
``appendonly yes`` and ``appendfsync always`` (the tests do) so that an acknowledged
append survives a server restart.

Consumers use their group: inside ``consumer_lock(c)`` a read first claims the
group's pending entries (XAUTOCLAIM: what a crashed instance had been delivered but
never acknowledged), then takes new ones (XREADGROUP >); ``commit`` acknowledges
(XACK) everything up to the offset. Retention trims (XTRIM MINID) below the offset
both groups have committed. The lock itself is an OS file lock in the store
directory, which is always local to the process applying the entries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fsnb.backends.consumer_locks import CONSUMERS, os_consumer_lock
from fsnb.backends.contracts import LogEntry
from fsnb.backends.redis_common import RedisCalls, connect
from fsnb.config import redact_url
from fsnb.errors import StoreError
from fsnb.timeutil import now_us

_APPEND = """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], '0-' .. n, 'view', ARGV[1], 'version', ARGV[2], 'rows', ARGV[3], 'at', ARGV[4], 'payload', ARGV[5], 'view_id', ARGV[6])
redis.call('HSET', KEYS[3], 'last:' .. ARGV[1], ARGV[4])
return n
"""

_COMMIT = """
local cur = tonumber(redis.call('HGET', KEYS[2], 'committed:' .. ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new > cur then redis.call('HSET', KEYS[2], 'committed:' .. ARGV[1], ARGV[2]) end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '0-' .. ARGV[2], 10000)
for _, p in ipairs(pending) do redis.call('XACK', KEYS[1], ARGV[1], p[1]) end
return #pending
"""

_WORKER = "applier"


def _offset(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[1])


class RedisLog:
    """FeatureLog (fsnb.backends.contracts) on a Redis Stream."""

    reuses_appended = False  # a consumer reads through its group, so the group knows what it was given

    def __init__(self, url: str, namespace: str, directory: Path) -> None:
        self.url = url
        self.directory = directory
        self.client = connect(url)
        self._call = RedisCalls(url, "Redis log", "check that redis-server is running, then store.sync()")
        base = f"fsnb:{namespace}:log"
        self.stream, self.seq_key, self.meta_key = base, f"{base}:seq", f"{base}:meta"
        self._append = self.client.register_script(_APPEND)
        self._commit = self.client.register_script(_COMMIT)
        self._local = threading.local()  # per thread: the consumer it is applying for (_active)
        self._locks: dict[str, int] = {}
        for group in CONSUMERS:
            try:
                self._call(self.client.xgroup_create, self.stream, group, id="0-0", mkstream=True)
            except StoreError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._call(self.client.hsetnx, self.meta_key, "log_id", f"redis-{namespace}")
        self.log_id = self._call(self.client.hget, self.meta_key, "log_id").decode()

    @property
    def _active(self) -> str | None:
        active: str | None = getattr(self._local, "active", None)
        return active

    @_active.setter
    def _active(self, value: str | None) -> None:
        self._local.active = value

    def __repr__(self) -> str:
        return f"RedisLog({redact_url(self.url)!r})"

    def close(self) -> None:
        self.client.close()

    # -- entries -------------------------------------------------------------------
    def append(self, view: str, version: int, payload: bytes, rows: int, view_id: str = "") -> int:
        return int(
            self._call(
                self._append,
                keys=[self.stream, self.seq_key, self.meta_key],
                args=[view, version, rows, now_us(), payload, view_id],
            )
        )

    @staticmethod
    def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> LogEntry:
        return LogEntry(
            _offset(entry_id),
            fields[b"view"].decode(),
            int(fields[b"version"]),
            int(fields[b"rows"]),
            int(fields[b"at"]),
            bytes(fields[b"payload"]),
            view_id=fields.get(b"view_id", b"").decode(),
        )

    def _range(self, offset: int, limit: int | None) -> list[LogEntry]:
        raw = self._call(self.client.xrange, self.stream, min=f"0-{max(offset, 1)}", max="+", count=limit)
        return [self._entry(i, f) for i, f in raw]

    def read_from(self, offset: int, limit: int | None = None) -> list[LogEntry]:
        consumer = self._active
        if consumer is None or offset != self.committed(consumer) + 1:
            return self._range(offset, limit)
        count = limit or 1000
        # What an earlier instance of this consumer was given but never acknowledged...
        claimed = self._call(
            self.client.xautoclaim, self.stream, consumer, _WORKER, min_idle_time=0, start_id="0-0", count=count
        )[1]
        # ...then what the group has not delivered yet.
        fresh = self._call(self.client.xreadgroup, consumer, _WORKER, {self.stream: ">"}, count=count) or []
        entries = {_offset(i): self._entry(i, f) for i, f in claimed if f}
        for _, items in fresh:
            for i, f in items:
                entries[_offset(i)] = self._entry(i, f)
        ordered = [entries[o] for o in sorted(entries) if o >= offset]
        if ordered and ordered[0].offset != offset:
            return self._range(offset, limit)  # delivered earlier and trimmed from the PEL: read directly
        return ordered[:limit] if limit else ordered

    def pending(self, after: int) -> list[tuple[int, str, int]]:
        return [(e.offset, e.view, e.rows) for e in self._range(after + 1, None)]

    def end_offset(self) -> int:
        raw = self._call(self.client.get, self.seq_key)
        return int(raw) if raw else 0

    def start_offset(self) -> int:
        first = self._call(self.client.xrange, self.stream, min="-", max="+", count=1)
        return _offset(first[0][0]) if first else self.end_offset() + 1

    def size(self) -> int:
        return int(self._call(self.client.xlen, self.stream))

    def first_offset_since(self, appended_us: int) -> int | None:
        for entry in self._range(1, None):
            if entry.appended_us >= appended_us:
                return entry.offset
        return None

    def last_appended_us(self, view: str) -> int | None:
        raw = self._call(self.client.hget, self.meta_key, f"last:{view}")
        return int(raw) if raw else None

    # -- consumers -------------------------------------------------------------------
    def committed(self, consumer: str) -> int:
        raw = self._call(self.client.hget, self.meta_key, f"committed:{consumer}")
        return int(raw) if raw else 0

    def commit(self, consumer: str, offset: int) -> None:
        self._call(self._commit, keys=[self.stream, self.meta_key], args=[consumer, offset])

    @contextmanager
    def consumer_lock(self, consumer: str) -> Iterator[None]:
        with os_consumer_lock(self.directory, consumer, self._locks):
            previous, self._active = self._active, consumer
            try:
                yield
            finally:
                self._active = previous

    # -- retention ---------------------------------------------------------------------
    def truncate_before(self, offset: int) -> int:
        return int(self._call(self.client.xtrim, self.stream, minid=f"0-{offset}", approximate=False))

    def get_setting(self, key: str) -> str | None:
        raw = self._call(self.client.hget, self.meta_key, f"setting:{key}")
        return raw.decode() if raw is not None else None

    def set_setting(self, key: str, value: str) -> None:
        self._call(self.client.hset, self.meta_key, f"setting:{key}", value)
