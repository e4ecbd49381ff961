from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # plain `pytest` (not `python -m pytest`) must find rules/conversations/bot too
    sys.path.insert(0, _ROOT)

from redis_server import RedisTestServer  # noqa: E402  (tests/ is on sys.path via rootdir conftest)


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server on a free loopback port (no persistence), for the whole test session."""
    server = RedisTestServer(tmp_path_factory.mktemp("redis-server")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    return redis_server_url


@pytest_asyncio.fixture
async def redis(redis_url: str):
    """An asyncio client (bytes replies) on an empty database."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()
