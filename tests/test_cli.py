"""`python -m bot estimate` and `python -m bot rules show`, run as a user would (a subprocess), against
the test policies of tests/policies_props. Expected figures are worked out by hand (see
tests/test_engine_properties.py for the policy's figures)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROPS_DIR = ROOT / "tests" / "policies_props"
AMOUNT_RE = re.compile(r"^\d+\.\d{2}$")

# in-service, inpatient 三级, 2024-03-01 (cap 100,000), fund already paid 60,000
MID_BAND = ["--region", "propland", "--plan", "employee", "--member", "in_service", "--visit", "inpatient",
            "--level", "3", "--total", "80000", "--self-pay", "0", "--class-b", "0", "--ytd-fund", "60000",
            "--date", "2024-03-01"]


def bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "YIBAO_POLICY_DIR"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=60)


def estimate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return bot("estimate", "--policy-dir", str(PROPS_DIR), *args, env=env)


def assert_one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stdout == ""
    return lines[0]


def test_json_estimate():
    done = estimate(*MID_BAND, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    expected_keys = {"region", "date", "compliant", "deductible", "fund", "supplementary", "critical_illness",
                     "personal", "steps", "warnings", "sources"}
    assert expected_keys <= set(data)
    assert data["region"] == "propland" and data["date"] == "2024-03-01"
    for key in ("compliant", "deductible", "fund", "supplementary", "critical_illness", "personal", "total"):
        assert isinstance(data[key], str) and AMOUNT_RE.match(data[key]), (key, data[key])
    # by hand: deductible 1,000; bands 29,000 × 0.8 = 23,200 and 50,000 × 0.85 = 42,500; 40,000 left under
    # the cap; above it 50,000 − 16,800 / 0.85 = 30,235.294…; supplementary × 0.8 = 24,188.24
    assert {k: data[k] for k in ("compliant", "deductible", "fund", "supplementary", "critical_illness",
                                 "personal")} == {
        "compliant": "80000.00", "deductible": "1000.00", "fund": "40000.00", "supplementary": "24188.24",
        "critical_illness": "0.00", "personal": "15811.76"}
    assert isinstance(data["steps"], list) and data["steps"]
    assert all({"key", "text", "amount", "used"} <= set(s) for s in data["steps"])
    assert data["warnings"] == []
    assert data["sources"] == [{"id": "notice", "title": "Propland 医保局通知（测试用）",
                                "where": "https://example.org/propland/notice"}]


def test_json_warnings_in_english():
    # resident aged 65, 二级, no split given: seed-only deductible → unverified first
    done = estimate("--region", "pl", "--plan", "resident", "--age", "65", "--visit", "inpatient", "--level", "2",
                    "--total", "10000", "--date", "2024-09-01", "--json", "--lang", "en")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    # no fund cap on record: the points count it as spent (the most the person pays), the ranges bound it;
    # (10000 − 400) × 70% = 6720 below the cap, or up to all 9600 from a fund above a spent cap
    assert (data["fund"], data["personal"]) == ("0.00", "10000.00")
    assert data["exact"] is False
    assert data["unknown"] == ["fund_cap", "supplementary_ratio", "supplementary_cap"]
    assert data["ranges"]["fund"] == ["0.00", "6720.00"]
    assert data["ranges"]["personal"] == ["400.00", "10000.00"]
    assert data["warnings"][0].startswith("Not on record: annual fund cap")
    assert data["warnings"][1].startswith("deductible (") and "unverified" in data["warnings"][1]
    assert {s["id"] for s in data["sources"]} == {"seed", "notice"}


def test_text_output_in_english():
    done = estimate(*MID_BAND, "--lang", "en")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^Total\s+80,000\.00$", out, re.M)
    assert re.search(r"^Basic fund\s+40,000\.00$", out, re.M)
    assert re.search(r"^Supplementary fund\s+24,188\.24$", out, re.M)
    assert re.search(r"^Person pays\s+15,811\.76$", out, re.M)
    assert "Insurance year: 2023-07-01 – 2024-06-30" in out
    assert "Steps:" in out and "Annual fund cap 100,000.00" in out
    assert "Sources:" in out
    assert not re.search(r"[\u4e00-\u9fff]", out.split("Sources:")[0]), "Chinese text before the sources"


def test_text_output_in_chinese_by_default():
    done = estimate(*MID_BAND)
    assert done.returncode == 0
    assert "统筹基金" in done.stdout and "24,188.24" in done.stdout


def test_region_found_by_alias_and_chinese_name():
    for name in ("pl", "测试州", "Propland"):
        args = [*MID_BAND]
        args[1] = name
        done = estimate(*args, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["region"] == "propland"


def test_a_missing_detail_is_named_as_a_missing_flag_in_json():
    done = estimate("--region", "propland", "--plan", "employee", "--member", "in_service", "--visit",
                    "outpatient", "--level", "3", "--total", "100", "--date", "2024-09-01", "--json")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    data = json.loads(done.stdout)
    assert data["missing"] == ["age"]
    assert data["error"] == "--age is needed for this plan in Propland"


def test_a_missing_detail_is_named_as_a_missing_flag_in_one_line():
    done = estimate("--region", "propland", "--plan", "employee", "--visit", "outpatient", "--level", "3",
                    "--total", "100", "--date", "2024-09-01", "--lang", "en")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "yibao estimate: --age and --member are needed for this plan in Propland\n"


def test_cannot_estimate_when_the_policy_knows_neither_deductible_nor_ratio():
    done = estimate("--region", "propland", "--plan", "employee", "--member", "in_service", "--visit",
                    "inpatient", "--level", "3", "--total", "100", "--date", "2019-09-01", "--lang", "en")
    assert done.returncode == 2
    assert "lacks what this estimate needs: deductible, reimbursement ratio" in done.stdout


BASE = ["--region", "propland", "--plan", "employee", "--member", "in_service", "--visit", "inpatient",
        "--level", "3"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--region", "nowhere", "--plan", "employee", "--visit", "inpatient", "--level", "3", "--total", "100"],
     "unknown region 'nowhere'"),
    ([*BASE, "--total", "-5"], "must be zero or more"),
    ([*BASE, "--total=-5"], "must be zero or more"),
    ([*BASE, "--total", "1.005"], "more than two decimals"),
    ([*BASE, "--total", "ten"], "is not an amount"),
    ([*BASE, "--total", "100", "--date", "2024-13-01"], "is not a date"),
    ([*BASE, "--total", "100", "--date", "2024-02-30"], "is not a date"),
    ([*BASE, "--total", "100", "--self-pay", "200"], "cannot exceed total"),
    ([*BASE, "--total", "100", "--self-pay", "60", "--class-b", "50"], "cannot exceed total"),
    ([*BASE, "--total", "100", "--admission", "0"], "1 or more"),
    ([*BASE[:-1], "9", "--total", "100"], "invalid choice"),
    (BASE, "required"),
    ([*BASE, "--total", "100", "--plan", "company"], "invalid choice"),
    ([*BASE, "--total", "1e26"], "beyond any plausible bill"),
    ([*BASE, "--total", "100000000.01"], "beyond any plausible bill"),
    ([*BASE, "--total", "NaN"], "is not an amount"),
    ([*BASE, "--total", "Infinity"], "is not an amount"),
    ([*BASE, "--total", "12O00"], "is not an amount"),
    ([*BASE, "--total", "100", "--ytd-fund", "9e99"], "beyond any plausible bill"),
    ([*BASE, "--total", "100", "--ytd-critical", "-1"], "must be zero or more"),
    ([*BASE, "--total", "100", "--admission", "99999999999999999999"], "from 1 to 1000"),
    ([*BASE, "--total", "100", "--where", "abroad"], "invalid choice"),
    ([*BASE[:-1], "out_of_area", "--total", "100"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    line = assert_one_line_error(estimate(*args))
    assert needle in line


def test_no_command_is_a_one_line_error():
    assert_one_line_error(bot())


def test_estimate_honours_yibao_policy_dir():
    done = bot("estimate", *MID_BAND, "--json", env={"YIBAO_POLICY_DIR": str(PROPS_DIR)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fund"] == "40000.00"


def test_rules_show_by_date():
    before = bot("rules", "show", "propland", "--date", "2024-06-30", "--lang", "en", "--policy-dir", str(PROPS_DIR))
    on = bot("rules", "show", "pl", "--date", "2024-07-01", "--lang", "en", "--policy-dir", str(PROPS_DIR))
    assert before.returncode == on.returncode == 0
    assert re.search(r"annual fund cap +since 2020-01-01 +notice +100,000\.00\n", before.stdout), before.stdout
    assert re.search(r"annual fund cap +since 2024-07-01 +notice +200,000\.00\n", on.stdout), on.stdout
    assert "Insurance year 2023-07-01 – 2024-06-30" in before.stdout
    assert "Insurance year 2024-07-01 – 2025-06-30" in on.stdout
    assert "[seed-only]" in on.stdout
    # the resident 60+ ratio ends on 2026-01-01: not shown from then on
    later = bot("rules", "show", "propland", "--date", "2026-01-01", "--lang", "en", "--policy-dir", str(PROPS_DIR))
    ratio_70 = re.compile(r"reimbursement ratio +since \S+ +\S+( \[[a-z-]+\])? +70%\n")
    assert ratio_70.search(on.stdout) and not ratio_70.search(later.stdout)


def test_rules_show_unknown_region_exits_2():
    line = assert_one_line_error(bot("rules", "show", "nowhere", "--policy-dir", str(PROPS_DIR)))
    assert "unknown region" in line


def test_rules_show_bad_date_exits_2():
    line = assert_one_line_error(bot("rules", "show", "propland", "--date", "2024-13-01", "--policy-dir",
                                     str(PROPS_DIR)))
    assert "is not a date" in line


def estimate_real(*args: str) -> dict:
    """`yibao estimate --json` over the shipped policies."""
    done = bot("estimate", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_luoyang_gives_the_certain_fund_and_a_range_for_the_person():
    # (50,000 − 480) × 60% = 29,712 exactly; 大病 bands unknown above the threshold 11,000 of the burden
    # 20,288: 0 … 9,288; the person 11,000 … 20,288
    data = estimate_real("--region", "洛阳", "--plan", "employee", "--member", "in_service", "--visit",
                         "inpatient", "--level", "2", "--total", "50000", "--date", "2025-06-01")
    assert (data["fund"], data["personal"], data["exact"]) == ("29712.00", "20288.00", False)
    assert data["ranges"]["personal"] == ["11000.00", "20288.00"]
    assert data["ranges"]["critical_illness"] == ["0.00", "9288.00"]
    assert "fund" not in data["ranges"]
    assert data["unknown"] == ["critical_illness_bands", "critical_illness_cap"]


def test_beijing_with_a_class_b_amount_still_estimates():
    # 北京 in-service 三级, 50,000 of which 10,000 乙类 whose pay-first share is not on record: a range, not
    # a refusal (more information never gives less answer). Compliant 50,000 − 10,000 × (100% … 0%).
    data = estimate_real("--region", "北京", "--plan", "employee", "--member", "in_service", "--visit",
                         "inpatient", "--level", "3", "--total", "50000", "--self-pay", "0", "--class-b",
                         "10000", "--date", "2025-03-01")
    assert data["exact"] is False and data["unknown"] == ["class_b_self_ratio"]
    assert data["ranges"]["compliant"] == ["40000.00", "50000.00"]
    low, high = (float(x) for x in data["ranges"]["personal"])
    assert low < high == float(data["personal"])


def test_shenzhen_out_of_the_city_keeps_the_hospital_tier():
    # 一档 in service, 二级 hospital, emergency out of the city: 二级 deductible 400 and 92% × 90%:
    # (20,000 − 400) × 82.8% = 16,228.80. Locally: (20,000 − 400) × 92% = 18,032.
    args = ["--region", "深圳", "--plan", "employee", "--grade", "1", "--member", "in_service", "--visit",
            "inpatient", "--level", "2", "--total", "20000", "--self-pay", "0", "--class-b", "0",
            "--date", "2025-03-01"]
    away = estimate_real(*args, "--where", "emergency")
    home = estimate_real(*args)
    assert (away["deductible"], away["fund"], away["exact"]) == ("400.00", "16228.80", True)
    assert (home["deductible"], home["fund"]) == ("400.00", "18032.00")


def test_a_stale_yearly_figure_is_listed():
    data = estimate_real("--region", "上海", "--plan", "employee", "--member", "in_service", "--visit",
                         "inpatient", "--level", "3", "--total", "20000", "--date", "2026-08-01")
    assert data["stale"] == [{"parameter": "fund_cap", "last_known": "2024-07-01"}]
    assert data["warnings"][0].startswith("2026 年度数据尚未收录，按 2024 年度估算")
