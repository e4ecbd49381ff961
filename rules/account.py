"""The personal account (个人账户) in an estimate: which part of the person's share it may pay, and cash.

An official settlement slip splits what the person pays into 个人账户 (`acct_pay`), 家庭共济
(`acct_mulaid_pay`) and cash (`psn_cash_pay`). The estimate's personal share is cut into the parts a
region's rule speaks of — the deductible paid now, the co-pay above it (and the share above the cap),
乙类先行自付, 全自费 — and the account pays the parts its rule allows, up to the balance the person gave.
The rule is data (`accounts.yaml`): a national default with its source, replaced field by field where
a region says otherwise. It works on the engine's result and changes none of its figures, so
`account + cash == personal` always, and the fund's figures stay the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rules.case import ZERO, Estimate
from rules.loader import PolicyError, PolicyErrors
from rules.messages import money

RULES_FILE = Path(__file__).parent / "accounts.yaml"
TEXTS_FILE = Path(__file__).parent / "texts" / "account.yaml"
PARTS = ("deductible", "copay", "class_b", "self_pay")
CONFIDENCE = ("confirmed", "secondary", "seed-only")
FIELDS = ("plans", "pays", "family_pool", "source", "confidence", "quote")


@dataclass(frozen=True, slots=True)
class AccountRule:
    """What a region's personal account may pay, and the document that says so."""

    plans: tuple[str, ...]
    pays: frozenset[str]
    family_pool: bool
    sources: tuple[tuple[dict[str, str], str], ...]  # (title/issuer/date/url, confidence): national, then regional
    quote: str


@dataclass(frozen=True, slots=True)
class AccountSplit:
    """The personal share split into account and cash; `family` is what a relative's account may pay
    of the cash under 家庭共济 (their balance is not asked, so it is an upper bound)."""

    balance: Decimal
    family_pool: bool
    has_account: bool
    parts: dict[str, Decimal]
    may_pay: Decimal
    account: Decimal
    cash: Decimal
    family: Decimal
    rule: AccountRule
    notes: tuple[str, ...]  # text keys of caveats


def personal_parts(estimate: Estimate) -> dict[str, Decimal]:
    """The person's share of the estimate by part; the parts add up to `personal`. `current_year` is
    what the engine had this year's account credit pay first (上海 门急诊), before the deductible."""
    self_pay = min(estimate.case.self_pay or ZERO, estimate.personal)
    class_b = min(max(ZERO, estimate.total - self_pay - estimate.compliant), estimate.personal - self_pay)
    compliant_share = estimate.personal - self_pay - class_b  # what the funds left of the compliant cost
    first = next((s.amount for s in estimate.steps if s.key == "current_year_account"), ZERO)
    current_year = min(first, compliant_share)
    deductible = min(estimate.deductible, compliant_share - current_year)
    return {"current_year": current_year, "deductible": deductible,
            "copay": compliant_share - current_year - deductible, "class_b": class_b, "self_pay": self_pay}


def split(estimate: Estimate, balance: Decimal, family_pool: bool = False,
          rules: dict[str, AccountRule] | None = None) -> AccountSplit:
    """How much of the estimate's personal share a balance of `balance` may pay, the rest in cash."""
    if not balance.is_finite() or balance < 0:
        raise ValueError("the account balance must be a non-negative amount")
    rule = rule_for(estimate.region, rules)
    parts = personal_parts(estimate)
    has_account = estimate.case.plan in rule.plans
    first = parts["current_year"] if has_account else ZERO  # already paid by this year's credit
    may_pay = first + sum((parts[p] for p in PARTS if p in rule.pays), ZERO) if has_account else ZERO
    account = first + min(balance, may_pay - first)
    family = may_pay - account if family_pool and rule.family_pool and has_account else ZERO
    assumed = any(w.key == "current_year_account_assumed" for w in estimate.warnings)
    notes = ("current_year_first",) if has_account and assumed else ()
    return AccountSplit(balance, family_pool, has_account, parts, may_pay, account,
                        estimate.personal - account, family, rule, notes)


def rule_for(region: str, rules: dict[str, AccountRule] | None = None) -> AccountRule:
    table = rules if rules is not None else account_rules()
    return table.get(region, table[""])


def account_json(result: AccountSplit) -> dict[str, Any]:
    """The fields `yibao estimate --json` adds when a balance is given (amounts as two-decimal text)."""
    def amount(value: Decimal) -> str:
        return f"{value:.2f}"

    return {
        "account": amount(result.account), "cash": amount(result.cash),
        "current_year_account_paid": amount(result.parts["current_year"] if result.has_account else ZERO),
        "account_balance": amount(result.balance), "account_may_pay": amount(result.may_pay),
        "family_pool": result.family_pool, "family_may_pay": amount(result.family),
        "account_rule": {"pays": [p for p in PARTS if p in result.rule.pays] if result.has_account else [],
                         "sources": [source | {"confidence": confidence}
                                     for source, confidence in result.rule.sources]},
    }


def account_lines(result: AccountSplit, lang: str) -> list[str]:
    """The split as a person reads it, with any caveat."""
    if not result.has_account:
        return [_say("no_account", lang, personal=money(result.cash))]
    lines = [_say("split", lang, account=money(result.account), cash=money(result.cash),
                  balance=money(result.balance), may_pay=money(result.may_pay))]
    if result.has_account and result.parts["current_year"]:
        lines.append(_say("current_year", lang, amount=money(result.parts["current_year"])))
    if result.family:
        lines.append(_say("family", lang, family=money(result.family)))
    return lines + [_say(note, lang) for note in result.notes]


def account_sources(result: AccountSplit, lang: str) -> list[str]:
    """The documents the rule of what the account may pay rests on, with their confidence."""
    levels = _texts()["confidence"]
    return [_say("source", lang, title=source["title"], confidence=levels[level].get(lang, levels[level]["zh"]))
            for source, level in result.rule.sources]


def _say(key: str, lang: str, **values: Any) -> str:
    entry = _texts()["lines"][key]
    return str(entry.get(lang) or entry["zh"]).format(**values)


@cache
def _texts() -> dict[str, Any]:
    return yaml.safe_load(TEXTS_FILE.read_text(encoding="utf-8"))


# -- loading -------------------------------------------------------------------------------------


@cache
def account_rules(path: Path = RULES_FILE) -> dict[str, AccountRule]:
    """The rules by region id ("" is the national default); `PolicyErrors` with file, line and field."""
    errors: list[PolicyError] = []
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except OSError as bad:
        raise PolicyErrors([PolicyError(path.name, 1, "", f"cannot be read ({bad.strerror})")]) from None
    except (UnicodeDecodeError, yaml.YAMLError) as bad:
        mark = getattr(bad, "problem_mark", None)
        raise PolicyErrors([PolicyError(path.name, mark.line + 1 if mark else 1, "", "not readable YAML")]) from None
    top = _mapping(root, path.name, "", errors)
    national = _entry(top.get("national"), path.name, "national", None, errors)
    rules = {"": national} if national else {}
    for region, node in _mapping(top.get("regions"), path.name, "regions", errors).items():
        if national:
            rule = _entry(node, path.name, f"regions.{region}", national, errors)
            if rule:
                rules[region] = rule
    if errors or not national:
        raise PolicyErrors(errors or [PolicyError(path.name, 1, "national", "missing")])
    return rules


def _mapping(node: yaml.Node | None, file: str, field: str, errors: list[PolicyError]) -> dict[str, yaml.Node]:
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        errors.append(PolicyError(file, node.start_mark.line + 1, field, "expected a mapping"))
        return {}
    return {key.value: value for key, value in node.value}


def _entry(node: yaml.Node | None, file: str, field: str, base: AccountRule | None,
           errors: list[PolicyError]) -> AccountRule | None:
    fields = _mapping(node, file, field, errors)
    before = len(errors)

    def fail(name: str, message: str) -> None:
        at = fields.get(name, node)
        errors.append(PolicyError(file, at.start_mark.line + 1 if at else 1, f"{field}.{name}", message))

    values: dict[str, Any] = {}
    for name, value_node in fields.items():
        if name not in FIELDS:
            fail(name, "unknown field")
            continue
        value = yaml.safe_load(yaml.serialize(value_node))
        values[name] = value
        if name == "pays" and not (isinstance(value, list) and set(value) <= set(PARTS)):
            fail(name, f"a list of: {', '.join(PARTS)}")
        elif name == "plans" and not (isinstance(value, list)
                                                                and all(isinstance(v, str) for v in value)):
            fail(name, "a list of ids")
        elif name == "family_pool" and not isinstance(value, bool):
            fail(name, "true or false")
        elif name == "confidence" and value not in CONFIDENCE:
            fail(name, f"one of {', '.join(CONFIDENCE)}")
        elif name == "source" and not (isinstance(value, dict) and isinstance(value.get("title"), str)
                                       and all(isinstance(v, str) for v in value.values())):
            fail(name, "a mapping with at least a title (issuer, date, url: text)")
        elif name == "quote" and not isinstance(value, str):
            fail(name, "a text")
    if base is None:
        for name in ("plans", "pays", "family_pool", "source", "confidence"):
            if name not in fields:
                fail(name, "missing")
    if len(errors) > before:
        return None
    if "source" in values and "confidence" not in values:
        fail("confidence", "missing (the source's confidence)")
        return None
    own = ((dict(values["source"]), values["confidence"]),) if "source" in values else ()
    if base is None:
        return AccountRule(tuple(values["plans"]), frozenset(values["pays"]), values["family_pool"], own,
                           values.get("quote", ""))
    return AccountRule(
        tuple(values.get("plans", base.plans)), frozenset(values.get("pays", base.pays)),
        values.get("family_pool", base.family_pool), base.sources + own, values.get("quote", base.quote))
