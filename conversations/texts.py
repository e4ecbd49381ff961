"""Interface texts per language, from `texts/<lang>.yaml`; choice synonyms from `texts/synonyms.yaml`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
FOLDER = Path(__file__).parent / "texts"


@cache
def _load(lang: str) -> dict[str, Any]:
    return yaml.safe_load((FOLDER / f"{lang}.yaml").read_text(encoding="utf-8"))


@cache
def synonyms() -> dict[str, dict[str, list[str]]]:
    return yaml.safe_load((FOLDER / "synonyms.yaml").read_text(encoding="utf-8"))


def raw(lang: str, key: str) -> Any:
    """The value at a dotted key ("labels.levels.3"), in `lang` (falling back to Chinese)."""
    node: Any = _load(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    for part in key.split("."):
        node = node[part]
    return node


def t(lang: str, key: str, **values: Any) -> str:
    """A text with its placeholders filled in."""
    text = raw(lang, key)
    return text.format(**values) if values else text


@cache
def words(key: str) -> frozenset[str]:
    """Command words ("返回", "back") in every language, for typed commands."""
    return frozenset(w.casefold() for lang in LANGUAGES for w in raw(lang, f"words.{key}"))
