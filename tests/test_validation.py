"""The loader refuses broken policy files with the file, line and field path of every problem.

Each test writes a real file into tmp_path (a valid policy with one thing broken), loads the folder and
checks the exact error(s). Lines are found in the text written, by a needle that occurs once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rules.loader import PolicyError, PolicyErrors, load_policies

ROOT = Path(__file__).resolve().parent.parent
PROPS_DIR = ROOT / "tests" / "policies_props"

VALID = """\
# a minimal valid policy; the tests break one thing at a time
region: alpha
name: {zh: 阿尔法, en: Alpha}
aliases: [阿市, al]
sources:
  notice:
    title: Alpha notice
    url: https://example.org/alpha
plans:
  employee:
    name: {zh: 职工医保, en: Employee insurance}
    members: [in_service, retired]
    visits:
      inpatient:
        levels: [1, 2, 3]
        deductible:
          source: notice
          confidence: confirmed
          values:
            2024-01-01: 1000
        ratio:
          source: notice
          confidence: confirmed
          values:
            2024-01-01: 0.85
        fund_cap:
          source: notice
          confidence: confirmed
          values:
            2024-01-01: 200000
"""

INPATIENT = "plans.employee.visits.inpatient"
DEDUCTIBLE_VALUE = f"{INPATIENT}.deductible.values.2024-01-01"
RATIO_VALUE = f"{INPATIENT}.ratio.values.2024-01-01"


def write(folder: Path, text: str, name: str = "alpha.yaml") -> str:
    (folder / name).write_text(text, encoding="utf-8")
    return text


def broken(folder: Path, old: str, new: str, name: str = "alpha.yaml") -> str:
    assert VALID.count(old) == 1, old
    return write(folder, VALID.replace(old, new), name)


def line_of(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return lines[0]


def errors(folder: Path) -> list[PolicyError]:
    with pytest.raises(PolicyErrors) as caught:
        load_policies(folder)
    return caught.value.errors


def only_error(folder: Path) -> PolicyError:
    found = errors(folder)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def test_the_valid_policy_loads(tmp_path):
    write(tmp_path, VALID)
    policies = load_policies(tmp_path)
    assert policies.find("al").id == "alpha" and policies.find("阿尔法").id == "alpha"


def test_unknown_key(tmp_path):
    text = broken(tmp_path, "        levels: [1, 2, 3]\n", "        levels: [1, 2, 3]\n        copay: 0.1\n")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "copay:"), f"{INPATIENT}.copay")
    assert e.message.startswith("unknown key")


def test_unknown_key_in_a_row_condition(tmp_path):
    text = broken(tmp_path, "        levels: [1, 2, 3]\n",
                  "        levels: [1, 2, 3]\n        rows:\n          - when: {membre: retired}\n")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "membre"), f"{INPATIENT}.rows[0].when.membre")
    assert e.message.startswith("unknown key")


def test_text_where_a_number_is_expected(tmp_path):
    text = broken(tmp_path, "2024-01-01: 1000", "2024-01-01: one thousand")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "one thousand"), DEDUCTIBLE_VALUE)
    assert e.message == "'one thousand' is not a number"


def test_a_percentage_is_not_money(tmp_path):
    text = broken(tmp_path, "2024-01-01: 1000", "2024-01-01: 10%")
    e = only_error(tmp_path)
    assert (e.line, e.path) == (line_of(text, "10%"), DEDUCTIBLE_VALUE)
    assert "percentage" in e.message


@pytest.mark.parametrize("bad", ["1.5", '"150%"', "-0.1"])
def test_ratio_outside_0_to_1(tmp_path, bad):
    text = broken(tmp_path, "2024-01-01: 0.85", f"2024-01-01: {bad}")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, f"2024-01-01: {bad}"), RATIO_VALUE)
    assert "must be between 0 and 1" in e.message


def test_ratio_by_level_outside_0_to_1(tmp_path):
    text = broken(tmp_path, "            2024-01-01: 0.85\n",
                  "            2024-01-01:\n              1: 0.9\n              2: 1.2\n              3: 0.8\n")
    e = only_error(tmp_path)
    assert (e.line, e.path) == (line_of(text, "2: 1.2"), RATIO_VALUE)
    assert "must be between 0 and 1" in e.message


BANDS = """\
            2024-01-01:
              - {above: 0, ratio: 0.80}
              - {above: 30000, ratio: 0.85}
              - {above: %s, ratio: 0.90}
"""


@pytest.mark.parametrize("above", ["30000", "20000"])
def test_bands_not_rising(tmp_path, above):
    text = broken(tmp_path, "            2024-01-01: 0.85\n", BANDS % above)
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "ratio: 0.90"), RATIO_VALUE)
    assert "bands must rise" in e.message


def test_first_band_not_at_0(tmp_path):
    bands = ("            2024-01-01:\n"
             "              - {above: 1000, ratio: 0.8}\n"
             "              - {above: 30000, ratio: 0.9}\n")
    text = broken(tmp_path, "            2024-01-01: 0.85\n", bands)
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "above: 1000"), RATIO_VALUE)
    assert "first band must start at 'above: 0'" in e.message


def test_band_ratio_outside_0_to_1(tmp_path):
    text = broken(tmp_path, "            2024-01-01: 0.85\n", (BANDS % "40000").replace("0.90", "1.90"))
    e = only_error(tmp_path)
    assert (e.line, e.path) == (line_of(text, "1.90"), RATIO_VALUE)
    assert "must be between 0 and 1" in e.message


def test_same_date_twice(tmp_path):
    text = broken(tmp_path, "            2024-01-01: 0.85\n",
                  "            2024-01-01: 0.85\n            2024-01-01: 0.90\n")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "2024-01-01: 0.90"), RATIO_VALUE)
    assert e.message == "appears twice"


def test_same_date_written_two_ways(tmp_path):
    # 20240101 is ISO 8601 (basic) for 2024-01-01: the loader compares the dates, not the texts
    text = broken(tmp_path, "            2024-01-01: 0.85\n",
                  "            2024-01-01: 0.85\n            20240101: 0.90\n")
    e = only_error(tmp_path)
    assert (e.line, e.path) == (line_of(text, "20240101"), f"{INPATIENT}.ratio.values.20240101")
    assert e.message == "two values on one date"


def test_unpadded_date_is_refused(tmp_path):
    # 2024-7-1 next to 2024-07-01: refused as "not a date" (not as a second value on the same date),
    # so the mistake is reported either way
    text = broken(tmp_path, "            2024-01-01: 0.85\n",
                  "            2024-07-01: 0.85\n            2024-7-1: 0.90\n")
    e = only_error(tmp_path)
    assert (e.line, e.path) == (line_of(text, "2024-7-1"), f"{INPATIENT}.ratio.values.2024-7-1")
    assert e.message == "'2024-7-1' is not a date (YYYY-MM-DD)"


def test_a_date_that_is_not_a_date(tmp_path):
    text = broken(tmp_path, "2024-01-01: 1000", "2024-13-01: 1000")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "2024-13-01"),
                                        f"{INPATIENT}.deductible.values.2024-13-01")
    assert e.message == "'2024-13-01' is not a date (YYYY-MM-DD)"


def test_source_not_listed(tmp_path):
    text = broken(tmp_path, "source: notice\n          confidence: confirmed\n          values:\n"
                  "            2024-01-01: 1000",
                  "source: notise\n          confidence: confirmed\n          values:\n"
                  "            2024-01-01: 1000")
    e = only_error(tmp_path)
    # reported at the value that uses it
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "2024-01-01: 1000"), DEDUCTIBLE_VALUE)
    assert e.message == "source 'notise' is not listed under 'sources'"


def test_source_not_listed_in_the_long_form(tmp_path):
    text = broken(tmp_path, "            2024-01-01: 0.85\n",
                  "            2024-01-01:\n              value: 0.85\n              source: seed-9\n")
    e = only_error(tmp_path)
    assert (e.line, e.path) == (line_of(text, "value: 0.85"), RATIO_VALUE)
    assert e.message == "source 'seed-9' is not listed under 'sources'"


@pytest.mark.parametrize("what", ["source", "confidence"])
def test_missing_source_or_confidence(tmp_path, what):
    line = {"source": "          source: notice\n", "confidence": "          confidence: confirmed\n"}[what]
    head = "        ratio:\n"
    text = broken(tmp_path, head + "          source: notice\n          confidence: confirmed\n",
                  head + ("          source: notice\n          confidence: confirmed\n").replace(line, ""))
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "2024-01-01: 0.85"), RATIO_VALUE)
    assert e.message == f"no {what}: give it here or once for the parameter"


def test_bad_confidence_word(tmp_path):
    text = broken(tmp_path, "            2024-01-01: 0.85\n",
                  "            2024-01-01:\n              value: 0.85\n              confidence: official\n")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "value: 0.85"), RATIO_VALUE)
    assert e.message.startswith("confidence 'official' is not one of: confirmed, secondary, third-party, seed-only")


def test_level_not_among_the_visits_levels(tmp_path):
    text = broken(tmp_path, "2024-01-01: 1000", "2024-01-01: {1: 300, 2: 600, community: 100}")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "community: 100"), DEDUCTIBLE_VALUE)
    assert e.message == "level 'community' is not among this visit's levels ['1', '2', '3']"


def test_yaml_syntax_error_reports_its_line(tmp_path):
    text = broken(tmp_path, "    members: [in_service, retired]\n", "    members: [in_service, retired\n")
    e = only_error(tmp_path)
    assert e.file == "alpha.yaml" and e.path == ""
    assert e.message.startswith("not valid YAML")
    # libyaml notices the unclosed list on the next line, where a key appears inside it
    assert e.line == line_of(text, "members: [in_service") + 1


def test_yaml_bad_indentation_reports_its_line(tmp_path):
    text = broken(tmp_path, "        levels: [1, 2, 3]\n", "        levels: [1, 2, 3]\n       oops: 1\n")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "oops"), "")
    assert e.message.startswith("not valid YAML")


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, content):
    write(tmp_path, content)
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path, e.message) == ("alpha.yaml", 1, "", "the file is empty")


def test_region_id_must_match_the_file_name(tmp_path):
    text = broken(tmp_path, "region: alpha", "region: beta")
    e = only_error(tmp_path)
    assert (e.file, e.line, e.path) == ("alpha.yaml", line_of(text, "region: beta"), "region")
    assert e.message == "'beta' must match the file name 'alpha'"


def test_an_alias_claimed_by_two_regions(tmp_path):
    write(tmp_path, VALID)
    beta = (VALID.replace("region: alpha", "region: beta").replace("{zh: 阿尔法, en: Alpha}", "{zh: 贝塔, en: Beta}")
            .replace("aliases: [阿市, al]", "aliases:\n  - 贝市\n  - al\n"))
    write(tmp_path, beta, "beta.yaml")
    e = only_error(tmp_path)
    assert e.file == "beta.yaml"
    assert e.path.startswith("aliases")
    assert e.message == "'al' also names region 'alpha'"
    # the line of the alias itself, so the operator sees which entry to change
    assert e.line == line_of(beta, "  - al")


def test_a_region_name_claimed_as_an_alias(tmp_path):
    write(tmp_path, VALID)
    beta = VALID.replace("region: alpha", "region: beta").replace("{zh: 阿尔法, en: Alpha}", "{zh: 贝塔, en: Beta}")
    write(tmp_path, beta.replace("aliases: [阿市, al]", "aliases: [阿尔法]"), "beta.yaml")
    e = only_error(tmp_path)
    assert e.file == "beta.yaml" and e.message == "'阿尔法' also names region 'alpha'"


def test_several_errors_in_one_file_are_all_reported(tmp_path):
    text = VALID.replace("2024-01-01: 1000", "2024-13-01: 1000").replace("2024-01-01: 0.85", "2024-01-01: 1.5")
    text = text.replace("        levels: [1, 2, 3]\n", "        levels: [1, 2, 3]\n        copay: 0.1\n")
    text = text.replace("2024-01-01: 200000", "2024-01-01: lots")
    write(tmp_path, text)
    found = {(e.file, e.line, e.path) for e in errors(tmp_path)}
    assert found == {
        ("alpha.yaml", line_of(text, "copay"), f"{INPATIENT}.copay"),
        ("alpha.yaml", line_of(text, "2024-13-01"), f"{INPATIENT}.deductible.values.2024-13-01"),
        ("alpha.yaml", line_of(text, "1.5"), RATIO_VALUE),
        ("alpha.yaml", line_of(text, "lots"), f"{INPATIENT}.fund_cap.values.2024-01-01"),
    }


def test_errors_in_several_files_are_all_reported(tmp_path):
    broken(tmp_path, "2024-01-01: 0.85", "2024-01-01: 1.5")
    beta = VALID.replace("region: alpha", "region: beta").replace("{zh: 阿尔法, en: Alpha}", "{zh: 贝塔, en: Beta}")
    beta = beta.replace("aliases: [阿市, al]", "aliases: [贝市]").replace("2024-01-01: 1000", "2024-01-01: -5")
    write(tmp_path, beta, "beta.yaml")
    found = [(e.file, e.path) for e in errors(tmp_path)]
    assert found == [("alpha.yaml", RATIO_VALUE), ("beta.yaml", DEDUCTIBLE_VALUE)]


def test_the_test_policies_are_valid():
    policies = load_policies(PROPS_DIR)
    assert set(policies.regions) == {"propland", "calmland"}


# -- the command line ----------------------------------------------------------------------

ERROR_LINE = re.compile(r"^\s*(?P<file>[\w.-]+\.yaml):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$")


def rules_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "YIBAO_POLICY_DIR"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "bot", "rules", "check", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def _broken_folder(folder: Path) -> str:
    text = VALID.replace("2024-01-01: 0.85", "2024-01-01: 1.5").replace(
        "        levels: [1, 2, 3]\n", "        levels: [1, 2, 3]\n        copay: 0.1\n")
    return write(folder, text)


def test_rules_check_reports_every_problem_and_exits_1(tmp_path):
    text = _broken_folder(tmp_path)
    done = rules_check("--policy-dir", str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    matches = [m.groupdict() for line in done.stderr.splitlines() if (m := ERROR_LINE.match(line))]
    assert [(m["file"], int(m["line"]), m["path"]) for m in matches] == [
        ("alpha.yaml", line_of(text, "copay"), f"{INPATIENT}.copay"),
        ("alpha.yaml", line_of(text, "1.5"), RATIO_VALUE),
    ]
    assert "must be between 0 and 1" in matches[1]["message"]


def test_rules_check_on_a_valid_folder_exits_0():
    done = rules_check("--policy-dir", str(PROPS_DIR))
    assert done.returncode == 0, done.stderr
    assert "2 regions" in done.stdout and "no problems" in done.stdout
    assert done.stderr == ""


def test_rules_check_honours_yibao_policy_dir(tmp_path):
    _broken_folder(tmp_path)
    done = rules_check(env={"YIBAO_POLICY_DIR": str(tmp_path)})
    assert done.returncode == 1 and "alpha.yaml:" in done.stderr
    done = rules_check(env={"YIBAO_POLICY_DIR": str(PROPS_DIR)})
    assert done.returncode == 0 and str(PROPS_DIR) in done.stdout
    # an explicit --policy-dir wins over the variable
    done = rules_check("--policy-dir", str(PROPS_DIR), env={"YIBAO_POLICY_DIR": str(tmp_path)})
    assert done.returncode == 0


def test_rules_check_on_a_missing_folder(tmp_path):
    done = rules_check("--policy-dir", str(tmp_path / "nope"))
    assert done.returncode == 1
    assert "no such policy folder" in done.stderr and "Traceback" not in done.stderr


def test_load_policies_honours_yibao_policy_dir(monkeypatch):
    monkeypatch.setenv("YIBAO_POLICY_DIR", str(PROPS_DIR))
    assert set(load_policies().regions) == {"propland", "calmland"}
