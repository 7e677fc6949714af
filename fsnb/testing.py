"""Helpers for tests and benchmarks: a private redis-server on a free loopback port, and a
writer killed mid-write (the crash tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisMissing(RuntimeError):
    """No redis-server binary on this machine."""


def redis_binary() -> str:
    binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if binary is None:
        msg = "redis-server is not installed; `make test` installs Debian's redis-server (apt-get install redis-server)"
        raise RedisMissing(msg)
    return binary


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, persistent: bool = False) -> None:
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
        ]
        # AOF with fsync always: a restart keeps every acknowledged write (the log tests need it).
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""] if persistent else ["--appendonly", "no", "--save", ""]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        msg = f"redis-server did not start on port {self.port}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@contextmanager
def running_redis(directory: Path, *, persistent: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start(persistent=persistent)
    try:
        yield server
    finally:
        server.stop()


def kill_mid_write(argv: list[str], *, pause: float, deadline: float = 400.0) -> list[str]:
    """Run ``python argv...`` in a session of its own, wait for its first line starting
    with "committed" (a version to fall back to), wait pause seconds more (into a later
    write), SIGKILL it with its children (a JVM) and return every line it printed."""
    proc = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
    try:
        reader.start()
        end = time.monotonic() + deadline
        while not any(ln.startswith("committed") for ln in lines) and proc.poll() is None:
            if time.monotonic() > end:
                msg = f"the writer printed nothing committed in {deadline:g} s"
                raise AssertionError(msg)
            time.sleep(0.05)
        if proc.poll() is not None:
            msg = "the writer died before the kill"
            raise AssertionError(msg)
        time.sleep(pause)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have finished just now
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(5)
    return lines
