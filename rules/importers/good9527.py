"""`yibao rules import good9527 DIR`: the open 344-region dataset as one policy file per 统筹区.

What each dataset field means in a computation follows the dataset's own calculator (public repository
good9527/china-medical-insurance, `src/engine/calculator.ts`): a tier's deductible wins over the
visit's `annualDeductible`; a retiree's outpatient deductible is the lower of the two; the retiree bonus
is added to a non-zero ratio; the remote factors multiply the ratio at the hospital's own tier; an
employee `catastrophic` block is the 大额 layer above the basic cap, a resident one the 大病 layer on
the burden left after the fund. We take those facts and write them in our schema; what the schema
cannot say goes into a note. Every figure is `third-party`, dated by its document's effective date, and
checked by `rules.importers.audit`. Same input, same bytes: nothing here reads the clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from rules.importers import audit
from rules.importers.naming import CityName, city_names
from rules.importers.writer import render

DATASET = "good9527"
REPO = "good9527/china-medical-insurance"
TIERS = {"community": "community", "tier1": "1", "tier2": "2", "tier3": "3", "tier3_top": "3a"}
REMOTE = {"longTermFiledRatio": "filed", "transferFiledRatio": "referral",
          "unfiledEmergencyRatio": "emergency", "unfiledNormalRatio": "unfiled"}
PLAN_NAMES = {"employee": {"zh": "职工医保", "en": "Employee insurance"},
              "resident": {"zh": "城乡居民医保", "en": "Resident insurance"}}
SUPPLEMENTARY_WORDS = ("大额", "补充", "互助", "补助", "救助")
WAGE_WORDS = ("工资", "社平", "收入")


def d(value) -> Decimal:
    return Decimal(str(value))


def is_no_cap(value) -> bool:
    """9999999-style caps mean "no cap" in the dataset."""
    text = str(int(value)) if value is not None and float(value).is_integer() else ""
    return len(text) >= 7 and set(text) == {"9"}


@dataclass
class City:
    """One dataset file on its way to a policy file: the figures, their sources and what was found."""

    data: dict
    name: CityName
    commit: str
    source_path: str
    mismatches: list[dict]
    notes: list[dict] = field(default_factory=list)
    disputes: dict[str, int] = field(default_factory=dict)
    upheld: int = 0
    rejected: int = 0
    unlisted: set[str] = field(default_factory=set)

    def doc(self, doc_id: str | None) -> dict | None:
        return next((s for s in self.data.get("sourceDocs", []) if s.get("docId") == doc_id), None)

    def note(self, zh: str, en: str) -> None:
        self.notes.append({"zh": zh, "en": en})


def series(city: City, doc_id: str, value, dispute: audit.Dispute | None = None, yearly: bool = False) -> dict:
    """A dated parameter: the value from its document's effective date, third-party, maybe disputed."""
    doc = city.doc(doc_id)
    if doc is None:  # the block cites a document the dataset does not list: cite the dataset file itself
        city.unlisted.add(str(doc_id))
        doc_id, doc = "dataset", {}
    start = doc.get("effectiveDate") or doc.get("publishDate") or city.data.get("lastUpdated")
    entry: object = value
    if dispute is not None:
        city.disputes[dispute.check] = city.disputes.get(dispute.check, 0) + 1
        entry = {"value": value, "disputed": {"other": dispute.other, "check": dispute.check,
                                              "reason": {"zh": dispute.zh, "en": dispute.en}}}
    out: dict = {"source": doc_id, "confidence": "third-party"}
    if yearly:
        out["yearly"] = True
    out["values"] = {str(start): entry}
    return out


def _mismatch(city: City, plan: str, visit: str, name: str, value, quote: str | None) -> audit.Dispute | None:
    """The dataset's own mismatch entry for this figure, if any and if it holds up."""
    for entry in city.mismatches:
        where = audit.CATEGORIES.get(entry.get("category", ""))
        if not where or where[:3] != (plan, visit, name):
            continue
        level = where[3]
        coded = value.get(level) if isinstance(value, dict) and level else value
        if isinstance(value, dict) and level is None:
            coded = next(iter(value.values()))
        if not isinstance(coded, Decimal):
            continue
        dispute, upheld = audit.mismatch_dispute(entry, coded, quote)
        city.upheld += upheld
        city.rejected += not upheld
        if dispute and isinstance(value, dict):
            other = dict(value)
            for lv in ([level] if level else list(value)):
                other[lv] = dispute.other
            dispute = audit.Dispute(other, dispute.check, dispute.zh, dispute.en)
        return dispute
    return None


def by_level(tiers: dict, key: str, fallback=None) -> dict[str, Decimal]:
    """A tier field as a by-level mapping; 三甲 only where it differs from 三级."""
    out: dict[str, Decimal] = {}
    for tier, level in TIERS.items():
        raw = (tiers.get(tier) or {}).get(key)
        raw = fallback if raw is None else raw
        if raw is not None:
            out[level] = d(raw)
    return out


def _levels(tiers: dict) -> list[str]:
    levels = [TIERS[t] for t in TIERS if t in tiers and t != "tier3_top"]
    top, three = tiers.get("tier3_top"), tiers.get("tier3")
    if top and three and (top.get("deductible"), top.get("reimbursementRatio")) != (
            three.get("deductible"), three.get("reimbursementRatio")):
        levels.append("3a")
    return levels


def _trim(values: dict[str, Decimal], levels: list[str]) -> dict[str, Decimal]:
    return {lv: v for lv, v in values.items() if lv in levels}


def _cap(value) -> object:
    return "unlimited" if is_no_cap(value) else d(value)


def _checked(city: City, plan: str, visit: str, name: str, value, quote: str | None) -> audit.Dispute | None:
    if isinstance(value, dict) and name in ("deductible", "ratio"):
        order = audit.order_dispute(name, value)
        if order:
            return order
    return _mismatch(city, plan, visit, name, value, quote)


def visit_block(city: City, plan: str, visit: str, rule: dict) -> dict:
    """One visit: levels, deductible, ratio and cap, with a retiree row where retirees differ."""
    doc_id = rule.get("sourceDocId")
    quote = (city.doc(doc_id) or {}).get("summaryQuote")
    tiers = rule.get("tierBenefits") or {}
    levels = _levels(tiers)
    deductible = _trim(by_level(tiers, "deductible", rule.get("annualDeductible")), levels)
    ratio = _trim(by_level(tiers, "reimbursementRatio"), levels)
    out: dict = {"levels": levels}
    if visit == "inpatient" or rule.get("deductibleType") == "per_visit":
        out["deductible_scope"] = "per_admission"
    if rule.get("deductibleType") == "per_visit":
        city.note("门诊起付线按次计算（每次就诊）。", "The outpatient deductible is paid per visit.")
    yearly_cap = any(w in (quote or "") for w in WAGE_WORDS)
    out["deductible"] = series(city, doc_id, deductible, _checked(city, plan, visit, "deductible", deductible, quote))
    out["ratio"] = series(city, doc_id, ratio, _checked(city, plan, visit, "ratio", ratio, quote))
    if rule.get("annualCap") is not None:
        cap = _cap(rule["annualCap"])
        out["fund_cap"] = series(city, doc_id, cap, _checked(city, plan, visit, "fund_cap", cap, quote), yearly_cap)
    if plan == "employee":
        retired = retiree_row(city, visit, rule, tiers, levels, deductible, ratio, out.get("fund_cap"), yearly_cap)
        if retired:
            out["rows"] = [{"when": {"member": "retired"}, **retired}, {"when": {"member": "in_service"}}]
    return out


def retiree_row(city: City, visit: str, rule: dict, tiers: dict, levels: list[str], deductible: dict,
                ratio: dict, cap: dict | None, yearly_cap: bool) -> dict:
    """What differs for retirees: bonus on non-zero ratios, a lower outpatient deductible, their cap."""
    doc_id = rule.get("sourceDocId")
    row: dict = {}
    bonus = _trim(by_level(tiers, "retireeRatioBonus"), levels)
    if any(bonus.values()):
        raw = {lv: r + bonus.get(lv, 0) if r > 0 else r for lv, r in ratio.items()}
        over = [lv for lv, r in raw.items() if r > 1]
        if over:
            dispute = audit.Dispute(None, "ratio-range", f"退休比例加成后超过100%（{raw[over[0]]}）",
                                    f"the retirees' ratio with the bonus exceeds 100% ({raw[over[0]]})")
            row["ratio"] = series(city, doc_id, None, dispute)
        else:
            row["ratio"] = series(city, doc_id, raw, audit.retiree_dispute("ratio", ratio, raw))
    retiree_deductible = rule.get("annualDeductibleRetiree")
    if retiree_deductible is not None:
        lowered = {lv: min(v, d(retiree_deductible)) if v > 0 else v for lv, v in deductible.items()}
        if lowered != deductible:
            row["deductible"] = series(city, doc_id, lowered)
    if rule.get("annualCapRetiree") is not None and cap is not None:
        retiree_cap = _cap(rule["annualCapRetiree"])
        worker_cap = next(iter(cap["values"].values()))
        worker_cap = worker_cap["value"] if isinstance(worker_cap, dict) else worker_cap
        if retiree_cap != worker_cap:
            row["fund_cap"] = series(city, doc_id, retiree_cap,
                                     audit.retiree_dispute("fund_cap", worker_cap, retiree_cap), yearly_cap)
    return row


def load_city(path: Path, name: CityName, commit: str, source_path: str, mismatches: list[dict]) -> City:
    return City(json.loads(path.read_text(encoding="utf-8")), name, commit, source_path, mismatches)


def import_dir(directory: Path, out: Path) -> list[tuple[Path, str]]:
    """Every city of the dataset folder as `out/cn/<province>/<id>.yaml`: (path, text) pairs."""
    from rules.importers.layers import build_region

    manifest = {}
    for line in (directory / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 2:
            manifest[parts[0]] = parts[1]
    mismatch_file = directory / "quote-mismatches.json"
    mismatches = json.loads(mismatch_file.read_text(encoding="utf-8")) if mismatch_file.exists() else []
    files = sorted((directory / "cities").glob("*/*.json"))
    names = city_names(files)
    result = []
    for file in files:
        province, stem = file.parent.name, file.stem
        source_path = f"src/data/{province}/{stem}.ts"
        if source_path not in manifest and province == stem:
            source_path = f"src/data/{province}/index.ts"
        commit = manifest.get(source_path, "unknown")
        raw = json.loads(file.read_text(encoding="utf-8"))
        own = [m for m in mismatches if m.get("cityCode") == raw.get("cityCode")]
        city = City(raw, names[file], commit, source_path, own)
        doc = build_region(city)
        result.append((out / "cn" / province / f"{city.name.id}.yaml", render(city, doc)))
    return result
