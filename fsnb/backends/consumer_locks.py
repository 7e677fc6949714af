"""The consumers of a feature log and the OS file locks that make each one a single
applier, whatever the log backend (the lock files live in the store directory, which is
always local to the process applying the entries)."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CONSUMERS = ("online", "offline")


@contextmanager
def os_consumer_lock(directory: Path, consumer: str, held: dict[str, int]) -> Iterator[None]:
    """An OS file lock ``log.<consumer>.lock`` in the store directory, released by the
    kernel when the holder dies (even by SIGKILL). Re-entrant within one process through
    ``held`` (a push inside a producer session already holds the offline lock)."""
    with _GUARD:
        in_process = _THREAD_LOCKS.setdefault((str(directory), consumer), threading.RLock())
    with in_process:  # threads of this process take turns; the holding thread re-enters
        if consumer in held:
            yield
            return
        fd = os.open(directory / f"log.{consumer}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held[consumer] = fd
            try:
                yield
            finally:
                del held[consumer]
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


_GUARD = threading.Lock()
_THREAD_LOCKS: dict[tuple[str, str], threading.RLock] = {}


def consumer_active(directory: Path, consumer: str) -> bool:
    """Is some process applying (or holding a producer session for) this consumer right now?"""
    path = directory / f"log.{consumer}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
