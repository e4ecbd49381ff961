"""The WeChat Official Account (公众号) channel: WeChat POSTs each message to WECHAT_PATH as XML and takes
our answer from the response (a "passive reply"), so a turn is one request. The protocol (signatures,
safe-mode cipher, XML) is in `wechat_protocol`, how replies read without buttons in `wechat_text`.

WeChat gives up on a reply after 5 s and sends the message again, three times in all. Every message is
claimed once by its MsgId (FromUserName + CreateTime for events) in the person's channel hash; a
retry waits for the first delivery's answer and gets the very same text, so no turn runs twice.

Redis, one hash per person in the person's slot: ``yibao:{wechat:<openid>}:wechat`` — ``m:<id>`` (a
claim ``~<ms>:<token>``, or ``=`` + the answer sent), ``order`` (the last ids, oldest dropped), ``o``
(the options shown last), ``p`` (pages waiting behind 详情). /forget and 取消关注 delete it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, field, replace

from aiohttp import web

from bot import logs
from bot.channels.wechat_protocol import (
    DIGITS,
    Refused,
    WeChatCipher,
    check_signature,
    parse_xml,
    sealed_xml,
    text_xml,
)
from bot.channels.wechat_text import DETAILS, TEXTS, Shown, language, match_option, next_page, render
from bot.http_app import METRICS, RUNTIME
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.throttle import Throttle, Verdict
from conversations.replies import Incoming
from conversations.store import SessionKey
from conversations.texts import t

log = logging.getLogger(__name__)

PLATFORM = "wechat"
MAX_BODY = 64 * 1024
MAX_TEXT = 2000  # characters of a message passed on (the dialogue answers longer ones with a hint)
WAIT = 4.5  # seconds a retry waits for the first delivery's answer (WeChat waits 5)
STALE_MS = 10_000  # a claim this old lost its owner: a retry may take the message over
FORGOTTEN_TTL = 60  # seconds the answer to /forget is kept for a retry (it holds nothing personal)
KEEP = 16  # answers kept per person for retries (the hash expires with the session)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# -- the channel's own state (claims, answers, options, pages) -------------------------------------

# KEYS[1] the person's channel hash; ARGV[1] field m:<id>, ARGV[2] token, ARGV[3] stale ms, ARGV[4] ttl.
# Returns {1 (claimed) or 0, the field's value, o, p}.
_CLAIM_LUA = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local claim = '~' .. ms .. ':' .. ARGV[2]
local mine = 0
if not cur then
  mine = 1
elseif string.sub(cur, 1, 1) == '~' then
  local at = tonumber(string.match(cur, '^~(%d+):'))
  if at == nil or ms - at > tonumber(ARGV[3]) then mine = 1 end
end
if mine == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], claim)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  cur = claim
end
local state = redis.call('HMGET', KEYS[1], 'o', 'p')
return {mine, cur, state[1] or '', state[2] or ''}
"""

# KEYS[1] hash; ARGV[1] field, ARGV[2] answer, ARGV[3] ttl, ARGV[4] keep, ARGV[5] o, ARGV[6] p ('' deletes).
_FINISH_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], '=' .. ARGV[2])
local order = cjson.decode(redis.call('HGET', KEYS[1], 'order') or '[]')
table.insert(order, ARGV[1])
while #order > tonumber(ARGV[4]) do
  redis.call('HDEL', KEYS[1], table.remove(order, 1))
end
redis.call('HSET', KEYS[1], 'order', cjson.encode(order))
for i, name in ipairs({'o', 'p'}) do
  if ARGV[4 + i] == '' then redis.call('HDEL', KEYS[1], name) else redis.call('HSET', KEYS[1], name, ARGV[4 + i]) end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


@dataclass
class Claim:
    """A message claimed (or answered by another delivery), with what the last answer left shown."""

    mine: bool
    value: str
    last: Shown = field(default_factory=lambda: Shown(""))

    @classmethod
    def read(cls, mine: int, value: str | bytes, options: str | bytes, pages: str | bytes) -> Claim:
        """The claim script's answer."""
        value = value.decode() if isinstance(value, bytes) else value
        return cls(bool(mine), value, Shown.stored(options, pages))

    def unchanged(self, text: str) -> Shown:
        """An answer that leaves the options and pages as they were."""
        return replace(self.last, text=text)


class WeChatChannel:
    """The routes at WECHAT_PATH and one turn per message."""

    def __init__(self, runtime: Runtime, metrics: Metrics, *, wait: float = WAIT):
        settings = runtime.settings
        self.runtime = runtime
        self.metrics = metrics
        self.token = str(settings.wechat_token or "")
        self.cipher = (WeChatCipher(str(settings.wechat_aes_key), settings.wechat_app_id or "")
                       if settings.wechat_aes_key else None)
        self.wait = wait
        self.throttle = Throttle(runtime.redis, settings.throttle_rate, settings.throttle_burst)
        self._claim = runtime.redis.register_script(_CLAIM_LUA)
        self._finish = runtime.redis.register_script(_FINISH_LUA)

    def hash_key(self, openid: str) -> str:
        """The person's channel hash, in their session's slot."""
        return self.runtime.store.user_key(PLATFORM, openid, PLATFORM)

    # -- HTTP --------------------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        """GET: WeChat checks the server URL when the developer settings are saved."""
        try:
            check_signature(request.query, self.token)
        except Refused as bad:
            return web.Response(status=bad.status, text=bad.reason)
        return web.Response(text=request.query.get("echostr", "")[:256])

    async def receive(self, request: web.Request) -> web.Response:
        """POST: one message, answered in the response (encrypted when it came encrypted)."""
        started = time.perf_counter()
        try:
            message, safe = await self._message(request)
            openid, account = message.get("FromUserName", ""), message.get("ToUserName", "")
            if not _ID.match(openid) or not _ID.match(account):
                raise Refused(400, "FromUserName and ToUserName expected")
        except Refused as bad:
            return web.Response(status=bad.status, text=bad.reason)
        self.metrics.inc("yibao_updates_total")
        try:  # a dropped connection (WeChat gave up) must not cut a turn in half: the retry gets its answer
            answer = await asyncio.shield(asyncio.ensure_future(self.answer(openid, message)))
        finally:
            self.metrics.observe(time.perf_counter() - started)
        if not answer:
            return web.Response(text="success")
        xml = text_xml(openid, account, answer)
        if safe and self.cipher is not None:
            xml = sealed_xml(self.cipher, self.token, xml)
        return web.Response(text=xml, content_type="application/xml")

    async def _message(self, request: web.Request) -> tuple[dict[str, str], bool]:
        """The message's fields, signature checked (and decrypted in safe mode), and whether it was safe."""
        outer = parse_xml(await self._body(request))
        if request.query.get("encrypt_type", "raw").lower() != "aes":
            check_signature(request.query, self.token)
            return outer, False
        if self.cipher is None:
            raise Refused(400, "safe mode message, but WECHAT_AES_KEY is not set")
        check_signature(request.query, self.token, outer.get("Encrypt", ""), name="msg_signature")
        return parse_xml(self.cipher.decrypt(outer.get("Encrypt", ""))), True

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise Refused(413, f"body larger than {MAX_BODY} bytes")
        try:  # the whole body: read(n) would stop at the first chunk that arrived
            body = await request.read()  # at most the app's client_max_size
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"body larger than {MAX_BODY} bytes") from None
        if len(body) > MAX_BODY:
            raise Refused(413, f"body larger than {MAX_BODY} bytes")
        return body

    # -- one message, once --------------------------------------------------------------------------

    async def answer(self, openid: str, message: dict[str, str]) -> str:
        """The text for this message: the first delivery's, for a retry; '' for none."""
        kind = message.get("MsgType", "").lower()
        msg_id = message.get("MsgId", "")
        if not DIGITS.match(msg_id):
            msg_id = "e" + message.get("CreateTime", "")[:20] + ":" + message.get("Event", "")[:32]
        key = SessionKey(PLATFORM, openid, openid)
        extra = {"platform": PLATFORM, "chat": logs.hash_id(openid)}
        claim = None
        try:
            claim = await self._wait_for_claim(openid, f"m:{msg_id}")
            if claim is None:
                return TEXTS[await self._language(key)]["busy"]
            if not claim.mine:
                log.info("retry answered from the first delivery", extra={**extra, "event": "retry"})
                return claim.value[1:]
            if kind == "event" and message.get("Event", "").lower() == "unsubscribe":
                await self.forget(openid)  # no answer reaches a person who left; a retry deletes again
                return ""
            shown, forgot = await self._turn(key, kind, message, claim)
            if forgot:  # the dialogue deleted the sessions; this channel's hash and flood bucket go too
                await self._forget_channel(openid)
            ttl = FORGOTTEN_TTL if forgot else self.runtime.settings.session_ttl
            await self._finish(keys=[self.hash_key(openid)],
                               args=[f"m:{msg_id}", shown.text, ttl, KEEP, *shown.state()])
            return shown.text
        except Exception as exc:  # the person gets an apology, the log the failure (never the message)
            self.metrics.inc("yibao_errors_total")
            log.error("wechat message failed: %s (message not logged)", type(exc).__name__,
                      exc_info=True, extra={**extra, "event": "error"})
            if claim is not None and claim.mine:  # a resend of the message may run it again
                await self._release(openid, f"m:{msg_id}")
            return t(await self._language(key), "errors.apology")

    async def _wait_for_claim(self, openid: str, name: str) -> Claim | None:
        """Claim the message, or wait for the delivery that claimed it (None: still busy after WAIT)."""
        deadline = time.monotonic() + self.wait
        token = secrets.token_hex(6)
        while True:
            claim = Claim.read(*await self._claim(
                keys=[self.hash_key(openid)], args=[name, token, STALE_MS, self.runtime.settings.session_ttl]))
            if claim.mine or not claim.value.startswith("~"):
                return claim
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def _release(self, openid: str, name: str) -> None:
        try:
            await self.runtime.redis.hdel(self.hash_key(openid), name)
        except Exception:  # Redis may be what failed; the claim goes stale by itself
            log.debug("could not release a claim")

    async def _turn(self, key: SessionKey, kind: str, message: dict[str, str], claim: Claim) -> tuple[Shown, bool]:
        """Run the message through the dialogue (or show the next page); the answer and whether the
        person's data was deleted."""
        if kind == "event":
            if message.get("Event", "").lower() != "subscribe":  # menus, scans, locations: nothing to say
                return claim.unchanged(""), False
            incoming = Incoming(command="start")  # 关注: the greeting and the first question
        elif kind == "text" or (kind == "voice" and message.get("Recognition")):
            text = (message.get("Content") or message.get("Recognition") or "")[:MAX_TEXT]
            if text.strip().casefold() in DETAILS and claim.last.pages:
                return next_page(claim.last), False
            choice = match_option(text, claim.last.options)
            incoming = Incoming(choice=choice) if choice else Incoming(text=text)
        else:
            incoming = Incoming(text=None)  # a picture, a sticker, a location: a one-line hint
        verdict = await self.throttle.check(PLATFORM, key.user)
        if verdict is not Verdict.ALLOW:
            self.metrics.inc("yibao_throttled_total")
            text = t(claim.last.lang, "errors.throttled") if verdict is Verdict.NOTICE else ""
            return claim.unchanged(text), False
        turn = await self.runtime.dialogue.handle(key, incoming)
        if turn.kind == "estimate":
            self.metrics.inc("yibao_estimates_total")
        if turn.forgot:
            log.info("wechat person forgotten", extra={"platform": PLATFORM, "chat": logs.hash_id(key.user),
                                                       "event": "forget"})
        return render(turn), turn.forgot

    async def _language(self, key: SessionKey) -> str:
        """The person's language (their session's), for a message of our own; never raises."""
        try:
            stored, _ = await self.runtime.store.load(key)
        except Exception:  # Redis may be what failed
            stored = None
        return language(stored.get("l") if isinstance(stored, dict) else None)

    async def _forget_channel(self, openid: str) -> None:
        """This channel's hash and the flood bucket (two hash tags: one DEL each, as a cluster needs)."""
        await self.runtime.redis.delete(self.hash_key(openid))
        await self.runtime.redis.delete(self.throttle.key(PLATFORM, openid))

    async def forget(self, openid: str) -> None:
        """/forget or 取消关注: the person's sessions, registered keys, this channel's hash and flood bucket."""
        key = SessionKey(PLATFORM, openid, openid)
        await self.runtime.store.delete_user(PLATFORM, openid)
        await self._forget_channel(openid)
        if "forget" in self.runtime.effects:
            await self.runtime.effects["forget"](key, "", "zh")


def add_wechat(app: web.Application) -> WeChatChannel:
    """GET and POST at WECHAT_PATH (uses app[RUNTIME] and app[METRICS])."""
    runtime: Runtime = app[RUNTIME]
    channel = WeChatChannel(runtime, app[METRICS])
    path = runtime.settings.wechat_path
    app.router.add_get(path, channel.verify)
    app.router.add_post(path, channel.receive)
    return channel
