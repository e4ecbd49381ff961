"""The WeChat Official Account (公众号) channel: WeChat POSTs each message to WECHAT_PATH as XML and takes
our answer from the response (a "passive reply"), so a turn is one request.

Protocol, as the Official Account message-encryption specification describes it:
- GET `?signature&timestamp&nonce&echostr`: sha1 of the sorted token, timestamp and nonce; echo `echostr`.
- POST plain mode: the same `signature`; the body is the message XML, the answer a text-message XML.
- POST safe mode (`encrypt_type=aes`): the body carries `<Encrypt>`, base64 of AES-256-CBC (key = the
  EncodingAESKey + "=" base64-decoded, IV = its first 16 bytes) over 16 random bytes, the XML's length
  (4 bytes, network order), the XML and the AppID, PKCS#7-padded to 32 bytes; `msg_signature` is sha1 of
  the sorted token, timestamp, nonce and ciphertext. The answer is encrypted and signed the same way.
A wrong signature or a timestamp more than 5 minutes off gets 403; a body we cannot read 400 (parsed
with defusedxml: no DTDs, no entities); never a 500.

WeChat gives up on a reply after 5 s and sends the message again, three times in all. Every message is
claimed once by its MsgId (FromUserName + CreateTime for events) in the person's channel hash; a
retry waits for the first delivery's answer and gets the very same text, so no turn runs twice.

No buttons in passive replies: a question's buttons become numbered options ("回复 1 上海 · 2 北京"),
kept in the channel hash so the number (or the option's words) maps back to the button. Questions that
take an amount offer their controls as words, so "1" stays an amount. A reply longer than WeChat's
limit is cut at line ends; the rest, and an estimate's steps and comparisons, wait behind "回复 详情".

Redis, one hash per person in the person's slot: ``yibao:{wechat:<openid>}:wechat`` — ``m:<id>`` (a
claim ``~<ms>:<token>``, or ``=`` + the answer sent), ``order`` (the last ids, oldest dropped), ``o``
(the options shown last), ``p`` (pages waiting behind 详情). /forget and 取消关注 delete it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import string
import struct
import time
import unicodedata
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError

from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bot import logs
from bot.http_app import METRICS, RUNTIME
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.throttle import Throttle, Verdict
from conversations.replies import Button, Incoming, Turn
from conversations.store import SessionKey
from conversations.texts import t

log = logging.getLogger(__name__)

PLATFORM = "wechat"
MAX_BODY = 64 * 1024
MAX_AGE = 300  # seconds a signed timestamp may be off
MAX_TEXT = 2000  # characters of a message passed on (the dialogue answers longer ones with a hint)
CONTENT_BYTES = 2000  # a passive text reply's Content, UTF-8: WeChat cuts past 2047 bytes
WAIT = 4.5  # seconds a retry waits for the first delivery's answer (WeChat waits 5)
STALE_MS = 10_000  # a claim this old lost its owner: a retry may take the message over
FORGOTTEN_TTL = 60  # seconds the answer to /forget is kept for a retry (it holds nothing personal)
KEEP = 16  # answers kept per person for retries (the hash expires with the session)
BLOCK = 32  # PKCS#7 block of the specification (not AES's 16)
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
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


def _reworded(text: str, lang: str) -> str:
    for key, wording in REWORDED[lang].items():
        text = text.replace(t(lang, key), wording)
    return text.replace(*HELP_LINE[lang])


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# -- the cipher ------------------------------------------------------------------------------------


def sign(*parts: str) -> str:
    """The specification's signature: sha1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


class WeChatCipher:
    """AES-256-CBC of the safe mode, with the EncodingAESKey and the AppID check."""

    def __init__(self, aes_key: str, app_id: str):
        self.key = base64.b64decode(aes_key + "=")
        self.app_id = app_id.encode()

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, xml: bytes) -> str:
        prefix = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16)).encode()
        plain = prefix + struct.pack(">I", len(xml)) + xml + self.app_id
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> bytes:
        """The message XML; `Refused` 400 for anything not made with our key, 403 for another AppID."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "Encrypt is not base64") from None
        if not data or len(data) % 16:
            raise Refused(400, "Encrypt is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad or len(plain) < 20 + pad:
            raise Refused(400, "bad padding (another EncodingAESKey?)")
        content = plain[16:-pad]
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise Refused(400, "bad message length")
        if not secrets.compare_digest(content[4 + length:], self.app_id):
            raise Refused(403, "message for another AppID")
        return content[4:4 + length]


# -- XML -------------------------------------------------------------------------------------------


def parse_xml(body: bytes) -> dict[str, str]:
    """The flat fields of a WeChat XML message; `Refused` 400 for anything else (no DTDs, no entities)."""
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        raise Refused(400, "body is not XML") from None
    if root.tag != "xml" or len(root) > 64:
        raise Refused(400, "not a WeChat message")
    return {child.tag: (child.text or "") for child in root if isinstance(child.tag, str)}


def _cdata(text: str) -> str:
    return "<![CDATA[" + _NOT_XML.sub("", text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_xml(to: str, sender: str, content: str) -> str:
    return (f"<xml><ToUserName>{_cdata(to)}</ToUserName><FromUserName>{_cdata(sender)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{_cdata(content)}</Content></xml>")


# -- rendering: numbered options, pages ------------------------------------------------------------


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
    pages, current = [], ""
    for line in text.split("\n"):
        while _utf8(line) > budget:
            cut = len(line.encode()[:budget].decode(errors="ignore"))
            if current:
                pages.append(current)
                current = ""
            pages.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if _utf8(candidate) > budget:
            pages.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        pages.append(current)
    return [p.strip("\n") for p in pages if p.strip()] or [""]


def render(turn: Turn) -> Shown:
    lang = turn.lang if turn.lang in TEXTS else "zh"
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


def next_page(claim: Claim) -> Shown:
    """The next page behind 详情 (after the last, the first again), with the options still open."""
    texts = TEXTS[claim.lang]
    at = claim.at % len(claim.pages)
    more = texts["more"] if at + 1 < len(claim.pages) else ""
    text = "\n\n".join(x for x in (claim.pages[at], more, claim.line) if x)
    return Shown(text, claim.options, claim.pages, claim.line, claim.lang, at + 1)


def match_option(text: str, options: list[list[str]]) -> str | None:
    """The button a typed number or option word stands for (full-width digits and a trailing "." too)."""
    folded = unicodedata.normalize("NFKC", text).strip().rstrip(".、。").strip().casefold()
    for option in options:
        if folded in (w.casefold() for w in option[1:]):
            return option[0]
    return None


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
    """A message claimed (or answered by another delivery), with the state the last answer left."""

    mine: bool
    value: str
    options: list[list[str]] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    line: str = ""
    lang: str = "zh"
    at: int = 0

    @classmethod
    def read(cls, mine: int, value: str | bytes, options: str | bytes, pages: str | bytes) -> Claim:
        value = value.decode() if isinstance(value, bytes) else value
        try:
            state, paged = json.loads(options or "{}"), json.loads(pages or "{}")
            return cls(bool(mine), value, state.get("o", []), paged.get("all", []), state.get("line", ""),
                       state.get("lang") if state.get("lang") in TEXTS else "zh", int(paged.get("at", 0)))
        except (ValueError, AttributeError, TypeError):  # not what we wrote: go on without options
            return cls(bool(mine), value)

    def unchanged(self, text: str) -> Shown:
        """An answer that leaves the options and pages as they were."""
        return Shown(text, self.options, self.pages, self.line, self.lang, self.at)


class WeChatChannel:
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
        return self.runtime.store.user_key(PLATFORM, openid, PLATFORM)

    # -- HTTP --------------------------------------------------------------------------------------

    def _check(self, query, *extra: str, name: str = "signature") -> None:
        stamp = query.get("timestamp", "")
        nonce = query.get("nonce", "")
        if not _DIGITS.match(stamp) or len(nonce) > 128:
            raise Refused(400, "timestamp and nonce expected")
        if not secrets.compare_digest(query.get(name, "").encode(), sign(self.token, stamp, nonce, *extra).encode()):
            raise Refused(403, f"wrong {name}")
        if abs(time.time() - int(stamp)) > MAX_AGE:
            raise Refused(403, "timestamp more than 5 minutes off")

    async def verify(self, request: web.Request) -> web.Response:
        """GET: WeChat checks the server URL when the developer settings are saved."""
        try:
            self._check(request.query)
        except Refused as bad:
            return web.Response(status=bad.status, text=bad.reason)
        return web.Response(text=request.query.get("echostr", "")[:256])

    async def receive(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            body = await self._body(request)
            outer = parse_xml(body)
            safe = request.query.get("encrypt_type", "raw").lower() == "aes"
            if safe:
                if self.cipher is None:
                    raise Refused(400, "safe mode message, but WECHAT_AES_KEY is not set")
                self._check(request.query, outer.get("Encrypt", ""), name="msg_signature")
                message = parse_xml(self.cipher.decrypt(outer.get("Encrypt", "")))
            else:
                self._check(request.query)
                message = outer
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
            xml = self._sealed(xml)
        return web.Response(text=xml, content_type="application/xml")

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

    def _sealed(self, xml: str) -> str:
        assert self.cipher is not None
        encrypted = self.cipher.encrypt(xml.encode())
        stamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        return (f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
                f"<MsgSignature>{_cdata(sign(self.token, stamp, nonce, encrypted))}</MsgSignature>"
                f"<TimeStamp>{stamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>")

    # -- one message, once --------------------------------------------------------------------------

    async def answer(self, openid: str, message: dict[str, str]) -> str:
        """The text for this message: the first delivery's, for a retry; '' for none."""
        kind = message.get("MsgType", "").lower()
        msg_id = message.get("MsgId", "")
        if not _DIGITS.match(msg_id):
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
            if text.strip().casefold() in DETAILS and claim.pages:
                return next_page(claim), False
            choice = match_option(text, claim.options)
            incoming = Incoming(choice=choice) if choice else Incoming(text=text)
        else:
            incoming = Incoming(text=None)  # a picture, a sticker, a location: a one-line hint
        verdict = await self.throttle.check(PLATFORM, key.user)
        if verdict is not Verdict.ALLOW:
            self.metrics.inc("yibao_throttled_total")
            text = t(claim.lang, "errors.throttled") if verdict is Verdict.NOTICE else ""
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
        lang = (stored or {}).get("l") if isinstance(stored, dict) else None
        return lang if lang in TEXTS else "zh"

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
