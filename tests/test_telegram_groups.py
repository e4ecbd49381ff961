"""The bot in group chats, end to end: group updates shaped as Telegram sends them (a supergroup and a
basic group, commands with and without @, replies, anonymous administrators, members joining), through
`run_serve` and the real python-telegram-bot stack against the fake Bot API, with a real Redis.

"Ignored" is checked in order: after the updates that must be ignored, one addressed to the bot is
sent; a chat's updates are handled in order, so once its answer is there the earlier ones were handled
too, and the answer must be the only message the bot sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.notices.subscriptions import Subscriptions
from bot.store import RedisSessionStore
from conversations.texts import t
from tests import fake_telegram as ft
from tests.test_telegram import _restore_logging, base_env, serving, webhook_env  # noqa: F401

GROUP, BASIC_GROUP = -1001234567, -4242
ANN, BOB, OWNER = 5101, 5102, 5103
ME = "yibao_test_bot"


@pytest.fixture
async def fake() -> AsyncIterator[ft.FakeTelegram]:
    async with ft.FakeTelegram(bot_username=ME) as server:
        yield server


@pytest.fixture(params=["polling", "webhook"])
async def served(request, fake: ft.FakeTelegram, redis_url: str, redis) -> AsyncIterator:
    env = base_env(fake, redis_url)
    async with serving(fake, webhook_env(env) if request.param == "webhook" else env) as bot:
        yield bot


@pytest.fixture
def subs(redis) -> Subscriptions:
    return Subscriptions(redis, RedisSessionStore(redis))


class Member:
    """One person writing in a group; `says` waits for the bot's answer to the last thing said."""

    def __init__(self, fake: ft.FakeTelegram, group: int, user: int, name: str):
        self.fake, self.group, self.user, self.name = fake, group, user, name

    async def send(self, text: str, **kw) -> None:
        status = await self.fake.send_text(self.group, self.user, text, self.name, **kw)
        assert status in (None, 200), status

    async def says(self, text: str, replies: int = 1, **kw) -> list[str]:
        mark = self.fake.mark()
        await self.send(text, **kw)
        calls = await self.fake.wait_for(lambda c: c.method == "sendMessage" and c.ok, replies, 8,
                                         chat_id=self.group, since=mark)
        return [ft.render_text(c.params["text"], c.params.get("parse_mode")) for c in calls]

    async def press(self, data: str) -> list[str]:
        mark = self.fake.mark()
        await self.fake.press_button(self.group, self.user, None, data, check=False)
        calls = await self.fake.wait_for(lambda c: c.method == "sendMessage" and c.ok, 1, 8,
                                         chat_id=self.group, since=mark)
        return [c.params["text"] for c in calls]

    def bot_said_since(self, mark: int) -> list[str]:
        return [c.params["text"] for c in self.fake.calls[mark:]
                if c.method == "sendMessage" and c.ok and str(c.chat_id) == str(self.group)]


@pytest.mark.parametrize("group", [GROUP, BASIC_GROUP])
async def test_in_a_group_only_what_is_meant_for_the_bot_is_answered(
        fake: ft.FakeTelegram, served, group: int) -> None:
    ann = Member(fake, group, ANN, "Ann")
    mark = fake.mark()
    await ann.send("/start@some_other_bot")  # another bot's command
    await ann.send("/help@Some_Other_Bot extra words")
    await ann.send("hello everyone, anyone been to 北京 hospitals?")  # chatter
    await ann.send("北京")  # an answer-looking message that is not a reply to the bot
    await fake.push_update({"message": {  # a member joins: a service message
        "message_id": 900, "date": 0, "chat": fake._chat(group), "from": fake._user(BOB),
        "new_chat_members": [fake._user(BOB)]}})
    welcome = await ann.says(f"/start@{ME.upper()}")  # ours, whatever the case of the name
    assert welcome[0].startswith(t("zh", "welcome"))
    assert len(ann.bot_said_since(mark)) == 1
    asked = fake.last_update["message"]["message_id"]  # the answer quotes what it answers
    assert fake.last_bot_message(group)["reply_to_message"]["message_id"] == asked

    # a plain command (Telegram delivered it to us) and a reply to the bot's question are answered
    question = fake.last_bot_message(group)["message_id"]
    [answer] = await ann.says("北京", reply_to=question)
    assert t("zh", "prompts.region") not in answer  # the region was taken: the next question
    [helped] = await ann.says("/help")
    assert helped.startswith(t("zh", "commands.help").split("\n")[0])

    # a reply to someone else's message is chatter
    mark = fake.mark()
    await Member(fake, group, BOB, "Bob").send("anyone been to 上海?")
    await ann.send("me too", reply_to=fake.last_update["message"]["message_id"])
    await ann.says(f"/help@{ME}")
    assert len(ann.bot_said_since(mark)) == 1


async def test_in_a_private_chat_answers_quote_nothing(fake: ft.FakeTelegram, served) -> None:
    me = Member(fake, 5200, 5200, "Zoe")
    await me.says("/start")
    assert "reply_to_message" not in fake.last_bot_message(5200)


async def test_a_groups_subscriptions_are_changed_by_its_administrators_only(
        fake: ft.FakeTelegram, served, subs) -> None:
    fake.chat_members[GROUP] = {OWNER: "creator", BOB: "administrator", ANN: "member"}
    ann, bob, owner = (Member(fake, GROUP, u, n) for u, n in ((ANN, "Ann"), (BOB, "Bob"), (OWNER, "Olga")))
    refused = t("zh", "notices.group_admins_only")

    assert await ann.says(f"/subscribe@{ME} 上海") == [refused]
    assert await ann.says("/subscribe") == [refused]  # not even the chooser
    assert await subs.regions_of(str(GROUP)) == []
    assert await bob.says(f"/subscribe@{ME} 上海") == [t("zh", "notices.subscribed", region="上海")]
    assert await owner.says("/subscribe 北京") == [t("zh", "notices.subscribed", region="北京")]
    assert sorted(await subs.regions_of(str(GROUP))) == ["beijing", "shanghai"]
    assert await subs.regions_of(str(ANN)) == []  # the group subscribed, not the person

    # anyone may see them; a member's press of an unsubscribe button changes nothing
    [listed] = await ann.says("/subscriptions")
    assert "上海" in listed and "北京" in listed
    [chooser] = await bob.says("/unsubscribe")  # an administrator's chooser; Ann presses its button
    assert chooser == t("zh", "notices.unsubscribe_choose")
    assert await ann.press("unsub:shanghai") == [refused]
    assert await ann.says(f"/unsubscribe@{ME} 上海") == [refused]
    assert sorted(await subs.regions_of(str(GROUP))) == ["beijing", "shanghai"]

    # an anonymous administrator writes as the group itself
    assert await ann.says("/unsubscribe 上海", anonymous_admin=True) == [
        t("zh", "notices.unsubscribed", region="上海")]
    # an administrator's button press
    fake.chat_members[GROUP][ANN] = "administrator"
    await ann.says("/unsubscribe")
    assert await ann.press("unsub:beijing") == [t("zh", "notices.unsubscribed", region="北京")]
    assert await subs.regions_of(str(GROUP)) == []
    assert len(fake.calls_of("getChatMember")) >= 5
