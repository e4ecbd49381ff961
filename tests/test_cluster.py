"""Redis Cluster as the shared store: `yibao web` with REDIS_CLUSTER=true completes a whole estimate on a
real 3-master cluster, subscriber sets spread over the nodes, and the old one-tag layout is migrated.

The store, dialogue, broadcast and web-chat suites run on the cluster as well (their REDIS_MODES).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster
from web_process import yibao_web

from bot.channels.web import COOKIE
from bot.config import ConfigError, Settings
from bot.notices.subscriptions import Subscriptions
from bot.redis_client import connect
from bot.store import RedisSessionStore

ROOT = Path(__file__).resolve().parent.parent


def test_cluster_mode_needs_the_address_of_a_node():
    with pytest.raises(ConfigError, match="REDIS_CLUSTER: needs REDIS_URL"):
        Settings.from_env({"REDIS_CLUSTER": "true"})
    assert Settings.from_env({"REDIS_CLUSTER": "true", "REDIS_URL": "redis://10.0.0.1:7000"}).redis_cluster


async def test_the_cluster_client_is_used_in_cluster_mode(redis_cluster_url):
    client = connect(redis_cluster_url, cluster=True)
    try:
        assert isinstance(client, RedisCluster)
        await client.ping()
        assert len(client.get_primaries()) == 3
    finally:
        await client.aclose()


async def test_region_subscriber_sets_spread_over_the_nodes(redis_cluster_url):
    client = connect(redis_cluster_url, cluster=True)
    try:
        await client.flushall()
        subs = Subscriptions(client, RedisSessionStore(client))
        regions = ["shanghai", "beijing", "shenzhen", "jiangxi", "luoyang", "zigong", "chongqing", "guangzhou"]
        for i, region in enumerate(regions):
            await subs.subscribe(str(1000 + i), region, "zh")
        nodes = {client.get_node_from_key(subs.region_key(r)).name for r in regions}
        assert len(nodes) > 1, "every region's subscribers on one node"
        assert await subs.recipients(regions) == {str(1000 + i): "zh" for i in range(len(regions))}
        await subs.remove_chat("1000")
        assert "1000" not in await subs.recipients(regions)
    finally:
        await client.aclose()


async def test_the_one_tag_layout_of_earlier_versions_is_migrated(redis):
    subs = Subscriptions(redis, RedisSessionStore(redis))
    await redis.hset(subs.legacy_region_key("shanghai"), mapping={"7": "en", "8": "zh"})
    await subs.subscribe("9", "shanghai", "zh")
    assert await subs.migrate_legacy(["shanghai", "beijing"]) == 1
    assert not await redis.exists(subs.legacy_region_key("shanghai"))
    assert await subs.recipients(["shanghai"]) == {"7": "en", "8": "zh", "9": "zh"}
    assert await subs.migrate_legacy(["shanghai", "beijing"]) == 0  # idempotent


@pytest.fixture
def cluster_web(redis_cluster_url: str, tmp_path: Path) -> Iterator[str]:
    """`yibao web` as a real process with REDIS_CLUSTER=true and REDIS_URL naming one node."""
    settings = {"REDIS_URL": redis_cluster_url, "REDIS_CLUSTER": "true", "THROTTLE_RATE": "50",
                "THROTTLE_BURST": "200"}
    with yibao_web(settings, tmp_path) as web:
        yield web.url
    assert web.code == 0, web.printed
    assert "Traceback" not in web.printed, web.printed


async def test_yibao_web_completes_an_estimate_on_a_cluster(cluster_web: str, redis_cluster_url: str):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:

        async def say(**body) -> dict:
            async with http.post(cluster_web + "/api/chat", json=body, headers={"Origin": cluster_web}) as response:
                data = await response.json()
                assert response.status == 200, data
                return data

        def button(data: dict, label: str) -> str:
            for row in data["replies"][-1]["buttons"]:
                for b in row:
                    if b["label"] == label:
                        return b["id"]
            raise AssertionError(f"no button {label!r} in {data['replies'][-1]}")

        data = await say(command="resume", argument="en")
        data = await say(choice=button(data, "Shanghai"))
        for text in ("retired", "hospital stay", "level 3", "2005", "30000"):
            data = await say(text=text)
        data = await say(choice=button(data, "Skip"))
        data = await say(choice=button(data, "No other care this year: skip all"))
        data = await say(choice=button(data, "Calculate"))
        assert data["kind"] == "estimate"
        assert "26,496.00" in data["replies"][-1]["text"]
        sid = next(c.value for c in http.cookie_jar if c.key == COOKIE)
    client = connect(redis_cluster_url, cluster=True)
    try:
        assert await client.exists(f"yibao:{{web:{sid}}}:session:{sid}")
    finally:
        await client.aclose()
