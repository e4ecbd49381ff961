"""The one place a Redis client is made, so that every store talks to Redis the same way.

Every module takes the client it is given (`Runtime.redis`) and never builds its own; settings that
concern the connection are applied here alone.

With `REDIS_CLUSTER=true` the client is redis-py's cluster client: `REDIS_URL` names any node, the client
learns the slot map from it and sends each command to the node that holds its keys. Our code needs no
other change, because every script and multi-key command touches the keys of one hash tag only (one
person's keys `{platform:user}`, one broadcast job's `{bc:<id>}`, one region's subscribers
`{subs:<region>}`); the modules that name keys say which tag each key has.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster


def connect(url: str, *, cluster: bool = False, **options: Any) -> aioredis.Redis:
    """A client for the Redis at `url` (redis://, rediss:// or unix://), or for the cluster that
    the node at `url` belongs to."""
    if cluster:
        # The cluster client shares the single-node client's command methods (register_script, pipeline,
        # hset…); it is typed as the single-node client here because every caller uses only those.
        return RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return aioredis.from_url(url, health_check_interval=30, **options)
