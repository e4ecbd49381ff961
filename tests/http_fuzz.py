"""Malformed and odd request bodies for every HTTP endpoint that reads one, and a runner that sends them.

Used by tests/test_http_fuzz.py (a few thousand cases per endpoint, in CI) and by
benchmarks/bench_fuzz.py (as many as asked). Deterministic for a seed. The cases mix what breaks
parsers (invalid UTF-8, lone surrogates in escapes, nesting thousands deep, huge numbers, NaN, empty
and enormous bodies, wrong Content-Types) with bodies of the right shape whose fields are wrong (a list
where a string belongs, a missing field, an unknown one), and bodies that are almost right.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

ODD_STRINGS = ["", " ", "\u0000", "\ud800", "\udfff", "\U0001f600", "上海", "30000", "-1", "1e309", "NaN",
               "/start", "/forget", "1|shanghai", "~calc", "0|~forget:yes", "a" * 600, "\u202e", "%00",
               "<b>x</b>", "'; DROP TABLE", "\\", '"', "\n" * 50]


def _odd_scalar(rng: random.Random):
    return rng.choice([
        None, True, False, 0, -1, 2**63, -(2**64), 10**400, 1.5, -0.0, 1e308,
        rng.choice(ODD_STRINGS), "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40))),
        "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 8))),
    ])


def _odd_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 4 or roll < 0.5:
        return _odd_scalar(rng)
    if roll < 0.75:
        return [_odd_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(ODD_STRINGS + ["text", "choice", "command", "argument", "update_id", "message"]):
            _odd_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _dumps(value) -> bytes:
    """JSON the way a hostile client writes it: lone surrogates escaped, NaN allowed, big ints."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def _raw(rng: random.Random) -> bytes:
    """Bytes that are not (valid) JSON or not UTF-8."""
    depth = rng.choice([33, 200, 2040, 100_000])
    return rng.choice([
        b"", b"null", b"[]", b"{}", b"0", b'"x"', b"true", b"NaN", b"Infinity", b"-Infinity",
        b"{" * depth, b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth,
        b'{"text": "\\ud800"}', b'{"\\ud800": "x"}', b'{"text": "\\udfff\\ud800"}', b'{"text": "\xff\xfe"}',
        b"\xff" * rng.randint(1, 50), b'{"text": "' + bytes(rng.randint(128, 255) for _ in range(8)) + b'"}',
        b"1" * 5000, b'{"update_id": ' + b"9" * 5000 + b"}", b'{"text": "a"' + b', "text": "b"' * 50 + b"}",
        bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 200))), b'{"text": "x"}' + b" " * 5000,
        b"\x00" * 100, b'{"a": 1,}', b"'single'", b'{"text": "x"', b"\xef\xbb\xbf{}",
    ])


def web_body(rng: random.Random) -> dict | list | object:
    shape = rng.choice(["text", "choice", "command", "odd"])
    if shape == "odd":
        return _odd_value(rng)
    body = {shape: rng.choice([_odd_scalar(rng), rng.choice(ODD_STRINGS)])}
    if shape == "command" and rng.random() < 0.5:
        body["argument"] = _odd_scalar(rng)
    if rng.random() < 0.2:
        body[rng.choice(["text", "choice", "extra", "argument"])] = _odd_value(rng)
    return body


def webhook_body(rng: random.Random) -> object:
    if rng.random() < 0.3:
        return _odd_value(rng)
    chat = {"id": rng.choice([rng.randint(1, 10**6), -(10**13), "x", None, 2**70]), "type": rng.choice(
        ["private", "group", "supergroup", "channel", 5, None])}
    message = {"message_id": rng.choice([1, -1, "1", None]), "date": rng.choice([0, 1_700_000_000, "now", None]),
               "chat": rng.choice([chat, None, [], "chat"]),
               "from": rng.choice([{"id": 7, "is_bot": False, "first_name": _odd_scalar(rng)}, None, {}]),
               "text": rng.choice([_odd_scalar(rng), rng.choice(ODD_STRINGS)])}
    if rng.random() < 0.3:
        message["entities"] = rng.choice([[{"type": "bot_command", "offset": 0, "length": rng.randint(-5, 900)}],
                                          "x", [None], [{}]])
    update = {"update_id": rng.choice([rng.randint(1, 2**31), -5, 0, "1", None, 1.5, 2**80])}
    kind = rng.choice(["message", "edited_message", "callback_query", "channel_post", "my_chat_member", "x"])
    if kind == "callback_query":
        update[kind] = {"id": _odd_scalar(rng), "from": message["from"], "chat_instance": "1",
                        "data": rng.choice(ODD_STRINGS), "message": rng.choice([message, None, 5])}
    else:
        update[kind] = rng.choice([message, _odd_value(rng)])
    return update


def admin_body(rng: random.Random) -> object:
    if rng.random() < 0.3:
        return _odd_value(rng)
    body = {"text": rng.choice([_odd_scalar(rng), rng.choice(ODD_STRINGS)]),
            "regions": rng.choice([None, [], ["shanghai"], ["上海", "nowhere"], [_odd_scalar(rng)], "shanghai",
                                   [[]], {"a": 1}]),
            "lang": rng.choice([None, "zh", "en", "fr", 5, _odd_scalar(rng)])}
    for name in rng.sample(list(body), rng.randint(0, 2)):
        del body[name]
    return body


@dataclass
class Endpoint:
    name: str
    method: str
    path: str
    body: object  # a function of an rng → a JSON-able value
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Tally:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        """Answers >= 500 other than 503 (busy: Redis away), and connections that broke (599)."""
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)

    @property
    def busy(self) -> int:
        return self.statuses.get(503, 0)


def request_for(endpoint: Endpoint, rng: random.Random) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json", **endpoint.headers}
    body = _raw(rng) if rng.random() < 0.25 else _dumps(endpoint.body(rng))
    if rng.random() < 0.05:
        headers["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded", "", "json"])
    if rng.random() < 0.01:
        body = body + b" " * rng.randint(5_000, 1_100_000)  # too large for one endpoint or another
    return body, headers


async def fuzz(base_url: str, endpoint: Endpoint, cases: int, seed: int = 1, concurrency: int = 16) -> Tally:
    """Send `cases` requests to the endpoint; count the statuses (a refused connection counts as 599)."""
    rng = random.Random(f"{seed}-{endpoint.name}")
    requests = [request_for(endpoint, rng) for _ in range(cases)]
    tally = Tally()
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body, headers = queue.get_nowait()
            try:
                async with http.request(endpoint.method, base_url + endpoint.path, data=body,
                                        headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = 599
            tally.cases += 1
            tally.statuses[status] += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return tally
