"""A person's year over Telegram: the real python-telegram-bot stack against the fake Bot API."""

from __future__ import annotations

import fake_telegram as ft
import pytest
import test_telegram as tg

from conversations.texts import t

# the Telegram suite's fixtures: the fake Bot API, the settings, the served bot, its logging
fake, env, mode, bot, _restore_logging = tg.fake, tg.env, tg.mode, tg.bot, tg._restore_logging


@pytest.mark.parametrize("mode", ["polling"])
async def test_record_year_and_forget_over_telegram(fake: ft.FakeTelegram, bot, redis) -> None:
    chat = tg.Chat(fake, 5101)
    await tg.full_estimate_by_buttons(chat)
    [consent] = await chat.press(t("zh", "year.buttons.record"))
    assert "记入本年度后，我会保存" in consent
    [recorded] = await chat.press(t("zh", "year.buttons.consent"))
    assert "已记入" in recorded and "本年度" in recorded
    [overview] = await chat.say("/year")
    assert "我的年度" in overview and "住院 · 三级医院 · 总费用 30,000.00 元" in overview
    assert [k async for k in redis.scan_iter(match=f"yibao:{{telegram:{chat.id}}}:year")]
    # a returning person: visit type, hospital, amount
    welcome, question = await chat.say("/start", replies=2)
    assert "欢迎回来" in welcome and question == t("zh", "prompts.visit")
    await chat.press("住院")
    await chat.press("三级医院")
    [result] = await chat.say("20000")
    assert "本年度" in result and "已记 1 次住院" in result
    await chat.say("/forget")
    await chat.press(t("zh", "buttons.forget_yes"))
    assert [k async for k in redis.scan_iter(match=f"yibao:{{telegram:{chat.id}}}*")] == []
