"""The good9527 importer on a small fixture of real city files (tests/fixtures/good9527): the mapping,
the audit marks, determinism, hand-edit protection and the precedence of hand-maintained files."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from bot.cli import main
from rules.case import Case, Estimate
from rules.engine import estimate
from rules.importers.good9527 import import_dir
from rules.importers.writer import write_files
from rules.loader import PolicyErrors, load_policies

FIXTURE = Path(__file__).parent / "fixtures" / "good9527"
DAY = dt.date(2025, 3, 1)


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    written, _, kept = write_files(import_dir(FIXTURE, tmp_path))
    assert len(written) == 8 and not kept
    return tmp_path


def run(policies, **case) -> Estimate:
    result = estimate(Case(date=DAY, **case), policies)
    assert isinstance(result, Estimate), result
    return result


def test_same_input_same_bytes(tmp_path: Path):
    first = import_dir(FIXTURE, tmp_path)
    second = import_dir(FIXTURE, tmp_path)
    assert first == second
    assert sorted(p.relative_to(tmp_path).as_posix() for p, _ in first) == [
        "cn/fujian/fuzhou-fujian.yaml", "cn/guangdong/guangzhou.yaml", "cn/guangdong/zhuhai.yaml",
        "cn/henan/hebi.yaml", "cn/jiangxi/fuzhou-jiangxi.yaml", "cn/shaanxi/ankang.yaml",
        "cn/shaanxi/yanan.yaml", "cn/shandong/weihai.yaml"]


def test_header_names_the_dataset_commit(imported: Path):
    text = (imported / "cn/guangdong/guangzhou.yaml").read_text(encoding="utf-8")
    assert "src/data/guangdong/guangzhou.ts at commit 12746c233b3fa9def04358ddb535eee7577254d3" in text
    assert "imported: {dataset: good9527, commit: 12746c233b3fa9def04358ddb535eee7577254d3" in text


def test_guangzhou_figures_and_provenance(imported: Path):
    policies = load_policies(imported)
    gz = policies.find("广州市")
    assert gz is not None and gz.code == "440100" and gz.province.zh == "广东"
    inpatient = gz.plans["employee"].visits["inpatient"]
    assert inpatient.levels == ("community", "1", "2", "3")
    deductible = inpatient.params["deductible"].at(DAY)
    assert deductible.value == {"community": 250, "1": 250, "2": 500, "3": 1000}
    assert deductible.start == dt.date(2023, 1, 1) and deductible.confidence == "third-party"
    retired = next(r for r in inpatient.rows if r.when == {"member": "retired"})
    assert retired.params["ratio"].at(DAY).value["3"] == Decimal("0.86")  # 0.80 + the retiree bonus 0.06
    assert inpatient.params["fund_cap"].yearly  # its clause ties the cap to the average wage
    source = gz.sources["gz-medical-insurance-inpatient-2023"]
    assert source.doc_no == "广州市人民政府令第193号及现行执行规程"
    assert source.issuer == ("广州市人民政府", "广州市医疗保障局")
    assert source.effective == dt.date(2023, 1, 1) and source.published == dt.date(2022, 12, 15)
    factors = gz.plans["employee"].params["out_of_area_factor"].at(DAY).value
    assert factors == {"filed": 1, "referral": Decimal("0.9"), "emergency": Decimal("0.9"), "unfiled": Decimal("0.7")}


def test_guangzhou_inpatient_estimate(imported: Path):
    policies = load_policies(imported)
    result = run(policies, region="广州", plan="employee", member="in_service", visit="inpatient", level="3",
                 total=Decimal(20000))
    assert (result.deductible, result.fund, result.personal) == (Decimal(1000), Decimal(15200), Decimal(4800))
    assert any(w.key == "third_party" for w in result.warnings)
    retired = run(policies, region="guangzhou", plan="employee", member="retired", visit="inpatient", level="3",
                  total=Decimal(20000))
    assert retired.fund == Decimal("16340.00")  # (20000 − 1000) × 86%


def test_resident_critical_illness_on_the_burden(imported: Path):
    policies = load_policies(imported)
    gz = policies.find("广州")
    visit = gz.plans["resident"].visits["inpatient"]
    assert visit.params["critical_illness_threshold"].at(DAY).value == 18000
    assert visit.params["critical_illness_threshold"].yearly
    # 200,000 at a 3级 hospital: fund (200000 − 500) × 70% = 139,650; burden 60,350;
    # 大病 (60350 − 18000) × 60% = 25,410.
    result = run(policies, region="广州", plan="resident", visit="inpatient", level="3", total=Decimal(200000))
    assert (result.fund, result.critical_illness) == (Decimal("139650.00"), Decimal("25410.00"))


def test_employee_top_up_layer_above_the_cap(imported: Path):
    policies = load_policies(imported)
    ankang = policies.find("安康")
    visit = ankang.plans["employee"].visits["inpatient"]
    assert visit.params["supplementary_ratio"].at(DAY).value == Decimal("0.9")
    assert visit.params["supplementary_cap"].at(DAY).value == 140000
    assert "critical_illness_threshold" not in visit.params


def test_dataset_mismatch_cross_checked(imported: Path):
    policies = load_policies(imported)
    weihai = policies.find("威海")
    cap = weihai.plans["employee"].visits["outpatient"].params["fund_cap"].at(DAY)
    assert cap.value == 4500 and cap.disputed.other == 3000 and cap.disputed.check == "quote-mismatch"
    # 延安's entry ("起付线 1500元") is the cap of a clause that says 不设起付线: an artefact, not held.
    yanan = policies.find("延安")
    assert yanan.plans["employee"].visits["outpatient"].params["deductible"].at(DAY).disputed is None


def test_disputed_figure_is_named_in_the_estimate(imported: Path):
    policies = load_policies(imported)
    result = run(policies, region="威海", plan="employee", member="in_service", visit="outpatient", level="1",
                 total=Decimal(30000))
    texts = [w("en") for w in result.warnings]
    assert any("disputed" in t and "3,000.00" in t for t in texts), texts


def test_band_start_disagreement_is_disputed_and_banded_layer_is_warned(imported: Path):
    policies = load_policies(imported)
    visits = policies.find("weihai").plans
    threshold = visits["resident"].visits["inpatient"].params["critical_illness_threshold"].at(DAY)
    assert threshold.value == 14000 and threshold.disputed.other == 18000
    employee = visits["employee"].visits["inpatient"]
    assert "supplementary_ratio" not in employee.params and employee.settings["assumptions"]
    result = run(policies, region="威海", plan="employee", member="in_service", visit="inpatient", level="3",
                 total=Decimal(5000))
    assert any(w.key == "assumption" for w in result.warnings)


def test_shared_names_get_the_province(imported: Path):
    policies = load_policies(imported)
    assert policies.regions["fuzhou-fujian"].name.zh == "福州"
    assert policies.regions["fuzhou-jiangxi"].name.en == "Fuzhou (Jiangxi)"


def test_unlisted_document_cites_the_dataset_file(imported: Path):
    zhuhai = load_policies(imported).find("珠海")
    assert "dataset" in zhuhai.sources
    assert zhuhai.sources["dataset"].url.startswith("https://github.com/good9527/china-medical-insurance/blob/")


def test_per_visit_outpatient_deductible(imported: Path):
    hebi = load_policies(imported).find("鹤壁")
    assert hebi.plans["employee"].visits["outpatient"].settings["deductible_scope"] == "per_admission"


def test_reimport_keeps_hand_edits(imported: Path):
    path = imported / "cn/guangdong/guangzhou.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("1000000", "1200000"), encoding="utf-8")
    written, same, kept = write_files(import_dir(FIXTURE, imported))
    assert kept == [path] and not written and len(same) == 7
    assert "1200000" in path.read_text(encoding="utf-8")


def test_hand_file_wins_over_the_imported_one(imported: Path):
    hand = (Path(__file__).parent.parent / "rules/policies/zigong.yaml").read_text(encoding="utf-8")
    (imported / "guangzhou.yaml").write_text(
        hand.replace("zigong", "guangzhou").replace("自贡", "广州").replace("Zigong", "Guangzhou")
        .replace('code: "510300"', 'code: "440100"').replace("四川", "广东").replace("Sichuan", "Guangdong"),
        encoding="utf-8")
    policies = load_policies(imported)
    assert policies.find("广州").imported is None
    assert policies.shadowed == {"cn/guangdong/guangzhou.yaml": "guangzhou.yaml"}


def test_two_imported_files_for_one_region_are_an_error(imported: Path):
    (imported / "cn/other").mkdir()
    shutil.copy(imported / "cn/guangdong/guangzhou.yaml", imported / "cn/other/guangzhou.yaml")
    with pytest.raises(PolicyErrors) as bad:
        load_policies(imported)
    assert any(e.file == "cn/other/guangzhou.yaml" for e in bad.value.errors)


def test_no_cap_written_as_unlimited():
    from rules.importers.good9527 import is_no_cap

    assert is_no_cap(9999999) and is_no_cap(99999999) and not is_no_cap(1000000) and not is_no_cap(999)


def test_cli_import_audit_and_list(tmp_path: Path, capsys):
    assert main(["rules", "import", "good9527", str(FIXTURE), "--out", str(tmp_path)]) == 0
    assert "8 written" in capsys.readouterr().out
    assert main(["rules", "audit", "--policy-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == 8 and report["disputed_by_check"] == {"band-start": 1, "quote-mismatch": 1}
    assert main(["rules", "list", "--policy-dir", str(tmp_path), "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["guangzhou"]["code"] == "440100" and rows["guangzhou"]["confidence"] == "third-party"
    assert rows["guangzhou"]["plans"] == {"employee": ["inpatient", "outpatient"],
                                          "resident": ["inpatient", "outpatient"]}
    assert main(["rules", "import", "good9527", str(tmp_path)]) == 2  # not a dataset folder
