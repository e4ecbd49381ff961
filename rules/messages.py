"""Render the engine's messages (steps, warnings, reasons) from `texts/messages.yaml`.

Kept apart from the engine so an estimate stores only a key and its numbers; formatting happens
when a person (or the command line) reads it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FEN = Decimal("0.01")
TEXTS = Path(__file__).parent / "texts" / "messages.yaml"


@cache
def _table() -> dict[str, dict[str, str]]:
    data = yaml.safe_load(TEXTS.read_text(encoding="utf-8"))
    flat: dict[str, dict[str, str]] = {}
    for section in ("steps", "warnings", "reasons"):
        flat.update(data[section])
    return flat


@cache
def _data() -> dict[str, Any]:
    return yaml.safe_load(TEXTS.read_text(encoding="utf-8"))


def names() -> dict[str, dict[str, str]]:
    return _data()["names"]


def label(group: str, key: str, lang: str) -> str:
    """A level's or an out-of-area kind's display name ("三级医院", "out of area (referral)")."""
    entry = _data()[group].get(key)
    return entry[lang if lang in entry else "zh"] if entry else key


def shown_value(value: Any, parameter: str) -> tuple[str, str]:
    """A parameter's value in words, (zh, en): money, a percentage, levels by name, "不封顶"."""
    return _value_text(value, parameter, "zh"), _value_text(value, parameter, "en")


def _value_text(value: Any, parameter: str, lang: str) -> str:
    from rules.policy import UNLIMITED, Band

    sep = "；" if lang == "zh" else "; "
    if value is UNLIMITED:
        return "不封顶" if lang == "zh" else "no cap"
    if isinstance(value, Decimal):
        return percent(value) if parameter.endswith(("ratio", "factor", "bands")) else money(value)
    if isinstance(value, dict):
        group = "where" if parameter == "out_of_area_factor" else "levels"
        return sep.join(f"{label(group, k, lang)} {_value_text(v, parameter, lang)}" for k, v in value.items())
    if isinstance(value, tuple) and value and isinstance(value[0], Band):
        above = "{} 以上 {}" if lang == "zh" else "above {}: {}"
        return sep.join(above.format(money(b.above), _value_text(b.ratio, "ratio", lang)) for b in value)
    return str(value)


def name(key: str, lang: str) -> str:
    """A parameter's or detail's display name ("起付线", "deductible"); the key itself if unknown."""
    entry = names().get(key)
    return entry[lang if lang in entry else "zh"] if entry else key


def money(value: Decimal) -> str:
    """1234.5 → "1,234.50": rounded half-up to the fen, as every figure shown."""
    return f"{value.quantize(FEN, ROUND_HALF_UP):,.2f}"


def percent(value: Decimal) -> str:
    """0.85 → "85%", 0.922 → "92.2%"."""
    text = f"{(value * 100).normalize():f}"
    return f"{text}%"


def _show(key: str, value: Any, lang: str) -> str:
    if hasattr(value, "text"):
        return value.text(lang)  # a value put in words when read (`rules.context.Shown`)
    if isinstance(value, Decimal):
        return percent(value) if key.endswith(("ratio", "factor")) else money(value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[1] if lang == "en" else value[0]  # a (zh, en) pair
    if isinstance(value, list):
        sep = ", " if lang == "en" else "、"
        return sep.join(name(str(v), lang) for v in value)
    if key in ("level", "where"):
        return label(key + "s" if key == "level" else key, str(value), lang)
    return str(value)


def render(key: str, args: dict[str, Any], lang: str) -> str:
    template = _table()[key]
    text = template.get(lang) or template["zh"]
    return text.format(**{k: _show(k, v, lang) for k, v in args.items()})
