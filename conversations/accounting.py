"""The personal account in the chat: offered after an estimate, asked only when the person wants it.

A result offers "💳 what can my account pay?" where the plan has a personal account. Pressing it marks
the `account` question as wanted (an empty answer, which is never valid, so the question table asks it,
then whether family pooling is on); the next result shows, under the personal share, how much the
account pays and how much is cash (rules/account.py does the arithmetic).
"""

from __future__ import annotations

from decimal import Decimal

from conversations.questions import Context
from conversations.texts import t
from rules.account import account_lines, account_sources, rule_for, split
from rules.case import Estimate

WANTED = ""  # the marker answer of a wanted, not yet given, balance


def offers_account(ctx: Context) -> bool:
    """Whether a result should offer the split: the plan has an account and no balance was given."""
    if ctx.region is None or ctx.value("plan") not in rule_for(ctx.region.id).plans:
        return False
    return ctx.value("account") is None


def want_account(answers: dict) -> None:
    answers["account"] = WANTED
    answers.pop("family_pool", None)


def with_account(text: str, estimate: Estimate, ctx: Context) -> str:
    """The estimate's text with the account split under its personal line, when a balance was given."""
    balance = ctx.value("account")
    if balance is None:
        return text
    result = split(estimate, Decimal(balance), ctx.value("family_pool") == "yes")
    lines = text.split("\n")
    head = t(ctx.lang, "result.personal", amount="\x00").split("\x00")[0]
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith(head)), len(lines))
    shown = lines[:at] + [f"💳 {line}" for line in account_lines(result, ctx.lang)] + lines[at:]
    return "\n".join(shown + [f"• {line}" for line in account_sources(result, ctx.lang)])
