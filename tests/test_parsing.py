"""Tests for conversations.parsing: amounts, choices and normalisation."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.parsing import (
    AMOUNT_ERROR_CODES,
    AmountError,
    Option,
    match_choice,
    normalise,
    parse_amount,
)

# ---------------------------------------------------------------------------
# parse_amount
# ---------------------------------------------------------------------------

ACCEPTED = [
    ("12000", "12000"),
    ("12,000", "12000"),
    ("12，000", "12000"),
    ("1,234,567.89", "1234567.89"),
    ("1.2万", "12000"),
    ("1万2", "12000"),
    ("1万2千", "12000"),
    ("一万二千", "12000"),
    ("一万二", "12000"),
    ("两千五百", "2500"),
    ("两千五", "2500"),
    ("3千5", "3500"),
    ("3k", "3000"),
    ("3.5K", "3500"),
    ("1.5w", "15000"),
    ("¥800", "800"),
    ("￥800", "800"),
    ("800元", "800"),
    ("800块", "800"),
    ("800块钱", "800"),
    ("RMB 800", "800"),
    ("rmb800", "800"),
    ("人民币800元", "800"),
    ("800.5", "800.5"),
    ("800.55", "800.55"),
    ("800.50", "800.5"),
    ("１２０００", "12000"),
    ("１２，０００．５", "12000.5"),
    (" 1 2 000 ", "12000"),
    ("1 万 2 千", "12000"),
    ("0.5万", "5000"),
    ("十万", "100000"),
    ("十五", "15"),
    ("一百二十三", "123"),
    ("一千零五", "1005"),
    ("一千零五十", "1050"),
    ("壹仟贰佰", "1200"),
    ("10万5", "105000"),
    ("1,200万", "12000000"),
    ("1.2345万", "12345"),
    ("1.234567万", "12345.67"),
    ("+800", "800"),
    ("99999999.99", "99999999.99"),
    ("0.01", "0.01"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_parse_amount_accepts(text: str, expected: str) -> None:
    result = parse_amount(text)
    assert isinstance(result, Decimal)
    assert result == Decimal(expected)


def test_parse_amount_canonical_form() -> None:
    assert str(parse_amount("1.2万")) == "12000"
    assert str(parse_amount("800.5")) == "800.50"


REJECTED = [
    ("", "empty"),
    ("   ", "empty"),
    ("\u3000", "empty"),
    ("-5", "negative"),
    ("－5", "negative"),
    ("−5", "negative"),
    ("负五百", "negative"),
    ("-¥5", "negative"),
    ("¥-5", "negative"),
    ("0", "zero"),
    ("0.00", "zero"),
    ("零", "zero"),
    ("¥0", "zero"),
    ("1亿", "too_large"),
    ("100000000", "too_large"),
    ("123456789012345678901234567890", "too_large"),
    ("1.234", "too_precise"),
    ("0.001", "too_precise"),
    ("1.2345678万", "too_precise"),
    ("abc", "unreadable"),
    ("1..2", "unreadable"),
    ("1.", "unreadable"),
    ("12万万", "unreadable"),
    ("万", "unreadable"),
    ("百", "unreadable"),
    ("一二三", "unreadable"),
    ("1二", "unreadable"),
    ("3千5000", "unreadable"),
    ("3千5.5", "unreadable"),
    ("1,2", "unreadable"),
    ("1234,567", "unreadable"),
    ("12,0000", "unreadable"),
    ("元", "unreadable"),
    ("--5", "unreadable"),
    ("😀", "unreadable"),
    ("800😀", "unreadable"),
    ("1e5", "unreadable"),
    ("NaN", "unreadable"),
    ("Infinity", "unreadable"),
    ("٣", "unreadable"),
    ("1" * 10_000, "unreadable"),
    ("x" * 10_000, "unreadable"),
]


@pytest.mark.parametrize(("text", "code"), REJECTED)
def test_parse_amount_rejects(text: str, code: str) -> None:
    with pytest.raises(AmountError) as excinfo:
        parse_amount(text)
    assert excinfo.value.code == code


def test_allow_zero() -> None:
    assert parse_amount("0", allow_zero=True) == 0
    assert parse_amount("零元", allow_zero=True) == 0
    assert parse_amount("-0", allow_zero=True) == 0


def test_limit_is_exclusive_and_configurable() -> None:
    assert parse_amount("4999", limit=Decimal(5000)) == 4999
    with pytest.raises(AmountError) as excinfo:
        parse_amount("5000", limit=Decimal(5000))
    assert excinfo.value.code == "too_large"
    assert parse_amount("1亿", limit=Decimal("1e9")) == Decimal("100000000")


def test_long_input_is_fast() -> None:
    start = time.perf_counter()
    for text in ("9" * 10_000, "一" * 10_000, " " * 9_999 + "1", "万" * 10_000):
        with pytest.raises(AmountError):
            parse_amount(text)
    assert time.perf_counter() - start < 0.5


def _assert_amount_contract(text: str) -> None:
    try:
        result = parse_amount(text, allow_zero=True)
    except AmountError as error:
        assert error.code in AMOUNT_ERROR_CODES
    else:
        assert isinstance(result, Decimal)
        assert result >= 0
        assert result.as_tuple().exponent >= -2  # type: ignore[operator]


@given(st.text(max_size=60))
@settings(max_examples=400)
def test_parse_amount_arbitrary_text(text: str) -> None:
    _assert_amount_contract(text)


@given(st.text(alphabet="0123456789.,，万千百十亿零一二两三五九kw元¥-  ", max_size=20))
@settings(max_examples=400)
def test_parse_amount_numeric_alphabet(text: str) -> None:
    _assert_amount_contract(text)


@given(st.integers(min_value=1, max_value=99_999_999), st.integers(min_value=0, max_value=99))
def test_parse_amount_round_trips_plain_numbers(units: int, cents: int) -> None:
    text = f"{units:,}.{cents:02d}"
    assert parse_amount(text) == Decimal(f"{units}.{cents:02d}")


# ---------------------------------------------------------------------------
# match_choice
# ---------------------------------------------------------------------------

LEVELS = [
    Option("1", ("一级", "1级", "一级医院", "level 1", "primary")),
    Option("2", ("二级", "2级", "二级医院", "level 2", "secondary")),
    Option("3", ("三级", "3级", "三级医院", "level 3", "tertiary")),
]
REGIONS = [
    Option("beijing", ("北京", "北京市")),
    Option("shanghai", ("上海", "上海市")),
    Option("shanxi", ("山西",)),
    Option("shaanxi", ("陕西",)),
]
CARE = [
    Option("inpatient", ("住院", "inpatient", "hospital stay")),
    Option("outpatient", ("门诊", "outpatient")),
    Option("chronic", ("门诊特殊病", "门特", "chronic outpatient")),
]
STATUS = [
    Option("employee", ("在职", "上班", "employee", "working")),
    Option("retired", ("退休", "retired")),
]

CHOICES = [
    # exact id / label, case, width and punctuation folded
    ("3", LEVELS, False, "3"),
    ("三级", LEVELS, False, "3"),
    ("Tertiary", LEVELS, False, "3"),
    ("ＬＥＶＥＬ　３", LEVELS, False, "3"),
    ("  level   2 !", LEVELS, False, "2"),
    ("「二级医院」。", LEVELS, False, "2"),
    ("Shanghai", REGIONS, False, "shanghai"),
    ("上海市", REGIONS, False, "shanghai"),
    ("retired", STATUS, False, "retired"),
    # 1-based numbers
    ("1", REGIONS, True, "beijing"),
    ("２", REGIONS, True, "shanghai"),
    ("二", REGIONS, True, "shanghai"),
    ("4.", REGIONS, True, "shaanxi"),
    ("1", REGIONS, False, None),
    ("5", REGIONS, True, None),
    ("0", REGIONS, True, None),
    ("3", LEVELS, True, "3"),
    # small typos
    ("shanghia", REGIONS, False, "shanghai"),
    ("beijng", REGIONS, False, "beijing"),
    ("teritary", LEVELS, False, "3"),
    ("retird", STATUS, False, "retired"),
    # containment
    ("住院治疗", CARE, False, "inpatient"),
    ("我退休了", STATUS, False, "retired"),
    ("三级医院吧", LEVELS, False, "3"),
    ("我在上海", REGIONS, False, "shanghai"),
    ("看门诊特殊病", CARE, False, "chronic"),
    ("I am retired now", STATUS, False, "retired"),
    ("it's a level 3 hospital", LEVELS, False, "3"),
    # ambiguous or unknown
    ("北京还是上海", REGIONS, False, None),
    ("住院和门诊", CARE, False, None),
    ("shaxi", REGIONS, False, None),
    ("guangzhou", REGIONS, False, None),
    ("level", LEVELS, False, None),
    ("", LEVELS, False, None),
    ("？？", LEVELS, False, None),
    ("x" * 10_000, LEVELS, False, None),
    ("whatever", [], True, None),
]


@pytest.mark.parametrize(("text", "options", "by_number", "expected"), CHOICES)
def test_match_choice(text: str, options: list[Option], by_number: bool, expected: str | None) -> None:
    assert match_choice(text, options, by_number=by_number) == expected


def test_a_number_that_names_an_option_means_that_option() -> None:
    """Among hospital levels "3" is 三级 (its own number), not the third option; numbers that name no
    option are positions."""
    options = [Option("community", ("社区",)), Option("1", ("一级",)), Option("2", ("二级",)), Option("3", ("三级",)),
               Option("out_of_area", ("异地",))]
    assert [match_choice(n, options, by_number=True) for n in ("1", "2", "3", "３", "三")] == ["1", "2", "3", "3", "3"]
    assert match_choice("5", options, by_number=True) == "out_of_area"
    assert match_choice("4", options, by_number=True) == "3"
    assert match_choice("6", options, by_number=True) is None
    assert match_choice("2", options) == "2"


@pytest.mark.parametrize("text", ["-1", "-2", "−3", "- 1", "负一", "负2", "-1级", "-5"])
def test_a_negative_number_is_never_an_option(text: str) -> None:
    options = [Option("community", ("社区",)), Option("1", ("一级",)), Option("2", ("二级",)), Option("3", ("三级",)),
               Option("out_of_area", ("异地",))]
    assert match_choice(text, options, by_number=True) is None


def test_duplicate_label_is_ambiguous() -> None:
    options = [Option("a", ("same",)), Option("b", ("same",))]
    assert match_choice("same", options) is None


def test_option_is_frozen() -> None:
    option = Option("3", ("三级",))
    with pytest.raises(AttributeError):
        option.id = "4"  # type: ignore[misc]


_options = st.lists(
    st.builds(Option, st.text(max_size=10), st.tuples(st.text(max_size=10), st.text(max_size=10))),
    max_size=5,
)


@given(st.text(max_size=60), _options, st.booleans())
@settings(max_examples=400)
def test_match_choice_never_raises(text: str, options: list[Option], by_number: bool) -> None:
    result = match_choice(text, options, by_number=by_number)
    assert result is None or result in {option.id for option in options}


# ---------------------------------------------------------------------------
# normalise
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello   World ", "hello world"),
        ("ＡＢＣ１２３", "abc123"),
        ("上海\u3000\t市", "上海 市"),
        ("", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected
