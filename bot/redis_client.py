"""The one place a Redis client is made, so that every store talks to Redis the same way.

Every module takes the client it is given (`Runtime.redis`) and never builds its own; settings that
concern the connection (the URL, and later cluster mode and timeouts) are applied here alone.
"""

from __future__ import annotations

import redis.asyncio as aioredis


def connect(url: str) -> aioredis.Redis:
    """A client for the Redis at `url` (redis://, rediss:// or unix://)."""
    return aioredis.from_url(url, health_check_interval=30)
