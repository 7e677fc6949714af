"""The online store in Redis: one hash per (view, entity), for many application servers.

Layout (``<ns>`` is the store's id, so several stores can share a database)::

    fsnb:<ns>:v:<view>:<key JSON>   hash  _t, _c, _s (event/created µs, sequence), f:<feature> -> msgpack value
    fsnb:<ns>:m:<view>              hash  features (JSON), rows, max_t, wm_end, wm_seq, updated_at

Upserts run in a Lua script, so "never replace a newer value" is decided atomically
on the server; a batch of rows is one script call. Between begin() and commit() the
calls (and the watermark) are queued in one MULTI/EXEC transaction, so a view's
materialization lands whole or not at all, as it does in SQLite. Reads are one HMGET
(one entity) or one pipeline of HMGETs (many): one round trip either way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from fsnb.backends.online_values import CREATED, SEQ, TS, reader_basics
from fsnb.backends.redis_common import RedisCalls, connect
from fsnb.config import redact_url
from fsnb.definitions import FeatureView

_UPSERT = """
local meta = ARGV[1]
local nf = tonumber(ARGV[2])
local width = 3 + nf
local base = 2 + nf
local written = 0
local max_s = redis.call('HGET', meta, 'max_t')
local max_n = -1
if max_s then max_n = tonumber(max_s) end
for i, key in ipairs(KEYS) do
  local o = base + (i - 1) * width
  local ts, cr, sq = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local cur = redis.call('HMGET', key, '_t', '_c', '_s')
  local newer = true
  if cur[1] then
    local ct, cc, cs = tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3])
    if ts < ct or (ts == ct and (cr < cc or (cr == cc and sq < cs))) then newer = false end
  else
    redis.call('HINCRBY', meta, 'rows', 1)
  end
  if newer then
    local args = {'_t', ARGV[o + 1], '_c', ARGV[o + 2], '_s', ARGV[o + 3]}
    for j = 1, nf do
      args[#args + 1] = ARGV[2 + j]
      args[#args + 1] = ARGV[o + 3 + j]
    end
    redis.call('HSET', key, unpack(args))
    written = written + 1
    if ts > max_n then
      max_n = ts
      max_s = ARGV[o + 1]
    end
  end
end
if max_s then redis.call('HSET', meta, 'max_t', max_s) end
return written
"""

_ROWS_PER_CALL = 500
_CALLS_PER_PIPELINE = 8


def entity_key(prefix: str, key: Sequence[Any]) -> str:
    """Type-aware and unambiguous: (42,) and ('42',), (1, 23) and (12, 3) all differ."""
    return prefix + json.dumps(list(key), separators=(",", ":"), default=str)


class RedisOnlineStore:
    """The online store (fsnb.backends.contracts.OnlineBackend) in Redis."""

    stale_errors: tuple[type[Exception], ...] = ()

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url  # may hold a password: show redact_url(self.url)
        self.client = connect(url)
        self._call = RedisCalls(url, "Redis", "check that redis-server is running")
        self.namespace = namespace
        self._script = self.client.register_script(_UPSERT)
        self._meta_cache: dict[str, list[str]] = {}
        self._local = threading.local()  # per thread: a writer's transaction is its own

    @property
    def _tx(self) -> Any:
        """This thread's MULTI/EXEC pipeline between begin() and commit() (None outside)."""
        return getattr(self._local, "tx", None)

    @_tx.setter
    def _tx(self, value: Any) -> None:
        self._local.tx = value

    def __repr__(self) -> str:
        return f"RedisOnlineStore({redact_url(self.url)!r})"

    # -- names ---------------------------------------------------------------
    def _prefix(self, name: str) -> str:
        return f"fsnb:{self.namespace}:v:{name}:"

    def _meta(self, name: str) -> str:
        return f"fsnb:{self.namespace}:m:{name}"

    def close(self) -> None:
        self.client.close()

    # -- schema ----------------------------------------------------------------
    def columns(self, name: str) -> list[str]:
        cols = self._meta_cache.get(name)
        if cols is None:
            raw = self._call(self.client.hget, self._meta(name), "features")
            if raw is None:
                return []
            cols = [TS, CREATED, SEQ, *json.loads(raw)]
            self._meta_cache[name] = cols
        return cols

    def forget_columns(self) -> None:
        self._meta_cache.clear()

    def ensure_table(self, view: FeatureView) -> None:
        known = [c for c in self.columns(view.name) if c not in (TS, CREATED, SEQ)]
        features = list(dict.fromkeys([*known, *view.feature_names]))
        self._call(self.client.hset, self._meta(view.name), "features", json.dumps(features))
        self._meta_cache.pop(view.name, None)

    def drop(self, name: str) -> None:
        keys = list(self._call(self.client.scan_iter, match=self._prefix(name) + "*", count=1000))
        for i in range(0, len(keys), 1000):
            self._call(self.client.unlink, *keys[i : i + 1000])
        self._call(self.client.delete, self._meta(name))
        self._meta_cache.pop(name, None)

    def is_empty(self, name: str) -> bool:
        return self.count(name) == 0

    def count(self, name: str) -> int:
        raw = self._call(self.client.hget, self._meta(name), "rows")
        return int(raw) if raw else 0

    # -- writes ---------------------------------------------------------------
    def begin(self) -> None:
        self._tx = self.client.pipeline(transaction=True)

    def write_rows(self, view: FeatureView, rows: Iterable[Sequence[Any]], *, fresh: bool = False) -> None:
        """Upsert rows (keys..., ts_us, created_us, seq, features...) with the Lua script."""
        del fresh  # the script is as fast on an empty store
        nkeys = len(view.entity_columns)
        fields = [f"f:{f}" for f in view.feature_names]
        head = [self._meta(view.name), len(fields), *fields]
        prefix = self._prefix(view.name)
        pack = msgpack.packb
        pipe = self._tx if self._tx is not None else self.client.pipeline(transaction=False)
        queued = 0
        keys: list[str] = []
        args: list[Any] = []
        for row in rows:
            keys.append(entity_key(prefix, row[:nkeys]))
            args.extend((row[nkeys], row[nkeys + 1], row[nkeys + 2]))
            args.extend(pack(v) for v in row[nkeys + 3 :])
            if len(keys) == _ROWS_PER_CALL:
                self._script(keys=keys, args=[*head, *args], client=pipe)
                keys, args = [], []
                queued += 1
                if queued == _CALLS_PER_PIPELINE and self._tx is None:
                    self._call(pipe.execute)
                    queued = 0
        if keys:
            self._script(keys=keys, args=[*head, *args], client=pipe)
            queued += 1
        if queued and self._tx is None:
            self._call(pipe.execute)

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            self._call(tx.execute)

    def rollback(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.reset()

    def watermark(self, name: str) -> tuple[int | None, int | None]:
        end, seq = self._call(self.client.hmget, self._meta(name), "wm_end", "wm_seq")
        return (int(end) if end else None, int(seq) if seq else None)

    def set_watermark(self, name: str, end_us: int | None, seq: int | None) -> None:
        mapping = {"updated_at": repr(time.time())}
        if end_us is not None:
            mapping["wm_end"] = str(end_us)
        if seq is not None:
            mapping["wm_seq"] = str(seq)
        if self._tx is not None:
            self._tx.hset(self._meta(name), mapping=mapping)
        else:
            self._call(self.client.hset, self._meta(name), mapping=mapping)

    def last_update(self, name: str) -> float | None:
        raw = self._call(self.client.hget, self._meta(name), "updated_at")
        return float(raw) if raw else None

    def latest_event_us(self, name: str) -> int | None:
        raw = self._call(self.client.hget, self._meta(name), "max_t")
        return int(raw) if raw else None

    def dump(self, view: FeatureView) -> list[tuple[Any, ...]]:
        """Every stored row as (keys..., ts_us, features...) (for checks and tests)."""
        prefix = self._prefix(view.name)
        keys = list(self._call(self.client.scan_iter, match=prefix + "*", count=1000))
        pipe = self.client.pipeline(transaction=False)
        fields = [f"f:{f}" for f in view.feature_names]
        for k in keys:
            pipe.hmget(k, "_t", *fields)
        out = []
        for k, values in zip(keys, self._call(pipe.execute), strict=True):
            entity = json.loads(k.decode()[len(prefix) :])
            ts = int(values[0])
            feats = [None if v is None else msgpack.unpackb(v) for v in values[1:]]
            out.append((*entity, ts, *feats))
        return out

    def reader(self, view: FeatureView, features: list[str], output_names: list[str]) -> RedisViewReader:
        return RedisViewReader(
            **reader_basics(self.columns(view.name), view, features, output_names),
            prefix=self._prefix(view.name),
            fields=["_t", *(f"f:{f}" for f in features)],
            store=self,
        )


@dataclass
class RedisViewReader:
    view: FeatureView
    features: list[str]
    output_names: list[str]
    decoders: list[Callable[[Any], Any] | None]
    ttl_us: int | None
    prefix: str
    fields: list[str]
    exists: bool
    store: RedisOnlineStore

    def read(self, key_columns: list[list[Any]], now: int) -> list[list[Any]]:
        keys = list(zip(*key_columns, strict=True))
        nfeat = len(self.features)
        if not self.exists:
            return [[None] * len(keys) for _ in range(nfeat)]
        client = self.store.client
        if len(keys) == 1:
            results = [self.store._call(client.hmget, entity_key(self.prefix, keys[0]), self.fields)]
        else:
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(entity_key(self.prefix, k), self.fields)
            results = self.store._call(pipe.execute)
        oldest = -(2**63) if self.ttl_us is None else now - self.ttl_us
        unpack = msgpack.unpackb
        columns: list[list[Any]] = [[] for _ in range(nfeat)]
        for values in results:
            fresh = values[0] is not None and int(values[0]) >= oldest
            for i in range(nfeat):
                raw = values[i + 1] if fresh else None
                value = None if raw is None else unpack(raw)
                dec = self.decoders[i]
                columns[i].append(dec(value) if dec and value is not None else value)
        return columns
