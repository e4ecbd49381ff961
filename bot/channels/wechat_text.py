"""How the dialogue's replies read on WeChat. A passive reply is one text message with no buttons and
at most 2047 UTF-8 bytes, so:

- a question's buttons become numbered options ("回复 1 上海 · 2 北京"); the number or the option's words
  map back to the button. Questions that take an amount offer their controls as words, so "1" stays
  an amount;
- the dialogue's "点按钮 / Tap a button" wording is said as WeChat has it (a table, not branches);
- an estimate shows its card (the figures first) and keeps the reply's details (steps, comparisons,
  sources) behind "回复 详情"; any reply longer than the limit is cut at line ends and paged there.

`Shown` is what one answer shows and what it leaves for the next message (options, pages); the
channel keeps that in Redis as the two JSON fields `Shown.state` writes and `Shown.stored` reads.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field

from bot.channels.paging import pack_lines
from conversations.replies import Button, Turn
from conversations.texts import t

CONTENT_BYTES = 2000  # a passive text reply's Content, UTF-8: WeChat cuts past 2047 bytes
_PLAIN = {"~back", "~skip", "~skiprest"}  # the only buttons of a question answered by typing
DETAILS = {"详情", "详细", "更多", "details", "detail", "more"}

TEXTS = {
    "zh": {"reply": "回复", "sep": " · ", "details": "回复「详情」查看计算过程和对比", "more": "回复「详情」继续阅读",
           "busy": "上一条消息还在处理，请稍等几秒再发一次。", "first": "（从头再看）",
           "words": {"~back": "返回", "~skip": "跳过", "~skiprest": "全部跳过"}},
    "en": {"reply": "Reply", "sep": " · ", "details": "Reply “details” for the steps and comparisons",
           "more": "Reply “details” to read on", "busy": "Your last message is still being handled; send it "
           "again in a few seconds.", "first": "(from the start)",
           "words": {"~back": "back", "~skip": "skip", "~skiprest": "skip all"}},
}


# The dialogue's words for buttons, said as WeChat has them (numbers and words to reply): text key → wording.
REWORDED = {
    "zh": {"hints.choice": "没看懂这个选择。请回复选项前的序号，或选项名称。",
           "hints.not_text": "我只能读懂文字。请回复序号，或输入文字。",
           "hints.stale": "这个选项来自之前的消息，已经失效。我们接着回答当前的问题：",
           "summary.edit_hint": "回复序号修改某一项，或回复「开始计算」。",
           "commands.done_hint": "估算已完成。回复「新的估算」重新开始，或「修改一项」调整答案。"},
    "en": {"hints.choice": "I didn't get that choice. Reply with an option's number or name.",
           "hints.not_text": "I can only read text. Reply with a number or type your answer.",
           "hints.stale": "That option belongs to an earlier message. Back to the current question:",
           "summary.edit_hint": "Reply with a number to change an answer, or “Calculate”.",
           "commands.done_hint": "The estimate is done. Reply “new estimate” to start again, or “change” an answer."},
}
HELP_LINE = {"zh": ("点按钮，或直接输入文字", "回复选项前的序号，或直接输入文字"),
             "en": ("by tapping a button or typing", "with an option's number or by typing")}


def language(lang: str | None) -> str:
    """A language these texts have (Chinese for anything else)."""
    return lang if lang in TEXTS else "zh"


def _reworded(text: str, lang: str) -> str:
    for key, wording in REWORDED[lang].items():
        text = text.replace(t(lang, key), wording)
    return text.replace(*HELP_LINE[lang])


@dataclass
class Shown:
    """What one answer shows: its text, the options it offers (button id, number or word), the pages
    waiting behind 详情."""

    text: str
    options: list[list[str]] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    line: str = ""  # the options line, shown again under each page
    lang: str = "zh"
    at: int = 0  # the page 详情 shows next

    def state(self) -> tuple[str, str]:
        """The hash fields `o` and `p` ('' deletes them)."""
        options = json.dumps({"o": self.options, "line": self.line, "lang": self.lang}, ensure_ascii=False)
        return (options if self.options or self.pages else "",
                json.dumps({"all": self.pages, "at": self.at}, ensure_ascii=False) if self.pages else "")

    @classmethod
    def stored(cls, options: str | bytes, pages: str | bytes) -> Shown:
        """What `state` wrote, with no text; nothing shown for anything else (a message still gets its turn)."""
        try:
            state, paged = json.loads(options or "{}"), json.loads(pages or "{}")
            return cls("", state.get("o", []), paged.get("all", []), state.get("line", ""),
                       language(state.get("lang")), int(paged.get("at", 0)))
        except (ValueError, AttributeError, TypeError):
            return cls("")


def _label(button: Button) -> str:
    """The label without its leading pictographs (⬅, ✅, 💳…): plain words read and type better."""
    label = button.label
    while label and unicodedata.category(label[0]) in ("So", "Sk", "Sm", "Mn", "Zs", "Cf"):
        label = label[1:]
    return label.strip() or button.label


def _options(buttons: list[Button], lang: str) -> tuple[str, list[list[str]]]:
    """The options line and what each number or word stands for."""
    texts = TEXTS[lang]
    if not buttons:
        return "", []
    if all(b.id.partition("|")[2] in _PLAIN for b in buttons):  # a typed answer: "1" must stay an amount
        pairs = [(texts["words"][b.id.partition("|")[2]], b.id) for b in buttons]
        return f"{texts['reply']} " + texts["sep"].join(w for w, _ in pairs), [[b, w] for w, b in pairs]
    numbered = [(str(i), b) for i, b in enumerate(buttons, 1)]
    line = f"{texts['reply']} " + texts["sep"].join(f"{n} {_label(b)}" for n, b in numbered)
    return line, [[b.id, n, _label(b)] for n, b in numbered]


def _utf8(text: str) -> int:
    return len(text.encode())


def paginate(text: str, budget: int) -> list[str]:
    """The text in pieces of at most `budget` UTF-8 bytes, cut at line ends where possible."""
    def cut(line: str) -> int:  # as many whole characters as fit
        return len(line.encode()[:budget].decode(errors="ignore"))

    pages = pack_lines(text.split("\n"), budget, _utf8, cut)
    return [p.strip("\n") for p in pages if p.strip()] or [""]


def render(turn: Turn) -> Shown:
    """A turn's replies as one passive reply: the first page, its options, the rest behind 详情."""
    lang = language(turn.lang)
    texts = TEXTS[lang]
    last = next((r.choices for r in reversed(turn.replies) if r.buttons), [])  # the message looked at now
    line, options = _options(last, lang)
    parts, details = [f"→ {turn.answered}"] if turn.answered else [], ""
    for reply in turn.replies:
        body = _reworded(reply.text, lang)
        if reply.details:  # an estimate's steps, comparisons and sources wait behind 详情
            details = _reworded(reply.details, lang)
        parts.append(f"【{reply.title}】\n{body}" if reply.title else body)
    text = "\n\n".join(p.strip() for p in parts if p.strip())
    footer = "\n\n".join(x for x in (texts["details"] if details else "", line) if x)
    budget = CONTENT_BYTES - _utf8(footer) - _utf8(texts["more"]) - 8
    pages = paginate(text, budget)
    rest = pages[1:] + (paginate(details, CONTENT_BYTES - _utf8(texts["more"]) - 8) if details else [])
    hint = texts["more"] if len(pages) > 1 else texts["details"] if details else ""
    shown = "\n\n".join(x for x in (pages[0], hint, line) if x)
    return Shown(shown, options, rest, line, lang)


def next_page(last: Shown) -> Shown:
    """The next page behind 详情 (after the last, the first again), with the options still open."""
    texts = TEXTS[last.lang]
    at = last.at % len(last.pages)
    more = texts["more"] if at + 1 < len(last.pages) else ""
    text = "\n\n".join(x for x in (last.pages[at], more, last.line) if x)
    return Shown(text, last.options, last.pages, last.line, last.lang, at + 1)


def match_option(text: str, options: list[list[str]]) -> str | None:
    """The button a typed number or option word stands for (full-width digits and a trailing "." too)."""
    folded = unicodedata.normalize("NFKC", text).strip().rstrip(".、。").strip().casefold()
    for option in options:
        if folded in (w.casefold() for w in option[1:]):
            return option[0]
    return None
