"""What the `yibao` command prints for people: settings, tables with Chinese in them, a closed pipe."""

from __future__ import annotations

import re
import subprocess
import sys

from test_cli import ROOT, bot

from rules.columns import table, width


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


def _column_of(line: str, cell: str) -> int:
    """The terminal column at which `cell` starts in `line` (CJK characters are two columns wide)."""
    return width(line[: line.index(cell)])


def test_estimate_table_lines_up_in_chinese():
    done = bot("estimate", "--region", "上海", "--plan", "employee", "--member", "in_service", "--visit", "inpatient",
               "--level", "3", "--total", "20000", "--date", "2025-03-01")
    assert done.returncode == 0, done.stderr
    figures = done.stdout.split("\n\n")[0].splitlines()
    assert len(figures) == 7 and figures[0].startswith("总费用")
    assert len({width(line) for line in figures}) == 1, figures  # the amounts end in one column


def test_rules_show_lines_up_in_chinese():
    done = bot("rules", "show", "深圳", "--date", "2025-03-01")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  inpatient — "))
    block = []  # the employee plan's inpatient parameters: one aligned block
    for line in lines[first + 1:]:
        if not line.startswith("    ") or line.strip().startswith("when "):
            break
        block.append(line)
    assert len(block) >= 3
    since_columns = {_column_of(line, "since") for line in block}
    value_columns = {_column_of(line, re.split(r"\s{2,}", line.strip())[-1]) for line in block}  # value last
    assert len(since_columns) == 1 and len(value_columns) == 1, block


def test_columns_count_wide_and_combining_characters():
    assert width("起付线") == 6 and width("abc") == 3 and width("e\u0301") == 1
    assert table([["起付线", "1"], ["ratio", "2"]]) == "起付线  1\nratio   2"
