"""Interface texts per language, from `texts/<lang>.yaml` and the feature files beside it
(`texts/<lang>.<feature>.yaml`, each adding its own top-level keys); choice synonyms from
`texts/synonyms.yaml`.

A platform may word a text its own way: `channels.<platform>.<key>` in the same file wins over `<key>`
while `channel` is set to that platform (the web chat has buttons and a menu, not slash commands).
The dialogue sets it for each turn; a platform's own messages set it with `speaking_on`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
FOLDER = Path(__file__).parent / "texts"
channel: contextvars.ContextVar[str] = contextvars.ContextVar("channel", default="")
_MISSING = object()


@cache
def _load(lang: str) -> dict[str, Any]:
    texts = yaml.safe_load((FOLDER / f"{lang}.yaml").read_text(encoding="utf-8"))
    for extra in sorted(FOLDER.glob(f"{lang}.*.yaml")):
        texts.update(yaml.safe_load(extra.read_text(encoding="utf-8")))
    return texts


@cache
def synonyms() -> dict[str, dict[str, list[str]]]:
    return yaml.safe_load((FOLDER / "synonyms.yaml").read_text(encoding="utf-8"))


def _at(node: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def raw(lang: str, key: str) -> Any:
    """The value at a dotted key ("labels.levels.3"), in `lang` (falling back to Chinese), in the words
    of the current `channel` where it has its own."""
    table = _load(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    platform = channel.get()
    if platform:
        own = _at(table.get("channels", {}).get(platform), key)
        if own is not _MISSING:
            return own
    value = _at(table, key)
    if value is _MISSING:
        raise KeyError(key)
    return value


@contextlib.contextmanager
def speaking_on(platform: str) -> Iterator[None]:
    """Texts in `platform`'s own words within the block."""
    token = channel.set(platform)
    try:
        yield
    finally:
        channel.reset(token)


def t(lang: str, key: str, **values: Any) -> str:
    """A text with its placeholders filled in."""
    text = raw(lang, key)
    return text.format(**values) if values else text


@cache
def words(key: str) -> frozenset[str]:
    """Command words ("返回", "back") in every language, for typed commands."""
    return frozenset(w.casefold() for lang in LANGUAGES for w in raw(lang, f"words.{key}"))
