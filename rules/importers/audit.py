"""Checks an imported figure must pass before it is trusted as written; a failure becomes `disputed`.

The checks are the ones a careful reader would make with the dataset in one hand and its quoted
clauses in the other: is the figure a plausible ratio, do deductibles rise and ratios fall from the
community level to 三级, are a retiree's terms no worse than a worker's, and does the dataset's own
list of quote mismatches hold up (an entry whose coded value also appears in its quote is an artefact
of the dataset's checker and is not held against the figure). Each check yields a `Dispute` with the
other value where there is one; the importer writes it next to the figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

NONE_WORDS = ("不设起付", "免设起付", "无起付", "取消起付", "不设门诊起付", "免设门诊起付")
LEVEL_ORDER = ("community", "1", "2", "3", "3a")
LEVEL_ZH = {"community": "社区/基层", "1": "一级", "2": "二级", "3": "三级", "3a": "三甲"}
NUMBER_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(万元|万|元|%|％)")
# The dataset's mismatch categories: (plan, visit, parameter, level or None for every level).
CATEGORIES = {
    "职工门诊-起付线": ("employee", "outpatient", "deductible", None),
    "职工门诊-年封顶线": ("employee", "outpatient", "fund_cap", None),
    "居民门诊-年封顶线": ("resident", "outpatient", "fund_cap", None),
    **{f"{zh}住院-{n}级{what}": (plan, "inpatient", name, lv)
       for zh, plan in (("职工", "employee"), ("居民", "resident"))
       for n, lv in (("一", "1"), ("二", "2"), ("三", "3"))
       for what, name in (("起付线", "deductible"), ("报销比例", "ratio"))},
}


@dataclass(frozen=True)
class Dispute:
    other: object          # the other value (same shape as the figure) or None
    check: str
    zh: str
    en: str


def quote_numbers(quote: str | None) -> set[Decimal]:
    """Every amount (yuan) and share (0–1) a quoted clause states."""
    found: set[Decimal] = set()
    for number, unit in NUMBER_RE.findall(quote or ""):
        value = Decimal(number)
        if unit in ("%", "％"):
            found.add(value / 100)
        elif unit.startswith("万"):
            found.add(value * 10000)
        else:
            found.add(value)
    return {v.normalize() for v in found}


def in_quote(value: Decimal, quote: str | None) -> bool:
    return Decimal(value).normalize() in quote_numbers(quote)


def parse_amount(text: str) -> Decimal | None:
    """"1500元" → 1500, "85%" → 0.85, "1.2万" → 12000; None when it is not one number."""
    numbers = NUMBER_RE.findall(text or "")
    if len(numbers) != 1:
        return None
    return next(iter(quote_numbers(text)))


def order_dispute(name: str, by_level: dict[str, Decimal]) -> Dispute | None:
    """Deductibles must not fall, ratios must not rise, from community to 三级/三甲."""
    levels = [lv for lv in LEVEL_ORDER if lv in by_level]
    for low, high in pairwise(levels):
        a, b = by_level[low], by_level[high]
        if name == "deductible" and b < a:
            return Dispute(None, "level-order", f"{LEVEL_ZH[high]}起付线（{b}）低于{LEVEL_ZH[low]}（{a}）",
                           f"the level-{high} deductible ({b}) is below the level-{low} one ({a})")
        if name == "ratio" and b > a:
            return Dispute(None, "level-order", f"{LEVEL_ZH[high]}报销比例（{b}）高于{LEVEL_ZH[low]}（{a}）",
                           f"the level-{high} ratio ({b}) is above the level-{low} one ({a})")
    return None


def retiree_dispute(name: str, worker: object, retiree: object) -> Dispute | None:
    """A retiree's deductible no higher, cap and ratio no lower, than a worker's."""
    pairs = ([(lv, worker[lv], retiree[lv]) for lv in worker if lv in retiree]
             if isinstance(worker, dict) and isinstance(retiree, dict) else [("", worker, retiree)])
    for level, w, r in pairs:
        if not isinstance(w, Decimal) or not isinstance(r, Decimal):
            continue
        worse = r > w if name == "deductible" else r < w
        if worse:
            where = f"{LEVEL_ZH.get(level, '')}" if level else ""
            return Dispute(worker, "retiree-worse", f"退休人员{where}{_ZH[name]}（{r}）不如在职（{w}）",
                           f"the retirees' {name} ({r}) is worse than the workers' ({w})")
    return None


_ZH = {"deductible": "起付线", "ratio": "报销比例", "fund_cap": "年度限额"}


def mismatch_dispute(entry: dict, coded: Decimal, quote: str | None) -> tuple[Dispute | None, bool]:
    """The dataset's own mismatch entry, cross-checked: (the dispute, whether the entry is upheld)."""
    other = parse_amount(entry.get("quoteValue", ""))
    snippet = entry.get("quoteSnippet") or ""
    says_none = coded == 0 and any(w in snippet + (quote or "") for w in NONE_WORDS)
    if other is None or says_none or in_quote(coded, snippet) or in_quote(coded, quote):
        return None, False  # the coded value is in the clause too: an artefact of the dataset's checker
    zh = f"数据集自查：引文为{entry['quoteValue']}，编码为{entry.get('codeValue', coded)}（{entry['category']}）"
    en = f"the dataset's own check: the quote says {entry['quoteValue']}, the code {entry.get('codeValue', coded)}"
    return Dispute(other, "quote-mismatch", zh, en), True
