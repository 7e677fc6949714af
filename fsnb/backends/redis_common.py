"""What the Redis online store and the Redis log share: one way to connect, one way to
turn a client error into a one-line ``StoreError`` with the URL's password hidden."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fsnb.config import redact_url, scrub
from fsnb.errors import StoreError, one_line

INSTALL_HINT = "pip install fsnb[redis]"


def redis_module(url: str) -> Any:
    """The ``redis`` client package, or a one-line StoreError saying how to install it."""
    try:
        import redis
    except ImportError:
        msg = f"the store is configured for Redis ({redact_url(url)}) but the redis package is missing; {INSTALL_HINT}"
        raise StoreError(msg) from None
    return redis


def connect(url: str) -> Any:
    """A client that has answered PING (else a StoreError naming the URL, its password hidden)."""
    redis = redis_module(url)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        msg = f"cannot reach Redis at {redact_url(url)}: {scrub(one_line(exc), url)}; start redis-server or fix the URL"
        raise StoreError(msg) from None
    return client


def check_reachable(url: str) -> None:
    """A StoreError (its password hidden) unless a Redis server answers PING at url."""
    connect(url).close()


class RedisCalls:
    """Calls into a Redis client whose errors become one line: what failed, where, and the fix."""

    def __init__(self, url: str, what: str, fix: str) -> None:
        self.url = url  # may hold a password: show redact_url(self.url)
        self._what, self._fix = what, fix
        self._error: type[Exception] = redis_module(url).RedisError

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._error as exc:
            msg = f"{self._what} at {redact_url(self.url)} failed: {scrub(one_line(exc), self.url)}; {self._fix}"
            raise StoreError(msg) from None
