"""How parameter values are shown (rules show, rules diff, warnings): the parameter decides."""

from decimal import Decimal

from rules.policy import UNLIMITED, Band
from rules.report import show_value


def test_a_share_or_an_amount_is_told_by_the_parameter_not_by_its_size() -> None:
    assert show_value(Decimal(1), "deductible") == "1.00"  # one yuan, not 100%
    assert show_value(Decimal("0.5"), "fund_cap") == "0.50"
    assert show_value(Decimal(1), "ratio") == "100%"
    assert show_value(Decimal("0.922"), "ratio") == "92.2%"
    assert show_value({"1": Decimal(200), "3": Decimal(600)}, "deductible") == "1: 200.00, 3: 600.00"
    assert show_value(UNLIMITED, "fund_cap") == "unlimited"
    bands = (Band(Decimal(0), Decimal("0.9")), Band(Decimal(30000), {"1": Decimal("0.95")}))
    assert show_value(bands, "ratio") == ">0.00: 90%; >30,000.00: 1: 95%"
