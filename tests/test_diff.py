"""`rules.diff`: changes between two policy folders, the notices drafted from them, and `yibao rules diff`.

Each test copies the shipped policies twice and edits the YAML text of one copy, as an operator would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from rules.diff import Change, diff_policies, draft_notices, format_changes
from rules.loader import load_policies

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "rules" / "policies"

SH_CAP_2024 = """            2024-07-01:
              value: 630000
              quote: 2024年职工医保年度最高支付限额为63万元
"""
SH_CAP_2025 = SH_CAP_2024 + "            2025-07-01: 650000\n"
SH_IN_SERVICE_RATIO = """          - when: {member: in_service}
            deductible:
              source: secondary
              confidence: secondary
              values:
                2023-07-01: 1500
            ratio:
              source: secondary
              confidence: secondary
              values:
                2023-07-01: 0.85
"""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the hand-maintained files (the imported ones would change what a removed file means:
    the imported file of that region takes its place)."""
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        folder.mkdir()
        for file in POLICIES.glob("*.yaml"):
            shutil.copy(file, folder / file.name)
    return old, new


def edit(file: Path, before: str, after: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert text.count(before) == 1, f"{before!r} not found once in {file.name}"
    file.write_text(text.replace(before, after), encoding="utf-8")


def diff(old: Path, new: Path) -> list[Change]:
    return diff_policies(load_policies(old), load_policies(new))


def bot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "YIBAO_POLICY_DIR"}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)


# -- changes ---------------------------------------------------------------------------------------


def test_identical_folders_have_no_changes(dirs):
    old, new = dirs
    assert diff(old, new) == []
    assert draft_notices([], "zh") == {}
    assert format_changes([], "en") == "no changes"


def test_new_dated_cap_entry(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_CAP_2024, SH_CAP_2025)
    [change] = diff(old, new)
    assert change.region == "shanghai" and change.region_name.en == "Shanghai"
    assert (change.plan, change.visit, change.row, change.parameter) == ("employee", "inpatient", None, "fund_cap")
    assert (change.old, change.new) == (Decimal(630000), Decimal(650000))
    assert change.effective == dt.date(2025, 7, 1)
    assert change.kind == "added"
    assert change.source == "notice-2024"  # the series' default source
    assert draft_notices([change], "zh") == {"shanghai": (
        "上海医保政策更新：\n"
        "• 上海 职工医保 住院 统筹基金年度最高支付限额 63万 → 65万，自 2025-07-01 起\n"
        "如需按新政策重新估算，请发送 /start。")}
    assert draft_notices([change], "en") == {"shanghai": (
        "Shanghai insurance policy update:\n"
        "• Shanghai Employee insurance, inpatient: annual fund cap 630,000 → 650,000, from 2025-07-01\n"
        "Send /start for a new estimate under the new rules.")}


def test_the_2024_cap_raise(dirs):
    """The old folder lacks the 2024-07-01 entry: the value in force just before it (61万) is the old one."""
    old, new = dirs
    edit(old / "shanghai.yaml", SH_CAP_2024, "")
    [change] = diff(old, new)
    assert (change.old, change.new, change.effective, change.kind) == (
        Decimal(610000), Decimal(630000), dt.date(2024, 7, 1), "added")
    zh = draft_notices([change], "zh")["shanghai"]
    en = draft_notices([change], "en")["shanghai"]
    assert zh.splitlines()[1] == "• 上海 职工医保 住院 统筹基金年度最高支付限额 61万 → 63万，自 2024-07-01 起"
    assert en.splitlines()[1] == (
        "• Shanghai Employee insurance, inpatient: annual fund cap 610,000 → 630,000, from 2024-07-01")


def test_removed_entry(dirs):
    old, new = dirs
    edit(old / "shanghai.yaml", SH_CAP_2024, SH_CAP_2025)
    [change] = diff(old, new)
    assert (change.kind, change.old, change.new, change.effective, change.source) == (
        "removed", Decimal(650000), None, None, None)
    assert change.entry_date == dt.date(2025, 7, 1)
    assert draft_notices([change], "zh")["shanghai"].splitlines()[1] == (
        "• 上海 职工医保 住院 统筹基金年度最高支付限额 原定自 2025-07-01 起的 65万 已撤销")


def test_changed_ratio_in_a_row(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_IN_SERVICE_RATIO, SH_IN_SERVICE_RATIO.replace("0.85", "88%"))
    [change] = diff(old, new)
    assert (change.visit, change.row, change.parameter, change.kind) == (
        "inpatient", "member=in_service", "ratio", "changed")
    assert (change.old, change.new, change.effective, change.source) == (
        Decimal("0.85"), Decimal("0.88"), dt.date(2023, 7, 1), "secondary")
    assert draft_notices([change], "zh")["shanghai"].splitlines()[1] == (
        "• 上海 职工医保 住院（在职） 报销比例 85% → 88%，自 2023-07-01 起")
    assert draft_notices([change], "en")["shanghai"].splitlines()[1] == (
        "• Shanghai Employee insurance, inpatient (in service): reimbursement ratio 85% → 88%, from 2023-07-01")


def test_same_value_written_differently_is_no_change(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_IN_SERVICE_RATIO, SH_IN_SERVICE_RATIO.replace("0.85", '"85%"'))
    assert diff(old, new) == []


def test_by_level_ratio_in_a_conditioned_row(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", "2023-07-01: {1: 0.80, 2: 0.75, 3: 0.70}",
         "2023-07-01: {1: 0.80, 2: 0.75, 3: 0.70}\n                2025-07-01: {1: 0.82, 2: 0.75, 3: 0.70}")
    [change] = diff(old, new)
    assert change.row == "member=retired, retired_from=2001, age_max=69"
    assert change.old == {"1": Decimal("0.80"), "2": Decimal("0.75"), "3": Decimal("0.70")}
    assert draft_notices([change], "zh")["shanghai"].splitlines()[1] == (
        "• 上海 职工医保 门诊（2001年及以后退休，69岁及以下） 报销比例 一级 80%、二级 75%、三级 70% → "
        "一级 82%、二级 75%、三级 70%，自 2025-07-01 起")
    assert draft_notices([change], "en")["shanghai"].splitlines()[1] == (
        "• Shanghai Employee insurance, outpatient (retired 2001 or later, age ≤ 69): reimbursement ratio "
        "level 1: 80%, level 2: 75%, level 3: 70% → level 1: 82%, level 2: 75%, level 3: 70%, from 2025-07-01")


def test_amounts_in_wan_only_when_exact(dirs):
    old, new = dirs
    edit(new / "shenzhen.yaml", "2025-01-01: 10478.40", "2025-01-01: 10500")
    [change] = diff(old, new)
    assert change.row == "member=in_service, grade=1"
    assert draft_notices([change], "zh")["shenzhen"].splitlines()[1] == (
        "• 深圳 职工医保 门诊（在职，一档） 统筹基金年度最高支付限额 10,478.40 → 1.05万，自 2025-01-01 起")
    assert "annual fund cap 10,478.40 → 10,500, from 2025-01-01" in draft_notices([change], "en")["shenzhen"]


def test_bands(dirs):
    old, new = dirs
    edit(new / "luoyang.yaml", "- {above: 100000, ratio: 0.70}", "- {above: 120000, ratio: 0.70}")
    [change] = diff(old, new)
    assert change.parameter == "ratio" and change.kind == "changed"
    line = draft_notices([change], "zh")["luoyang"].splitlines()[1]
    assert "0以上 60%；10万以上 70% → 0以上 60%；12万以上 70%" in line


def test_regions_added_and_removed(dirs):
    old, new = dirs
    (new / "zigong.yaml").unlink()
    text = (new / "beijing.yaml").read_text(encoding="utf-8")
    text = text.replace("region: beijing", "region: testland").replace("{zh: 北京, en: Beijing}",
                                                                       "{zh: 测试市, en: Testland}")
    lines = [("aliases: [tl]" if line.startswith("aliases:") else line) for line in text.splitlines()]
    (new / "testland.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    changes = diff(old, new)
    assert [(c.region, c.plan, c.parameter, c.kind) for c in changes] == [
        ("testland", None, "*", "added"), ("zigong", None, "*", "removed")]
    zh = draft_notices(changes, "zh")
    assert zh["testland"] == "测试市医保政策更新：\n• 新增地区：测试市\n如需按新政策重新估算，请发送 /start。"
    assert zh["zigong"].splitlines()[1] == "• 自贡 不再提供估算"
    en = draft_notices(changes, "en")
    assert en["testland"].splitlines()[1] == "• New region: Testland"
    assert en["zigong"].splitlines()[1] == "• Zigong is no longer covered"


def test_visit_removed_is_one_change(dirs):
    old, new = dirs
    text = (new / "shanghai.yaml").read_text(encoding="utf-8")
    (new / "shanghai.yaml").write_text(text[:text.index("      outpatient:")], encoding="utf-8")
    [change] = diff(old, new)
    assert (change.plan, change.visit, change.row, change.parameter, change.kind) == (
        "employee", "outpatient", None, "*", "removed")
    assert draft_notices([change], "en")["shanghai"].splitlines()[1] == (
        "• Shanghai Employee insurance, outpatient is no longer covered")


def test_several_changes_make_one_notice_per_region(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_CAP_2024, SH_CAP_2025)
    edit(new / "shanghai.yaml", SH_IN_SERVICE_RATIO, SH_IN_SERVICE_RATIO.replace("0.85", "0.88"))
    changes = diff(old, new)
    assert [c.parameter for c in changes] == ["fund_cap", "ratio"]
    assert draft_notices(changes, "zh") == {"shanghai": (
        "上海医保政策更新：\n"
        "• 上海 职工医保 住院 统筹基金年度最高支付限额 63万 → 65万，自 2025-07-01 起\n"
        "• 上海 职工医保 住院（在职） 报销比例 85% → 88%，自 2023-07-01 起\n"
        "如需按新政策重新估算，请发送 /start。")}
    table = format_changes(changes, "en").splitlines()
    assert table[0].split() == ["kind", "region", "plan/visit/row", "parameter", "old", "→", "new", "effective"]
    assert "630,000.00 → 650,000.00" in table[1] and "2025-07-01" in table[1]
    assert "employee/inpatient/member=in_service" in table[2] and "85% → 88%" in table[2]
    assert "统筹基金年度最高支付限额" in format_changes(changes, "zh")


# -- the command -----------------------------------------------------------------------------------


def test_cli_prints_the_changes(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_CAP_2024, SH_CAP_2025)
    done = bot("rules", "diff", str(old), str(new), "--lang", "en")
    assert done.returncode == 0, done.stderr
    assert "Shanghai (shanghai)" in done.stdout and "630,000.00 → 650,000.00" in done.stdout
    assert "2025-07-01" in done.stdout
    notices = bot("rules", "diff", str(old), str(new), "--notices")
    assert notices.returncode == 0, notices.stderr
    assert "上海 职工医保 住院 统筹基金年度最高支付限额 63万 → 65万，自 2025-07-01 起" in notices.stdout


def test_cli_json(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_CAP_2024, SH_CAP_2025)
    done = bot("rules", "diff", str(old), str(new), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{
        "region": "shanghai", "region_name": {"zh": "上海", "en": "Shanghai"}, "plan": "employee",
        "visit": "inpatient", "row": None, "parameter": "fund_cap", "old": "630,000.00", "new": "650,000.00",
        "effective": "2025-07-01", "entry_date": "2025-07-01", "kind": "added", "source": "notice-2024"}]


def test_cli_identical(dirs):
    old, new = dirs
    done = bot("rules", "diff", str(old), str(new))
    assert (done.returncode, done.stdout.strip()) == (0, "no changes")
    done = bot("rules", "diff", str(old), str(new), "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, [])


def test_cli_invalid_folder(dirs):
    old, new = dirs
    edit(new / "shanghai.yaml", SH_IN_SERVICE_RATIO, SH_IN_SERVICE_RATIO.replace("0.85", "1.85"))
    done = bot("rules", "diff", str(old), str(new))
    assert done.returncode == 1
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert "shanghai.yaml:" in done.stderr and "between 0 and 1" in done.stderr
    line = next(ln for ln in done.stderr.splitlines() if "shanghai.yaml:" in ln)
    assert line.strip().split(":")[1].isdigit()  # file:line
    missing = bot("rules", "diff", str(old), str(old.parent / "nowhere"))
    assert missing.returncode == 1 and "no such policy folder" in missing.stderr
