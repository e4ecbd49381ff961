"""Questions typed in the middle of a conversation, answered from the knowledge base.

The dialogue asks this module two things: does a message read as a question (吗, ？, 怎么, can/how/what…),
and what is the answer to it, as a reply that cites its documents the way a person can check them
(title, issuer, date, link; never an internal file) and says how far the answer is confirmed. When no
topic fits well enough the reply says so plainly instead of answering another question.
"""

from __future__ import annotations

import re
from functools import cache

from conversations.knowledge import Topic, knowledge
from conversations.matching import Match, Matcher
from conversations.parsing import normalise
from conversations.questions import QUESTIONS, Context, Invalid
from conversations.replies import Button, Reply
from conversations.texts import LANGUAGES, raw, synonyms, t
from rules.policy import PolicySet

Buttons = tuple[tuple[Button, ...], ...]

_QUESTION_ZH = re.compile(
    r"[?？]|[吗么呢嘛][\s。.!！~～]*$|怎么|怎样|如何|什么|为什么|为啥|多少|多久|多长|几[天年月个次号]"
    r"|哪|能不能|可不可以|是不是|是否|会不会|有没有|能否|啥|咋|请问|吗[，,]")
_QUESTION_EN = re.compile(r"^\s*(can|could|how|what|why|when|where|which|who|is|are|do|does|did|should|will"
                          r"|would|may|must)\b", re.IGNORECASE)
_BUTTON_WORDS = ("start", "back", "cancel", "help", "language", "skip", "ask")


def reads_as_question(text: str) -> bool:
    """Whether a message is put as a question (and so is not an answer to ours)."""
    return bool(_QUESTION_ZH.search(text) or _QUESTION_EN.match(text))


@cache
def matcher() -> Matcher:
    """The matcher over the shipped knowledge base, built once a process (jieba loads its dictionary
    on first use, about half a second). The dialogue's own answer words never make a question."""
    weak: list[str] = [w for key in _BUTTON_WORDS for lang in LANGUAGES for w in raw(lang, f"words.{key}")]
    for group in ("plans", "members", "visits", "levels"):
        for lang in LANGUAGES:
            weak += [str(v) for v in raw(lang, f"labels.{group}").values()]
        weak += [w for words in synonyms().get(group, {}).values() for w in words]
    return Matcher(knowledge(), weak=weak)


def warm_up() -> None:
    """Build the matcher and segment one question now, so that the first question a person types is
    answered in milliseconds instead of waiting for jieba's dictionary (0.5–5 s on a busy machine).
    Runtimes call this in a background thread at start."""
    matcher().match("个人账户没钱了还能报销吗")


@cache
def _button_words() -> frozenset[str]:
    """Every button label and command word, in every language, as typed (emoji and spaces dropped)."""
    def plain(text: str) -> str:
        return "".join(c for c in normalise(text) if c.isalnum())

    words = {plain(w) for key in _BUTTON_WORDS for lang in LANGUAGES for w in raw(lang, f"words.{key}")}
    words |= {plain(str(label)) for lang in LANGUAGES for label in raw(lang, "buttons").values()}
    words |= {plain(w) for w in ("ok", "好", "好的", "确认", "计算", "开始计算", "yes", "calculate", "go")}
    return frozenset(words)


def find(text: str) -> Match | None:
    """The topic a question asks about; never for a button's label typed out ("开始计算")."""
    if "".join(c for c in normalise(text) if c.isalnum()) in _button_words():
        return None
    return matcher().match(text)


def answers(ctx: Context, state: str, question: str | None, text: str) -> bool:
    """Whether the text is an answer to what the conversation asks now (a region when idle)."""
    if state == "idle":
        return QUESTIONS["region"].match(ctx, text) is not None
    if state != "ask" or question not in QUESTIONS:
        return False
    try:
        QUESTIONS[question].answer(ctx, text)
    except Invalid:
        return False
    return True


def reply(match: Match | None, lang: str, policies: PolicySet, buttons: Buttons = ()) -> Reply:
    """The topic's answer with its documents and confidence, titled with the question it answers;
    or, with no match, that the question is not known yet."""
    if match is None:
        return Reply(t(lang, "ask.unknown"), buttons=buttons)
    topic = match.topic
    lines = [topic.answer[lang], ""]
    if topic.regions:
        regions = policies.regions
        names = [regions[r].name(lang) if r in regions else r for r in topic.regions]
        lines.append(t(lang, "ask.regions", regions=("、" if lang == "zh" else ", ").join(names)))
    lines.append(t(lang, "ask.sources"))
    lines += [f"• {_document(d.title, d.issuer, d.date, d.url, lang)}" for d in topic.sources]
    lines.append(t(lang, "ask.confidence", level=t(lang, f"ask.levels.{topic.confidence}")))
    return Reply("\n".join(lines), title=topic.questions[lang][0], buttons=buttons)


def _document(title: str, issuer: str, date: str, url: str, lang: str) -> str:
    sep = "，" if lang == "zh" else ", "
    text = title + "".join(f"{sep}{part}" for part in (issuer, date) if part)
    return text + (f" — {url}" if url else "")


def topics_about(region: str) -> list[Topic]:
    """The topics written for one region (for tests and for a region's help)."""
    return [topic for topic in knowledge().values() if region in topic.regions]
