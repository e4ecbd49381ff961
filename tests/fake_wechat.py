"""A fake WeChat server for tests: it does to our WeChat endpoint what WeChat's servers do.

It signs every request (signature = sha1 of the sorted token, timestamp and nonce), in safe mode
encrypts the message and signs the ciphertext (msg_signature), waits at most `timeout` seconds for an
answer and sends the same message again when none came (three attempts in all, as WeChat does), and
reads the answer as WeChat would: in safe mode it checks MsgSignature, decrypts, checks the AppID; then
the passive-reply XML (To/From swapped, MsgType text, Content within 2047 bytes)::

    async with FakeWeChat(url, token, aes_key=key, app_id="wx…") as wechat:
        answer = await wechat.text("o_person", "开始")
        assert answer.content.startswith("你好")
        again = await wechat.replay(answer)            # the same MsgId once more

The cipher here is written apart from bot/channels/wechat.py (PKCS#7 from `cryptography`'s padding
module, not ours), so a test encrypting here and decrypting there checks one against the other.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import secrets
import struct
import time
from dataclasses import dataclass, field

import aiohttp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring

ACCOUNT = "gh_fake0123456789"
TEXT_LIMIT = 2047  # bytes of a passive text reply's Content that WeChat shows


class ProtocolError(AssertionError):
    """Our server answered something WeChat would not accept."""


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def encrypt(encoding_aes_key: str, app_id: str, xml: bytes) -> str:
    key = aes_key(encoding_aes_key)
    body = os.urandom(16) + struct.pack("!I", len(xml)) + xml + app_id.encode()
    padder = padding.PKCS7(256).padder()  # 32-byte blocks, as the specification says
    padded = padder.update(body) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(encoding_aes_key: str, app_id: str, encrypted: str) -> bytes:
    key = aes_key(encoding_aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    unpadder = padding.PKCS7(256).unpadder()
    body = unpadder.update(padded) + unpadder.finalize()
    (length,) = struct.unpack("!I", body[16:20])
    if body[20 + length:].decode() != app_id:
        raise ProtocolError(f"answer encrypted for AppID {body[20 + length:]!r}, not {app_id!r}")
    return body[20:20 + length]


def fields(xml: bytes | str) -> dict[str, str]:
    root = fromstring(xml)
    return {child.tag: child.text or "" for child in root}


def message_xml(values: dict[str, str]) -> bytes:
    parts = "".join(f"<{k}>{v}</{k}>" if k in ("CreateTime", "MsgId") else f"<{k}><![CDATA[{v}]]></{k}>"
                    for k, v in values.items())
    return f"<xml>{parts}</xml>".encode()


@dataclass
class Answer:
    """What came back for one message: the text shown to the person ('' for none), the HTTP status of
    the last attempt, how many attempts were made, and the message (for a replay)."""

    content: str
    status: int
    attempts: int
    message: dict[str, str] = field(repr=False)
    openid: str = ""


class FakeWeChat:
    def __init__(self, url: str, token: str, *, aes_key: str | None = None, app_id: str = "",
                 timeout: float = 5.0, attempts: int = 3):
        self.url = url
        self.token = token
        self.aes_key = aes_key
        self.app_id = app_id
        self.timeout = timeout
        self.attempts = attempts
        self.requests: list[tuple[str, int | None]] = []  # (MsgId or event id, status; None: timed out)
        self._ids = itertools.count(6_054_768_590_064_713_728)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FakeWeChat:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.session is not None
        await self.session.close()

    def signed_query(self, *, timestamp: int | None = None, **extra: str) -> dict[str, str]:
        stamp, nonce = str(timestamp or int(time.time())), str(secrets.randbelow(10**9))
        return {"signature": signature(self.token, stamp, nonce), "timestamp": stamp, "nonce": nonce, **extra}

    async def verify(self, echostr: str = "echo-1234567890") -> tuple[int, str]:
        """The GET WeChat sends when the server settings are saved."""
        assert self.session is not None
        async with self.session.get(self.url, params=self.signed_query(echostr=echostr)) as response:
            return response.status, await response.text()

    # -- messages ----------------------------------------------------------------------------------

    async def text(self, openid: str, content: str, *, lose_answers: int = 0) -> Answer:
        return await self.send(openid, {"MsgType": "text", "Content": content, "MsgId": str(next(self._ids))},
                               lose_answers=lose_answers)

    async def event(self, openid: str, event: str) -> Answer:
        return await self.send(openid, {"MsgType": "event", "Event": event})

    async def other(self, openid: str, kind: str = "image") -> Answer:
        return await self.send(openid, {"MsgType": kind, "PicUrl": "http://127.0.0.1/x.jpg", "MediaId": "m1",
                                        "MsgId": str(next(self._ids))})

    async def send(self, openid: str, values: dict[str, str], *, lose_answers: int = 0) -> Answer:
        message = {"ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": str(int(time.time())), **values}
        return await self.deliver(openid, message, lose_answers=lose_answers)

    async def replay(self, answer: Answer) -> Answer:
        """The same message (same MsgId and CreateTime) delivered again, as a retry does."""
        return await self.deliver(answer.openid, answer.message)

    async def deliver(self, openid: str, message: dict[str, str], *, lose_answers: int = 0) -> Answer:
        """POST the message until an answer comes within `timeout` (at most `attempts` times); the first
        `lose_answers` answers are dropped as if the network had lost them."""
        assert self.session is not None
        ident = message.get("MsgId") or f"{message['CreateTime']}:{message.get('Event')}"
        status = 0
        for attempt in range(1, self.attempts + 1):
            query, body = self._request(openid, message)
            try:
                async with asyncio.timeout(self.timeout):
                    async with self.session.post(self.url, params=query, data=body,
                                                 headers={"Content-Type": "text/xml"}) as response:
                        status, raw = response.status, await response.read()
            except TimeoutError:
                self.requests.append((ident, None))
                continue
            self.requests.append((ident, status))
            if status >= 500 or attempt <= lose_answers:
                continue
            content = self._read(openid, message, raw) if status == 200 else raw.decode(errors="replace")
            return Answer(content, status, attempt, message, openid)
        return Answer("", status or 504, self.attempts, message, openid)

    def _request(self, openid: str, message: dict[str, str]) -> tuple[dict[str, str], bytes]:
        xml = message_xml(message)
        if not self.aes_key:
            return self.signed_query(openid=openid), xml
        encrypted = encrypt(self.aes_key, self.app_id, xml)
        query = self.signed_query(openid=openid, encrypt_type="aes")
        query["msg_signature"] = signature(self.token, query["timestamp"], query["nonce"], encrypted)
        return query, message_xml({"ToUserName": ACCOUNT, "Encrypt": encrypted})

    def _read(self, openid: str, message: dict[str, str], raw: bytes) -> str:
        """The text the person would see; raises `ProtocolError` where WeChat would show an error."""
        if raw in (b"", b"success"):
            return ""
        if self.aes_key:
            sealed = fields(raw)
            expected = signature(self.token, sealed["TimeStamp"], sealed["Nonce"], sealed["Encrypt"])
            if sealed.get("MsgSignature") != expected:
                raise ProtocolError("wrong MsgSignature on the encrypted answer")
            raw = decrypt(self.aes_key, self.app_id, sealed["Encrypt"])
        reply = fields(raw)
        if (reply.get("ToUserName"), reply.get("FromUserName")) != (openid, message["ToUserName"]):
            raise ProtocolError(f"answer addressed wrongly: {reply}")
        if reply.get("MsgType") != "text" or not reply.get("CreateTime", "").isdigit():
            raise ProtocolError(f"not a text answer: {reply}")
        content = reply.get("Content", "")
        if len(content.encode()) > TEXT_LIMIT:
            raise ProtocolError(f"answer of {len(content.encode())} bytes: WeChat cuts it at {TEXT_LIMIT}")
        return content
