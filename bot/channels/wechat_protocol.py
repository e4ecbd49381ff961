"""WeChat's message protocol, as the Official Account message-encryption specification describes it;
nothing here knows of a person, a dialogue or Redis, so it can be checked against the specification's
own samples.

- Signatures: sha1 of the sorted token, timestamp and nonce (`signature`, on GET and on a plain POST),
  plus the ciphertext in safe mode (`msg_signature`). A timestamp more than 5 minutes off is refused.
- Safe mode (`encrypt_type=aes`): `<Encrypt>` holds base64 of AES-256-CBC (key = the EncodingAESKey + "="
  base64-decoded, IV = its first 16 bytes) over 16 random bytes, the XML's length (4 bytes, network
  order), the XML and the AppID, PKCS#7-padded to 32 bytes. Answers are encrypted and signed the same way.
- XML is read with defusedxml (no DTDs, no entities) and written as CDATA.
What cannot be read is `Refused` 400, what is not signed or not ours 403: never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import string
import struct
import time
from collections.abc import Mapping
from xml.etree.ElementTree import ParseError

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_AGE = 300  # seconds a signed timestamp may be off
BLOCK = 32  # PKCS#7 block of the specification (not AES's 16)
DIGITS = re.compile(r"^[0-9]{1,20}$")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Refused(Exception):
    """A request we answer with `status` and a short `reason` instead of a turn."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# -- signatures ------------------------------------------------------------------------------------


def sign(*parts: str) -> str:
    """The specification's signature: sha1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(query: Mapping[str, str], token: str, *extra: str, name: str = "signature") -> None:
    """`Refused` unless `query[name]` signs its timestamp and nonce (and `extra`) with our token, and
    the timestamp is recent: a replay from long ago is refused even with a good signature."""
    stamp = query.get("timestamp", "")
    nonce = query.get("nonce", "")
    if not DIGITS.match(stamp) or len(nonce) > 128:
        raise Refused(400, "timestamp and nonce expected")
    if not secrets.compare_digest(query.get(name, "").encode(), sign(token, stamp, nonce, *extra).encode()):
        raise Refused(403, f"wrong {name}")
    if abs(time.time() - int(stamp)) > MAX_AGE:
        raise Refused(403, "timestamp more than 5 minutes off")


# -- the cipher ------------------------------------------------------------------------------------


class WeChatCipher:
    """AES-256-CBC of the safe mode, with the EncodingAESKey and the AppID check."""

    def __init__(self, aes_key: str, app_id: str):
        self.key = base64.b64decode(aes_key + "=")
        self.app_id = app_id.encode()

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, xml: bytes) -> str:
        """Base64 of the sealed message: random prefix, length, XML, AppID, padded to 32 bytes."""
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


def cdata(text: str) -> str:
    """Text as CDATA, without the characters XML cannot hold and with any "]]>" split in two."""
    return "<![CDATA[" + _NOT_XML.sub("", text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_xml(to: str, sender: str, content: str) -> str:
    """A passive text reply."""
    return (f"<xml><ToUserName>{cdata(to)}</ToUserName><FromUserName>{cdata(sender)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(content)}</Content></xml>")


def sealed_xml(cipher: WeChatCipher, token: str, xml: str) -> str:
    """A reply for safe mode: the XML encrypted, then signed as WeChat signs what it sends us."""
    encrypted = cipher.encrypt(xml.encode())
    stamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
    return (f"<xml><Encrypt>{cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{cdata(sign(token, stamp, nonce, encrypted))}</MsgSignature>"
            f"<TimeStamp>{stamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>")
