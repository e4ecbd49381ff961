"""Platform-neutral parsers for the answers people type into the bot.

Why this module exists: every chat front end (Telegram, web, CLI) asks the same
questions ("how much was the bill?", "which hospital level?") and gets the same
messy answers: ``1.2万``, ``一万二``, ``￥800``, full-width digits, typos such as
``shanghia``.  Keeping the interpretation here, as pure functions without I/O,
means each front end behaves identically and the rules are tested once.

Design notes:

* Money is ``decimal.Decimal`` end to end; no float is ever created, so ``0.1 +
  0.2`` style errors cannot creep into an insurance estimate.
* Amount failures raise :class:`AmountError` with a short machine ``code``; the
  caller turns the code into a localised message.
* Chinese numerals, units and currency words live in data tables, so adding a
  spelling is a one-line change rather than a new branch.
* Work is bounded: over-long inputs are rejected before any parsing, and fuzzy
  matching is only attempted on short texts.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Literal, NamedTuple

__all__ = [
    "AMOUNT_ERROR_CODES",
    "DEFAULT_AMOUNT_LIMIT",
    "AmountError",
    "Option",
    "match_choice",
    "normalise",
    "parse_amount",
]

# ---------------------------------------------------------------------------
# Shared normalisation
# ---------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC-fold (full-width to half-width), strip, lowercase and collapse whitespace."""
    folded = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", folded).strip().lower()


# ---------------------------------------------------------------------------
# Amounts
# ---------------------------------------------------------------------------

AmountErrorCode = Literal["empty", "unreadable", "negative", "zero", "too_large", "too_precise"]
AMOUNT_ERROR_CODES: tuple[AmountErrorCode, ...] = (
    "empty",
    "unreadable",
    "negative",
    "zero",
    "too_large",
    "too_precise",
)

#: Exclusive upper bound: amounts must be strictly below it (so ``1亿`` is too large).
DEFAULT_AMOUNT_LIMIT = Decimal("100000000")

#: Inputs longer than this (raw characters) are rejected without parsing.
MAX_AMOUNT_CHARS = 100

_CENT = Decimal("0.01")
_ONE = Decimal(1)
_ZERO = Decimal(0)

CHINESE_DIGITS: dict[str, int] = {
    "零": 0, "〇": 0,
    "一": 1, "壹": 1, "幺": 1,
    "二": 2, "贰": 2, "貳": 2, "两": 2, "兩": 2,
    "三": 3, "叁": 3, "參": 3,
    "四": 4, "肆": 4,
    "五": 5, "伍": 5,
    "六": 6, "陆": 6, "陸": 6,
    "七": 7, "柒": 7,
    "八": 8, "捌": 8,
    "九": 9, "玖": 9,
}  # fmt: skip

#: Units that multiply the number directly before them (strictly decreasing within a section).
SMALL_UNITS: dict[str, int] = {
    "十": 10, "拾": 10,
    "百": 100, "佰": 100,
    "千": 1000, "仟": 1000, "k": 1000,
}  # fmt: skip

#: Units that multiply the whole section before them (万, 亿; strictly decreasing overall).
BIG_UNITS: dict[str, int] = {
    "万": 10**4, "萬": 10**4, "w": 10**4,
    "亿": 10**8, "億": 10**8,
}  # fmt: skip

#: Small units that may stand without a number ("十五", "十万").
IMPLICIT_ONE_UNITS: frozenset[str] = frozenset({"十", "拾"})

#: Longest first, so "块钱" wins over "块".  Text is already NFKC-folded and lowercase.
CURRENCY_PREFIXES: tuple[str, ...] = ("人民币", "rmb", "cny", "¥")  # "￥" folds to "¥"
CURRENCY_SUFFIXES: tuple[str, ...] = (
    "人民币", "块钱", "元整", "yuan", "kuai", "rmb", "cny", "元", "圆", "块",
)  # fmt: skip
MINUS_SIGNS: tuple[str, ...] = ("-", "−", "负")
PLUS_SIGNS: tuple[str, ...] = ("+",)

# Arabic number: either strictly grouped by thousands ("12,000.5") or plain ("12000.5").
_ARABIC = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?")


class AmountError(ValueError):
    """An answer that is not an acceptable amount; ``code`` is one of AMOUNT_ERROR_CODES."""

    def __init__(self, code: AmountErrorCode) -> None:
        super().__init__(code)
        self.code: AmountErrorCode = code


TokenKind = Literal["num", "zero", "unit", "big"]


class _Token(NamedTuple):
    kind: TokenKind
    value: Decimal
    text: str

    @property
    def single_digit(self) -> bool:
        return self.kind == "num" and len(self.text) == 1


def parse_amount(
    text: str,
    *,
    allow_zero: bool = False,
    limit: Decimal = DEFAULT_AMOUNT_LIMIT,
) -> Decimal:
    """Parse a money amount in yuan as people type it; raise AmountError(code) if unusable.

    Returns a Decimal with no decimal places for whole amounts, else exactly two.
    ``limit`` is exclusive: the amount must be strictly below it.
    """
    if not text or text.isspace():
        raise AmountError("empty")
    if len(text) > MAX_AMOUNT_CHARS:
        raise AmountError("unreadable")
    negative, body = _strip_affixes("".join(normalise(text).split()))
    with localcontext() as ctx:
        ctx.prec = 4 * MAX_AMOUNT_CHARS  # exact arithmetic for any input we accept
        value = _evaluate(_tokenize(body))
        return _validate(value, negative=negative, allow_zero=allow_zero, limit=limit)


def _strip_affixes(text: str) -> tuple[bool, str]:
    """Remove currency words and a sign; the sign may come before or after the prefix."""
    sign = _first_prefix(text, MINUS_SIGNS + PLUS_SIGNS)
    text = text[len(sign) :]
    text = text[len(_first_prefix(text, CURRENCY_PREFIXES)) :]
    if not sign:
        sign = _first_prefix(text, MINUS_SIGNS + PLUS_SIGNS)
        text = text[len(sign) :]
    suffix = _first_suffix(text, CURRENCY_SUFFIXES)
    return sign in MINUS_SIGNS, text[: len(text) - len(suffix)]


def _first_prefix(text: str, prefixes: Iterable[str]) -> str:
    return next((p for p in prefixes if text.startswith(p)), "")


def _first_suffix(text: str, suffixes: Iterable[str]) -> str:
    return next((s for s in suffixes if text.endswith(s)), "")


def _tokenize(text: str) -> list[_Token]:
    if not text:
        raise AmountError("unreadable")
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        token = _next_token(text, pos)
        tokens.append(token)
        pos += len(token.text)
    return tokens


def _next_token(text: str, pos: int) -> _Token:
    match = _ARABIC.match(text, pos)
    if match:
        return _Token("num", Decimal(match.group().replace(",", "")), match.group())
    char = text[pos]
    if char in CHINESE_DIGITS:
        digit = CHINESE_DIGITS[char]
        return _Token("num" if digit else "zero", Decimal(digit), char)
    if char in SMALL_UNITS:
        return _Token("unit", Decimal(SMALL_UNITS[char]), char)
    if char in BIG_UNITS:
        return _Token("big", Decimal(BIG_UNITS[char]), char)
    raise AmountError("unreadable")


def _evaluate(tokens: Sequence[_Token]) -> Decimal:
    """Sum sections split by big units (万, 亿), which must strictly decrease."""
    total = _ZERO
    section: list[_Token] = []
    last_big: Decimal | None = None
    for token in tokens:
        if token.kind != "big":
            section.append(token)
            continue
        if not section or (last_big is not None and token.value >= last_big):
            raise AmountError("unreadable")
        total += _section_value(section, carry=None) * token.value
        last_big, section = token.value, []
    return total + _section_value(section, carry=last_big)


def _section_value(tokens: Sequence[_Token], carry: Decimal | None) -> Decimal:
    """Value of a run without big units; ``carry`` is the big unit just before it.

    A trailing lone digit is scaled to the preceding unit, as in 3千5 = 3500 and
    一万二 = 12000, unless 零 intervened (一千零五 = 1005).
    """
    value = _ZERO
    pending: _Token | None = None
    last_unit: Decimal | None = None
    scale_unit = carry
    for index, token in enumerate(tokens):
        if token.kind == "num":
            if pending is not None:
                raise AmountError("unreadable")
            pending = token
        elif token.kind == "zero":
            if pending is not None:
                raise AmountError("unreadable")
            scale_unit = None
        else:
            if last_unit is not None and token.value >= last_unit:
                raise AmountError("unreadable")
            value += _multiplier(pending, token, first=index == 0) * token.value
            pending, last_unit, scale_unit = None, token.value, token.value
    return value + _trailing_value(pending, scale_unit, bound=last_unit or carry)


def _multiplier(pending: _Token | None, unit: _Token, *, first: bool) -> Decimal:
    if pending is not None:
        return pending.value
    if first and unit.text in IMPLICIT_ONE_UNITS:
        return _ONE
    raise AmountError("unreadable")


def _trailing_value(pending: _Token | None, scale_unit: Decimal | None, bound: Decimal | None) -> Decimal:
    if pending is None:
        return _ZERO
    if bound is None:
        return pending.value
    if scale_unit is not None and pending.single_digit:
        return pending.value * scale_unit / 10
    if pending.value != pending.value.to_integral_value() or pending.value >= bound:
        raise AmountError("unreadable")  # "3千5.5", "3千5000"
    return pending.value


def _validate(value: Decimal, *, negative: bool, allow_zero: bool, limit: Decimal) -> Decimal:
    if value == 0:
        if allow_zero:
            return _ZERO
        raise AmountError("zero")
    if negative:
        raise AmountError("negative")
    if value >= limit:
        raise AmountError("too_large")
    try:
        cents = value.quantize(_CENT)
    except InvalidOperation:  # pragma: no cover - guarded by the limit check
        raise AmountError("too_large") from None
    if cents != value:
        raise AmountError("too_precise")
    return cents.quantize(_ONE) if cents == cents.to_integral_value() else cents


# ---------------------------------------------------------------------------
# Choices
# ---------------------------------------------------------------------------

#: Minimum SequenceMatcher ratio for a typo to count as a match.
FUZZY_CUTOFF = 0.8
#: Fuzzy matching is only tried on texts of this length range (short texts give noise,
#: long ones are chatty sentences and difflib is quadratic).
FUZZY_MIN_CHARS = 3
FUZZY_MAX_CHARS = 40
#: Longer answers are not matched at all.
MAX_CHOICE_CHARS = 500


@dataclass(frozen=True, slots=True)
class Option:
    """One answer the bot offers: a stable ``id`` plus the words people use for it."""

    id: str
    labels: tuple[str, ...] = ()


def match_choice(
    text: str, options: Sequence[Option], *, by_number: bool = False, known: frozenset[str] = frozenset()
) -> str | None:
    """Return the id of the option the text refers to, or None when unknown or ambiguous.

    Refused at once: a negative number ("-1" is no option's number) and an option denied ("不在职",
    "not working", "unemployed": the person says what they are not; asking again beats guessing).
    Then tried in order, the first step that finds anything decides:
    1. exact id or label; else, when ``by_number``, the 1-based position (a number that is an
       option's own name, as "3" for 三级 among levels, means that option, not the third);
    2. a label contained in the text ("住院治疗" -> 住院; Latin labels as whole words);
    3. a close spelling of an id or label (difflib), unless the text is a word of ``known`` (a word
       people use for something else, such as "employee" for a plan, is not a typo of "employed").
    Each step succeeds only if exactly one option matches.
    """
    if len(text) > MAX_CHOICE_CHARS:
        return None
    if _NEGATIVE_NUMBER.match(normalise(text)):
        return None
    key = _clean(text)
    if not key:
        return None
    table = [(option.id, _option_keys(option)) for option in options]
    if any(_negated(key, label) for _, keys in table for label in keys):
        return None
    steps: tuple[Callable[[], list[str]], ...] = (
        lambda: _exact_ids(key, table, options, by_number),
        lambda: _contained_ids(key, table),
        lambda: [] if key in known else _fuzzy_ids(key, table),
    )
    for step in steps:
        found = step()
        if found:
            return _unique(found)
    return None


#: A minus sign (or 负) before a number: "-1", "−2", "负一".
_NEGATIVE_NUMBER = re.compile(r"^[-−负]\s*[0-9零〇一二两三四五六七八九十]")
#: Words that deny what follows them, in Chinese (right before the label) and English.
NEGATIONS_ZH: tuple[str, ...] = ("不", "没", "未", "非", "无", "别", "不是", "没有", "并非", "不算")
NEGATIONS_EN = r"(?:not|no|no longer|never|non|isn't|aren't|wasn't|don't|doesn't|didn't|am not)"


def _negated(key: str, label: str) -> bool:
    """Whether the label occurs in the text denied: 不在职, 没退休, not working, non-working, unemployed."""
    if len(label) >= len(key) or label.isdigit():
        return False
    if _has_cjk(label):
        at = key.find(label)
        while at > 0:
            if key[:at].rstrip().endswith(NEGATIONS_ZH):
                return True
            at = key.find(label, at + 1)
        return False
    return _denial(label).search(key) is not None


@functools.lru_cache(maxsize=4096)
def _denial(label: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9])(?:{NEGATIONS_EN}[\s-]*|un|non-?){re.escape(label)}(?![a-z0-9])")


def _clean(text: str) -> str:
    """normalise() and drop punctuation and symbols around the text."""
    key = normalise(text)
    start, end = 0, len(key)
    while start < end and _is_edge_noise(key[start]):
        start += 1
    while end > start and _is_edge_noise(key[end - 1]):
        end -= 1
    return key[start:end]


def _is_edge_noise(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "PS"


@functools.lru_cache(maxsize=4096)  # options are immutable and the same few recur every turn
def _option_keys(option: Option) -> tuple[str, ...]:
    keys = (_clean(option.id), *(_clean(label) for label in option.labels))
    return tuple(dict.fromkeys(k for k in keys if k))


def _unique(ids: Iterable[str]) -> str | None:
    distinct = set(ids)
    return distinct.pop() if len(distinct) == 1 else None


def _exact_ids(
    key: str, table: Sequence[tuple[str, tuple[str, ...]]], options: Sequence[Option], by_number: bool
) -> list[str]:
    found = [option_id for option_id, keys in table if key in keys]
    number = _number(key) if by_number and not found else None
    if number is not None:
        named = [option_id for option_id, keys in table if str(number) in keys]  # "三" among levels: 三级
        found = named or ([options[number - 1].id] if 1 <= number <= len(options) else [])
    return found


def _number(key: str) -> int | None:
    """A whole number typed as 2, ２, 二 or ②; None for anything else."""
    if len(key) > 8:
        return None
    try:
        number = parse_amount(key)
    except AmountError:
        return None
    return int(number) if number == number.to_integral_value() else None


def _contained_ids(key: str, table: Sequence[tuple[str, tuple[str, ...]]]) -> list[str]:
    hits = [(option_id, label) for option_id, keys in table for label in keys if _contains(key, label)]
    # Prefer the longer label when one hit is part of another ("门诊" inside "门诊特殊病").
    return [
        option_id
        for option_id, label in hits
        if not any(label != other and label in other for _, other in hits)
    ]


def _contains(text: str, label: str) -> bool:
    # A bare number inside other text ("3万", "2005") is an amount or a year, not option "3".
    if len(label) >= len(text) or label.isdigit():
        return False
    if _has_cjk(label):
        return label in text
    return re.search(rf"(?<![a-z0-9]){re.escape(label)}(?![a-z0-9])", text) is not None


def _has_cjk(text: str) -> bool:
    return any(unicodedata.name(char, "").startswith("CJK") for char in text)


def _fuzzy_ids(key: str, table: Sequence[tuple[str, tuple[str, ...]]]) -> list[str]:
    if not FUZZY_MIN_CHARS <= len(key) <= FUZZY_MAX_CHARS:
        return []
    return [
        option_id
        for option_id, keys in table
        if difflib.get_close_matches(key, [k for k in keys if len(k) <= FUZZY_MAX_CHARS], 1, FUZZY_CUTOFF)
    ]
