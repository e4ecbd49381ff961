"""Each platform in its own words, and a conversation picked up again: the dialogue through a real
redis-server, as the web chat, Telegram and the terminal call it."""

from __future__ import annotations

import pytest
from test_dialogue import POLICIES, Chat, store, today  # noqa: F401  (fixture)

from conversations.dialogue import Dialogue
from conversations.replies import Incoming
from conversations.store import SessionKey
from conversations.texts import raw, speaking_on, t

WEB = SessionKey("web", "w" * 40, "w" * 40)
TELEGRAM = SessionKey("telegram", "7", "7")
TERMINAL = SessionKey("terminal", "alice", "alice")


@pytest.fixture
def dialogue(store) -> Dialogue:  # noqa: F811
    return Dialogue(POLICIES, store, today=today)


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_the_web_speaks_of_buttons_and_the_menu(dialogue, lang):
    chat = Chat(dialogue, WEB)
    await chat.command("language", lang)
    await chat.command("start")
    await chat.command("help")
    await chat.command("cancel")
    await chat.command("nonsense")
    await chat.command("forget")
    await chat.press("~forget:yes")
    for turn_text in chat.text, *(r.text for r in chat.turn.replies):
        assert "/" not in turn_text
    assert chat.actions == ["~new"]  # after deleting everything, a button starts again
    await chat.press("~new")
    assert "/" not in chat.text and chat.actions[0] == "beijing"


async def test_telegram_keeps_its_commands(dialogue):
    chat = Chat(dialogue, TELEGRAM)
    await chat.command("start")
    assert "/back" in chat.turn.replies[0].text
    await chat.command("forget")
    await chat.press("~forget:yes")
    assert "/start" in chat.text and chat.actions == ["~new"]


def test_a_channel_word_falls_back_to_the_common_text():
    with speaking_on("web"):
        assert t("zh", "prompts.region") == raw("zh", "prompts.region")  # no web wording: the common one
        assert "/" not in t("en", "welcome")
    assert "/back" in t("en", "welcome")


@pytest.mark.parametrize("key", [WEB, TERMINAL])
async def test_resume_recaps_the_answers_so_far(dialogue, key):
    chat = Chat(dialogue, key)
    await chat.command("start")
    await chat.say("上海")
    await chat.press("retired")
    await chat.say("住院")
    await chat.command("resume")
    recap, question = chat.turn.replies
    assert recap.text == "到目前为止你的回答：\n• 地区: 上海\n• 在职/退休: 退休\n• 就诊类型: 住院"
    assert question.text == "在哪一级医院？" and question.buttons
    # Nothing answered yet: only the question.
    await chat.command("start")
    await chat.command("resume")
    assert [r.text for r in chat.turn.replies] == [t("zh", "prompts.region")]
    await chat.send(Incoming(text="上海"))
