"""The WeChat Official Account channel (bot/channels/wechat.py) driven by a fake WeChat server that signs,
encrypts and retries as WeChat does (tests/fake_wechat.py), against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import asynccontextmanager
from types import SimpleNamespace

import aiohttp
import fake_wechat as fw
import pytest
from aiohttp.test_utils import TestServer

from bot.channels.wechat import PLATFORM, add_wechat
from bot.channels.wechat_protocol import Refused, WeChatCipher, sign
from bot.channels.wechat_text import CONTENT_BYTES, paginate, render
from bot.config import Settings
from bot.http_app import build_app
from bot.metrics import Metrics
from bot.runtime import open_runtime
from conversations.replies import Button, Reply, Turn
from conversations.store import SessionKey

TOKEN = "yibaoTestToken42"
APP_ID = "wx0123456789abcdef"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"  # 43 characters, as the settings page makes them
PERSON = "oTestPerson_0123456789abcdefgh"
REDIS_MODES = ("single", "cluster")  # every test here runs on one redis-server and on a Redis Cluster
_CLUSTER = {"on": False}


@pytest.fixture(autouse=True)
def _redis_mode_for_wechat(redis_cluster: bool):
    """wechat() builds its Runtime from a URL; tell it whether that URL is a cluster node."""
    _CLUSTER["on"] = redis_cluster


@asynccontextmanager
async def wechat(redis_url: str, *, safe: bool, timeout: float = 5.0, **settings):
    """Our application with the WeChat route, and a fake WeChat in front of it."""
    values = {"wechat_app_id": APP_ID, "wechat_aes_key": AES_KEY} if safe else {}
    values.update(throttle_rate=1000.0, throttle_burst=1000, redis_cluster=_CLUSTER["on"])
    values.update(settings)
    async with open_runtime(Settings(redis_url=redis_url, wechat_token=TOKEN, **values)) as runtime:
        metrics = Metrics()
        app = build_app(runtime, metrics)
        channel = add_wechat(app)
        server = TestServer(app)
        await server.start_server(access_log=None)  # as run_site serves it: no access log (URLs carry openids)
        try:
            url = str(server.make_url("/wechat"))
            async with fw.FakeWeChat(url, TOKEN, aes_key=AES_KEY if safe else None, app_id=APP_ID,
                                     timeout=timeout) as fake:
                yield SimpleNamespace(fake=fake, runtime=runtime, channel=channel, metrics=metrics, url=url)
        finally:
            await server.close()


@pytest.fixture(params=["plain", "safe"])
async def wx(request, redis, redis_url):  # `redis` empties the database first
    async with wechat(redis_url, safe=request.param == "safe") as env:
        yield env


async def version(env) -> int:
    return (await env.runtime.store.load(SessionKey(PLATFORM, PERSON, PERSON)))[1]


# -- the cipher ------------------------------------------------------------------------------------

SAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # the specification's sample (WXBizMsgCrypt)
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrX"
    "pbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGz"
    "jlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBY"
    "YI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)


def test_the_specification_sample_decrypts_and_its_signature_matches():
    xml = WeChatCipher(SAMPLE_KEY, "wx2c2769f8efd9abc2").decrypt(SAMPLE_ENCRYPT)
    assert fw.fields(xml) == {
        "ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs", "CreateTime": "1409735668",
        "MsgType": "text", "Content": "abcdteT", "MsgId": "6054768590064713728",
    }
    assert sign("spamtest", "1409735669", "1320562132", SAMPLE_ENCRYPT) == "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    with pytest.raises(Refused) as bad:
        WeChatCipher(SAMPLE_KEY, "wx0000000000000000").decrypt(SAMPLE_ENCRYPT)
    assert bad.value.status == 403


def test_cipher_and_the_fakes_independent_one_agree_at_every_padding_length():
    ours = WeChatCipher(AES_KEY, APP_ID)
    for size in range(0, 100):  # the padding runs 1..32: every remainder of the 32-byte block, twice
        xml = ("<xml>" + "医" * (size // 3) + "x" * (size % 3) + "</xml>").encode()
        assert fw.decrypt(AES_KEY, APP_ID, ours.encrypt(xml)) == xml
        assert ours.decrypt(fw.encrypt(AES_KEY, APP_ID, xml)) == xml


@pytest.mark.parametrize("encrypted", ["not base64!", "", "QUJD", fw.encrypt(SAMPLE_KEY, APP_ID, b"<xml/>")])
def test_cipher_refuses_what_was_not_made_with_our_key(encrypted):
    with pytest.raises(Refused) as bad:
        WeChatCipher(AES_KEY, APP_ID).decrypt(encrypted)
    assert bad.value.status == 400


# -- the whole conversation ------------------------------------------------------------------------


async def test_signed_get_is_echoed(wx):
    assert await wx.fake.verify("hello-123") == (200, "hello-123")


async def test_a_whole_estimate(wx):
    answer = await wx.fake.text(PERSON, "开始")
    assert answer.status == 200 and answer.attempts == 1
    assert "你在哪个地区参保？" in answer.content
    assert "回复 1 北京 · 2 天津" in answer.content and "9 上海" in answer.content  # provinces, by code
    answer = await wx.fake.text(PERSON, "9")  # the number of an option: 上海, a province of one region
    assert answer.content.startswith("→ 上海")
    assert "回复 1 在职 · 2 退休" in answer.content
    for text in ("退休", "住院", "三级", "2005", "30000"):  # an option's words, then typed answers
        answer = await wx.fake.text(PERSON, text)
    assert "回复 返回 · 跳过" in answer.content  # a question taking an amount offers words, not numbers
    answer = await wx.fake.text(PERSON, "跳过")
    answer = await wx.fake.text(PERSON, "全部跳过")
    assert "【请确认你的信息】" in answer.content and "• 总费用: 30,000.00 元" in answer.content
    assert "9 开始计算" in answer.content
    answer = await wx.fake.text(PERSON, "9")
    card = answer.content
    assert "【估算结果】" in card
    assert "个人支付：3,504.00 元" in card and "医保支付：26,496.00 元" in card
    assert "依据：" in card and "政策 2024-07-01 起" in card  # what the figures rest on stays on the card
    assert "1. 合规费用" not in card and "回复「详情」查看计算过程" in card
    details = await wx.fake.text(PERSON, "详情")
    assert details.content.startswith("医保支付构成") and "对比其他医院等级" in details.content
    assert "计算过程" in details.content and "来源" in details.content
    assert "回复 1 新的估算 · 2 修改一项" in details.content
    assert (await wx.fake.text(PERSON, "详情")).content == details.content  # one page: shown again
    again = await wx.fake.text(PERSON, "1")
    assert "你在哪个地区参保？" in again.content
    metrics = wx.metrics.render()
    assert "yibao_estimates_total 1" in metrics and "yibao_errors_total 0" in metrics


async def test_a_number_answers_an_amount_not_an_option(wx):
    for text in ("开始", "上海", "在职", "门诊", "三级"):
        answer = await wx.fake.text(PERSON, text)
    assert "你今年多少岁" in answer.content and answer.content.endswith("回复 返回")
    answer = await wx.fake.text(PERSON, "1")  # an age of 1, not the first (and only) control
    assert "总费用" in answer.content
    answer = await wx.fake.text(PERSON, "1")  # an amount of 1 yuan
    assert "自费" in answer.content


async def test_english_numbered_options(wx):
    await wx.fake.text(PERSON, "开始")
    answer = await wx.fake.text(PERSON, "/language en")
    assert "Reply 1 Beijing" in answer.content


# -- retries ----------------------------------------------------------------------------------------


async def test_a_replayed_msgid_gets_the_same_answer_without_a_second_turn(wx):
    await wx.fake.text(PERSON, "开始")
    first = await wx.fake.text(PERSON, "6")
    before = await version(wx)
    again = await wx.fake.replay(first)
    assert again.content == first.content
    assert await version(wx) == before
    later = await wx.fake.replay(first)  # later still, after another message
    await wx.fake.text(PERSON, "退休")
    assert (await wx.fake.replay(first)).content == later.content == first.content


async def test_an_answer_lost_on_the_way_is_sent_again_and_the_turn_runs_once(wx):
    await wx.fake.text(PERSON, "开始")
    before = await version(wx)
    answer = await wx.fake.text(PERSON, "上海", lose_answers=1)
    assert answer.attempts == 2 and answer.content.startswith("→ 上海")
    assert await version(wx) == before + 1


async def test_a_retry_arriving_while_the_first_is_in_hand_waits_for_its_answer(redis, redis_url):
    async with wechat(redis_url, safe=True, timeout=1.5) as env:
        await env.fake.text(PERSON, "开始")
        before = await version(env)
        gate = asyncio.Event()
        turns = []
        handle = env.runtime.dialogue.handle

        async def slow(key, incoming):  # the real dialogue, held until the fake has given up once
            turns.append(incoming)
            await gate.wait()
            return await handle(key, incoming)

        env.runtime.dialogue.handle = slow

        sent_before = len(env.fake.requests)  # "开始" itself may have needed a retry on a busy machine

        async def release_once_retried() -> None:  # the fake gave up on the first attempt and sent it again
            while not any(status is None for _, status in env.fake.requests[sent_before:]):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            gate.set()

        releasing = asyncio.create_task(release_once_retried())
        answer = await env.fake.text(PERSON, "上海")
        await releasing
        assert answer.attempts == 2 and answer.content.startswith("→ 上海")
        assert env.fake.requests[-2:] == [(answer.message["MsgId"], None), (answer.message["MsgId"], 200)]
        assert len(turns) == 1 and await version(env) == before + 1


async def test_a_retry_still_unanswered_after_the_wait_is_told_to_send_again(redis, redis_url):
    async with wechat(redis_url, safe=False, timeout=1.0) as env:
        env.channel.wait = 0.3
        await env.fake.text(PERSON, "开始")
        gate = asyncio.Event()
        handle = env.runtime.dialogue.handle

        async def stuck(key, incoming):
            await gate.wait()
            return await handle(key, incoming)

        env.runtime.dialogue.handle = stuck
        answer = await env.fake.text(PERSON, "上海")
        assert answer.content == "上一条消息还在处理，请稍等几秒再发一次。"
        gate.set()


# -- events and other messages ------------------------------------------------------------------------


async def test_subscribe_greets_once_and_unsubscribe_deletes_everything(wx, redis):
    greeting = await wx.fake.event(PERSON, "subscribe")
    assert greeting.content.startswith("你好！") and "你在哪个地区参保？" in greeting.content
    assert (await wx.fake.replay(greeting)).content == greeting.content
    await wx.fake.text(PERSON, "上海")
    assert [k async for k in redis.scan_iter(match=f"*{PERSON}*")]
    gone = await wx.fake.event(PERSON, "unsubscribe")
    assert gone.status == 200 and gone.content == ""
    assert [k async for k in redis.scan_iter(match=f"*{PERSON}*")] == []


async def test_forget_deletes_the_conversation_and_the_channels_state(wx, redis):
    await wx.fake.text(PERSON, "开始")
    await wx.fake.text(PERSON, "上海")
    ask = await wx.fake.text(PERSON, "/forget")
    assert "回复 1 确认删除 · 2 不删除" in ask.content
    done = await wx.fake.text(PERSON, "1")
    assert "已删除" in done.content
    keys = [k async for k in redis.scan_iter(match=f"*{PERSON}*")]
    assert len(keys) == 1 and await redis.ttl(keys[0]) <= 60  # only the answer kept for WeChat's retries
    assert (await wx.fake.replay(done)).content == done.content


async def test_other_message_types_get_a_hint_and_the_question_again(wx):
    await wx.fake.text(PERSON, "开始")
    answer = await wx.fake.other(PERSON, "image")
    assert answer.content.startswith("我只能读懂文字") and "你在哪个地区参保？" in answer.content
    assert (await wx.fake.event(PERSON, "CLICK")).content == ""


# -- what is refused ---------------------------------------------------------------------------------


async def post(env, query: dict, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(env.url, params=query, data=body) as response:
        return response.status, await response.text()


def text_message(content: str = "你好", **extra: str) -> bytes:
    return fw.message_xml({"ToUserName": fw.ACCOUNT, "FromUserName": PERSON, "CreateTime": str(int(time.time())),
                           "MsgType": "text", "Content": content, "MsgId": "1234567890123456", **extra})


async def test_wrong_signatures_and_old_timestamps_get_403(wx):
    query = wx.fake.signed_query()
    assert (await post(wx, {**query, "signature": "0" * 40}, text_message()))[0] == 403
    assert (await post(wx, wx.fake.signed_query(timestamp=int(time.time()) - 301), text_message()))[0] == 403
    async with aiohttp.ClientSession() as http:
        async with http.get(wx.url, params={**query, "echostr": "x", "signature": "1" * 40}) as response:
            assert response.status == 403
        old = wx.fake.signed_query(timestamp=int(time.time()) - 600, echostr="x")
        async with http.get(wx.url, params=old) as response:
            assert response.status == 403


async def test_safe_mode_checks_msg_signature_and_the_appid(redis, redis_url):
    async with wechat(redis_url, safe=True) as env:
        encrypted = fw.encrypt(AES_KEY, APP_ID, text_message())
        body = fw.message_xml({"ToUserName": fw.ACCOUNT, "Encrypt": encrypted})
        query = env.fake.signed_query(encrypt_type="aes")
        good = sign(TOKEN, query["timestamp"], query["nonce"], encrypted)
        assert (await post(env, {**query, "msg_signature": "f" * 40}, body))[0] == 403
        other_app = fw.encrypt(AES_KEY, "wxSomebodyElse0000", text_message())
        other = {**query, "msg_signature": sign(TOKEN, query["timestamp"], query["nonce"], other_app)}
        assert (await post(env, other, fw.message_xml({"ToUserName": fw.ACCOUNT, "Encrypt": other_app})))[0] == 403
        status, text = await post(env, {**query, "msg_signature": good}, body)
        assert status == 200 and "<Encrypt>" in text and "你好" not in text


@pytest.mark.parametrize("body", [
    b"",
    b"not xml at all",
    b"<xml><Content>unclosed</xml>",
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
    b"<xml><Content>&b;&b;&b;</Content></xml>",
    b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Content>&x;</Content></xml>',
    b"<other><FromUserName>x</FromUserName></other>",
    b"<xml><MsgType>text</MsgType><Content>no sender</Content></xml>",
    b"<xml><FromUserName>../../etc</FromUserName><ToUserName>gh</ToUserName></xml>",
    b"\xff\xfe<\x00x\x00",
])
async def test_malformed_bodies_get_400_never_500(wx, body):
    if wx.fake.aes_key:  # in safe mode the same garbage arrives encrypted and properly signed
        encrypted = fw.encrypt(AES_KEY, APP_ID, body)
        query = wx.fake.signed_query(encrypt_type="aes")
        query["msg_signature"] = sign(TOKEN, query["timestamp"], query["nonce"], encrypted)
        body = fw.message_xml({"ToUserName": fw.ACCOUNT, "Encrypt": encrypted})
    else:
        query = wx.fake.signed_query()
    status, _ = await post(wx, query, body)
    assert status == 400


async def test_a_body_too_large_gets_413_and_safe_mode_messages_need_the_key(redis, redis_url):
    async with wechat(redis_url, safe=False) as env:
        assert (await post(env, env.fake.signed_query(), b"<xml>" + b"x" * 70_000 + b"</xml>"))[0] == 413
        query = env.fake.signed_query(encrypt_type="aes")
        assert (await post(env, {**query, "msg_signature": "0" * 40}, text_message()))[0] == 400


async def test_redis_failure_gets_an_apology_not_a_500(wx):
    await wx.fake.text(PERSON, "开始")
    original = wx.runtime.dialogue.handle

    async def broken(key, incoming):
        raise ConnectionError("redis went away")

    wx.runtime.dialogue.handle = broken
    answer = await wx.fake.text(PERSON, "上海")
    assert answer.status == 200 and answer.content.startswith("抱歉，出了点问题")
    wx.runtime.dialogue.handle = original
    assert (await wx.fake.replay(answer)).content.startswith("→ 上海")  # not cached: a resend is handled


async def test_logs_carry_no_openids_and_no_message_texts(wx, caplog):
    caplog.set_level(logging.DEBUG)
    for text in ("开始", "上海", "退休", "/forget", "1"):
        await wx.fake.text(PERSON, text)
    await wx.fake.event(PERSON, "unsubscribe")
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert PERSON not in logged and "上海" not in logged and "退休" not in logged


# -- the reply size limit --------------------------------------------------------------------------


def test_long_replies_are_paged_within_the_limit():
    lines = [f"第 {i} 行：" + "医保报销比例说明" * 12 for i in range(60)]
    buttons = tuple((Button(f"3|opt{i}", f"选项{i}"),) for i in range(12))
    shown = render(Turn([Reply("\n".join(lines), title="政策", buttons=buttons)], lang="zh"))
    pages = [shown.text, *shown.pages]
    assert len(pages) > 3
    assert all(len(p.encode()) <= CONTENT_BYTES for p in pages)
    assert "回复「详情」继续阅读" in shown.text and "回复 1 选项0" in shown.text
    assert all(line in "\n".join(pages) for line in lines)
    assert all(len(p.encode()) <= 100 for p in paginate("一" * 1000, 100))


async def test_no_answer_speaks_of_buttons(wx):
    said = []
    for text in ("开始", "上海", "退休", "住院", "三级", "2005", "30000", "跳过", "全部跳过", "?", "改地区", "上海",
                 "9", "详情", "/help", "好", "/language en", "nonsense", "/help"):
        said.append((await wx.fake.text(PERSON, text)).content)
    said.append((await wx.fake.other(PERSON, "location")).content)
    joined = "\n".join(said)
    assert "按钮" not in joined and "点「" not in joined and "utton" not in joined and "Tap" not in joined
    assert "回复序号修改某一项" in joined and "回复选项前的序号，或直接输入文字" in joined


async def test_voice_with_recognition_reads_as_text(wx):
    await wx.fake.text(PERSON, "开始")
    heard = await wx.fake.send(PERSON, {"MsgType": "voice", "MediaId": "m", "Format": "amr", "Recognition": "上海",
                                        "MsgId": "987654321"})
    assert heard.content.startswith("→ 上海")
    unheard = await wx.fake.send(PERSON, {"MsgType": "voice", "MediaId": "m", "Format": "amr", "MsgId": "987654322"})
    assert unheard.content.startswith("我只能读懂文字")


async def test_a_flood_gets_one_notice_then_nothing(redis, redis_url):
    async with wechat(redis_url, safe=False, throttle_rate=0.01, throttle_burst=2) as env:
        answers = [(await env.fake.text(PERSON, text)).content for text in ("开始", "上海", "退休", "住院")]
    assert "你在哪个地区参保？" in answers[0] and answers[1].startswith("→ 上海")
    assert answers[2:] == ["你发得有点快，请稍等几秒再继续。", ""]


FUZZ_PIECES = ["<xml>", "</xml>", "<MsgType>text</MsgType>", "<MsgType>event</MsgType>", "<Event>subscribe</Event>",
               "<Content>", "</Content>", "<![CDATA[", "]]>", "<MsgId>7</MsgId>", "<MsgId>x</MsgId>", "&amp;", "&#0;",
               "&#xD800;", "\x00", "1", "上海", "详情", "<a><b>", "</b>", "<?xml version='1.0' encoding='gbk'?>",
               "<!DOCTYPE x>", "<Content/>", "<Recognition>上海</Recognition>", "<MsgType>voice</MsgType>"]


async def test_fuzzed_signed_bodies_never_get_a_5xx_nor_an_error(wx):
    rnd = random.Random(17)
    statuses: dict[int, int] = {}
    for i in range(300):
        inner = "".join(rnd.choice(FUZZ_PIECES) for _ in range(rnd.randint(0, 8)))
        if rnd.random() < 0.6:  # a well-formed envelope around fuzzed fields, to reach the dialogue
            inner = (f"<xml><ToUserName>gh_a</ToUserName><FromUserName>oFuzz{rnd.randint(1, 3)}</FromUserName>"
                     f"<MsgType>{rnd.choice(['text', 'event', 'image', 'voice', ''])}</MsgType>"
                     f"<MsgId>{rnd.choice(['1', str(i), '', 'x'])}</MsgId>"
                     f"<Event>{rnd.choice(['subscribe', 'x'])}</Event>"
                     f"<Content>{rnd.choice(['1', '9', '上海', '详情', '/forget', '30000', 'x' * 3000, '&#0;'])}"
                     "</Content>"
                     + "".join(rnd.choice(FUZZ_PIECES[2:]) for _ in range(rnd.randint(0, 2))) + "</xml>")
        body = inner.encode("utf-8", "surrogatepass")
        if wx.fake.aes_key:
            encrypted = fw.encrypt(AES_KEY, APP_ID, body)
            query = wx.fake.signed_query(encrypt_type="aes")
            query["msg_signature"] = sign(TOKEN, query["timestamp"], query["nonce"], encrypted)
            body = fw.message_xml({"ToUserName": fw.ACCOUNT, "Encrypt": encrypted})
        else:
            query = wx.fake.signed_query()
        status, _ = await post(wx, query, body)
        statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {200, 400} and statuses.get(200, 0) > 50, statuses
    assert "yibao_errors_total 0" in wx.metrics.render()


def test_options_come_from_the_message_looked_at_and_lose_their_pictographs():
    earlier = Reply("答案", buttons=((Button("4|~new", "🆕 新的估算"), Button("4|~ask", "❓ 再问一个")),))
    amount = Reply("这次的总费用是多少元？", buttons=((Button("5|~back", "⬅ 返回"), Button("5|~skip", "跳过")),))
    shown = render(Turn([earlier, amount], lang="zh"))
    assert shown.text.endswith("回复 返回 · 跳过") and shown.options == [["5|~back", "返回"], ["5|~skip", "跳过"]]
    card = render(Turn([Reply("结果", buttons=((Button("6|~account", "💳 个人账户能付多少？"),),))], lang="zh"))
    assert card.text.endswith("回复 1 个人账户能付多少？")


async def test_a_body_sent_in_pieces_without_a_length_is_read_whole(wx):
    await wx.fake.text(PERSON, "开始")
    body = text_message("上海" + " " * 20_000)  # a long message, well past one TCP segment

    async def pieces():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]
            await asyncio.sleep(0.001)

    if wx.fake.aes_key:
        encrypted = fw.encrypt(AES_KEY, APP_ID, body)
        query = wx.fake.signed_query(encrypt_type="aes")
        query["msg_signature"] = sign(TOKEN, query["timestamp"], query["nonce"], encrypted)
        body = fw.message_xml({"ToUserName": fw.ACCOUNT, "Encrypt": encrypted})
    else:
        query = wx.fake.signed_query()
    async with aiohttp.ClientSession() as http, http.post(wx.url, params=query, data=pieces()) as response:
        assert response.status == 200
    chunked = b"<xml>" + b"x" * 200_000 + b"</xml>"

    async def big():
        for i in range(0, len(chunked), 10_000):
            yield chunked[i:i + 10_000]

    async with aiohttp.ClientSession() as http, http.post(wx.url, params=query, data=big()) as response:
        assert response.status == 413
