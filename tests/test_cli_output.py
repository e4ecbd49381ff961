"""What the `yibao` command prints for people: settings, tables with Chinese in them, a closed pipe."""

from __future__ import annotations

import subprocess
import sys

from test_cli import ROOT, bot


def test_config_prints_values_as_they_are_written():
    done = bot("config", env={"ADMIN_IDS": "67890, 12345", "PORT": "8081", "TELEGRAM_BOT_TOKEN": "1:abc",
                              "WEB_CHAT": "yes", "REDIS_URL": ""})
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(None, 1)[1] for line in done.stdout.splitlines()[1:]}
    assert "frozenset" not in done.stdout and "Secret" not in done.stdout and "1:abc" not in done.stdout
    assert rows["ADMIN_IDS"].split() == ["12345,67890", "environment"]
    assert rows["PORT"].split() == ["8081", "environment"]
    assert rows["WEB_CHAT"].split() == ["true", "environment"]
    assert rows["TELEGRAM_BOT_TOKEN"].startswith("(set, hidden)")
    assert rows["REDIS_URL"].split() == ["(not", "set)", "default"]
    assert rows["HOST"].split() == ["0.0.0.0", "default"]
    # One column start for every value.
    starts = {line.index(line.split()[1]) for line in done.stdout.splitlines()}
    assert len(starts) == 1


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`yibao … | head -1`: the pipe closes under the writer (a megabyte, far more than a pipe holds)."""
    code = ("import sys, bot.cli as cli; cli.settings_table = lambda settings: 'x' * 1_000_000; "
            "sys.exit(cli.main(['config']))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(10) == b"x" * 10
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141
    assert err == ""
