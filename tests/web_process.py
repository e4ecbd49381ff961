"""`yibao web` as a real process for the tests: started on a free port, ready once /readyz says 200,
stopped with SIGTERM. What it printed and its exit code are kept for the test to check."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WebProcess:
    url: str
    port: int
    code: int | None = None  # set once stopped
    printed: str = ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def yibao_web(settings: dict[str, str], tmp_path: Path, ready_s: float = 30) -> Iterator[WebProcess]:
    """`python -m bot web` with these settings added to the environment (WEB_CHAT removed)."""
    port = _free_port()
    env = {**os.environ, **settings,
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    env.pop("WEB_CHAT", None)
    web = WebProcess(f"http://127.0.0.1:{port}", port)
    out = (tmp_path / f"web-{port}.out").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "bot", "web", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                with urllib.request.urlopen(web.url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out.seek(0)
                pytest.fail(f"`yibao web` did not come up:\n{out.read()}")
            time.sleep(0.1)
        yield web
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            web.code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            web.code = proc.wait()
        out.seek(0)
        web.printed = out.read()
        out.close()
