"""The parts of an imported region beyond the per-visit figures: sources, the 大额/大病 layer,
out-of-area factors, later admissions, and the region header."""

from __future__ import annotations

import re
from itertools import pairwise

from rules.importers import audit
from rules.importers.good9527 import (
    DATASET,
    PLAN_NAMES,
    REMOTE,
    REPO,
    SUPPLEMENTARY_WORDS,
    City,
    d,
    is_no_cap,
    series,
    visit_block,
)

HALVED = re.compile(r"第二次.*(减半|降低50%|递减50%)|二次.*(减半|降低50%)")


def sources(city: City) -> dict:
    out: dict = {}
    for doc in city.data.get("sourceDocs", []):
        entry: dict = {"title": doc["title"]}
        if doc.get("officialUrl"):
            entry["url"] = doc["officialUrl"]
        else:
            entry["url"] = f"https://github.com/{REPO}/blob/{city.commit}/{city.source_path}"
        for key, field in (("doc_no", "docNumber"), ("published", "publishDate"), ("effective", "effectiveDate"),
                           ("quote", "summaryQuote")):
            if doc.get(field):
                entry[key] = doc[field]
        if doc.get("issuingDept"):
            entry["issuer"] = list(doc["issuingDept"])
        out[doc["docId"]] = entry
    if city.unlisted:
        missing = "、".join(sorted(city.unlisted))
        out["dataset"] = {"title": f"good9527 数据集 {city.source_path}（所引文件 {missing} 未列出）",
                          "url": f"https://github.com/{REPO}/blob/{city.commit}/{city.source_path}"}
        if city.data.get("lastUpdated"):
            out["dataset"]["published"] = city.data["lastUpdated"]
    return out


def later_admission(city: City, block: dict, rule: dict) -> None:
    """A later-admission factor only where the text says plainly "halved from the 2nd"; else a note."""
    text = rule.get("repeatedDeductibleRule")
    if not text:
        return
    if HALVED.search(text) and "第三次" not in text and "同级" not in text:
        block["later_admission_factor"] = series(city, rule.get("sourceDocId"), audit.Decimal("0.5"))
    else:
        city.note(f"再次住院起付线：{text}", f"Later admissions' deductible (text in Chinese only): {text}")


def catastrophic(city: City, plan: str, block: dict, rule: dict | None, fund_cap) -> None:
    """The block's name says the layer: 大额/互助/补助 above the fund cap, 大病保险 on the burden."""
    if not rule or not rule.get("tiers"):
        return
    doc_id = rule.get("sourceDocId") or block["ratio"]["source"]
    if not rule.get("sourceDocId"):
        city.note(f"{rule.get('name')}未注明出处文件，按住院文件记录。",
                  f"The dataset names no document for {rule.get('name')}; the inpatient document is cited.")
    name = rule.get("name") or ""
    tiers = rule["tiers"]
    cap = rule.get("annualCap")
    threshold = d(rule.get("deductible") or 0)
    first = d(tiers[0]["minAmount"])
    above_cap = threshold == 0 and isinstance(fund_cap, dict) and first > 0 and first == _value(fund_cap)
    if above_cap or (any(w in name for w in SUPPLEMENTARY_WORDS) and "大病保险" not in name):
        ratios = {d(t["ratio"]) for t in tiers}
        if len(ratios) != 1:
            _left_out(city, block, f"{name}分段报销（{_bands_text(tiers)}），本格式无法表达，未计入。",
                      f"{name} pays by bands ({_bands_text(tiers)}), which our format cannot express; not included.")
            return
        block["supplementary_name"] = {"zh": name, "en": "Large-expense supplementary fund"}
        block["supplementary_ratio"] = series(city, doc_id, ratios.pop())
        if cap is not None:
            block["supplementary_cap"] = series(city, doc_id, "unlimited" if is_no_cap(cap) else d(cap))
        return
    dispute = None
    if first == 0 and threshold > 0:
        starts = [threshold + d(t["minAmount"]) for t in tiers[1:]]
        city.note(f"{name}各段按超过起付线的金额计（数据集的计算方式）。",
                  f"{name}: band limits count from the threshold, as the dataset's calculator does.")
    else:
        starts = [d(t["minAmount"]) for t in tiers[1:]]
        if first != threshold:
            dispute = audit.Dispute(first, "band-start", f"起付线{threshold}与首段起点{first}不一致",
                                    f"the threshold {threshold} and the first band's start {first} disagree")
    bands = [{"above": 0, "ratio": d(tiers[0]["ratio"])}] + [
        {"above": a, "ratio": d(t["ratio"])} for a, t in zip(starts, tiers[1:], strict=True)]
    if not all(b["above"] < n["above"] for b, n in pairwise(bands)):
        _left_out(city, block, f"{name}分段不连续（{_bands_text(tiers)}），未计入。",
                  f"{name}: its bands do not rise ({_bands_text(tiers)}); not included.")
        return
    block["critical_illness_threshold"] = series(city, doc_id, threshold, dispute, yearly=True)
    block["critical_illness_bands"] = series(city, doc_id, bands)
    if cap is not None:
        block["critical_illness_cap"] = series(city, doc_id, "unlimited" if is_no_cap(cap) else d(cap))


def _value(param: dict):
    entry = next(iter(param["values"].values()))
    return entry["value"] if isinstance(entry, dict) else entry


def _left_out(city: City, block: dict, zh: str, en: str) -> None:
    """A layer the format cannot express: a note in the file, and a warning on every estimate."""
    city.note(zh, en)
    block.setdefault("assumptions", []).append({"zh": zh, "en": en})


def _bands_text(tiers: list[dict]) -> str:
    return "；".join(f"{t['minAmount']}起{int(d(t['ratio']) * 100)}%" for t in tiers)


def remote(city: City, rule: dict | None) -> dict | None:
    if not rule:
        return None
    factors = {kind: d(rule[key]) for key, kind in REMOTE.items() if rule.get(key) is not None}
    bad = [k for k, v in factors.items() if not 0 <= v <= 1]
    if bad:
        city.note(f"异地就医系数超出0–1：{bad}，未编码。", f"Out-of-area factors outside 0–1 ({bad}); not encoded.")
        return None
    return series(city, rule.get("sourceDocId"), factors) if factors else None


def plan_block(city: City, plan: str) -> dict | None:
    data = city.data.get(plan)
    if not data:
        return None
    out: dict = {"name": PLAN_NAMES[plan]}
    if plan == "employee":
        out["members"] = ["in_service", "retired"]
    factor = remote(city, data.get("remoteMedical"))
    if factor:
        out["out_of_area_factor"] = factor
    visits: dict = {}
    for visit in ("outpatient", "inpatient"):
        rule = data.get(visit)
        if rule and rule.get("tierBenefits"):
            visits[visit] = visit_block(city, plan, visit, rule)
            if rule.get("note"):
                city.note(f"{PLAN_NAMES[plan]['zh']}门诊：{rule['note']}",
                          f"{PLAN_NAMES[plan]['en']}, outpatient (dataset note, in Chinese): {rule['note']}")
    inpatient = visits.get("inpatient")
    if inpatient:
        later_admission(city, inpatient, data["inpatient"])
        catastrophic(city, plan, inpatient, data.get("catastrophic"), inpatient.get("fund_cap"))
        if data["inpatient"].get("comprehensiveCap") is not None:
            city.note(f"含大额/大病的年度总限额{data['inpatient']['comprehensiveCap']}元（本格式无此项）。",
                      f"A yearly total cap of {data['inpatient']['comprehensiveCap']} including the top-up layer "
                      "(not expressible in our format).")
    out["visits"] = visits
    return out


def build_region(city: City) -> dict:
    name = city.name
    doc: dict = {
        "region": name.id,
        "name": {"zh": name.zh, "en": name.en},
        "aliases": name.aliases,
        "code": city.data["cityCode"],
        "province": {"zh": name.province_zh, "en": name.province_en},
        "imported": {"dataset": DATASET, "commit": city.commit, "file": city.source_path},
    }
    plans = {p: b for p in ("employee", "resident") if (b := plan_block(city, p))}
    doc["sources"] = sources(city)
    if city.unlisted:
        city.note(f"数据集引用了未列出的文件（{'、'.join(sorted(city.unlisted))}），相关数值按数据集核对日期记录。",
                  "The dataset cites documents it does not list; those figures cite the dataset file, dated by "
                  "its check date.")
    doc["notes"] = [{"zh": "本文件由第三方数据集整理，未经官方核实，请以当地医保局公布为准。",
                     "en": "Compiled by a third party (the good9527 dataset), not officially verified: "
                           "check with the local bureau."}] + city.notes
    doc["plans"] = plans
    return doc
