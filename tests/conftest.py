from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

# No per-example deadline: on a busy 2-core machine a slow example is load, not a bug (the speed of the
# code is measured in benchmarks/). Examples and shrinking stay as each test sets them.
settings.register_profile("yibao", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("yibao")

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # plain `pytest` (not `python -m pytest`) must find rules/conversations/bot too
    sys.path.insert(0, _ROOT)

from redis_cluster import RedisTestCluster  # noqa: E402
from redis_server import RedisTestServer  # noqa: E402  (tests/ is on sys.path via rootdir conftest)

from bot.redis_client import connect  # noqa: E402


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set `REDIS_MODES = ("single", "cluster")` run every Redis test twice: against one
    redis-server and against a real 3-master Redis Cluster (see redis_cluster.py)."""
    modes = getattr(metafunc.module, "REDIS_MODES", None)
    if metafunc.definition.get_closest_marker("single_redis"):  # measures one server's round trips, etc.
        modes = None
    if modes and "redis_mode" in metafunc.fixturenames:
        metafunc.parametrize("redis_mode", modes, scope="session")


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server on a free loopback port (no persistence), for the whole test session."""
    server = RedisTestServer(tmp_path_factory.mktemp("redis-server")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory):
    """A real 3-master Redis Cluster on loopback for the whole test session, started on first use."""
    cluster = RedisTestCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_mode() -> str:
    """"single" unless the module asks for both (REDIS_MODES)."""
    return "single"


@pytest.fixture
def redis_cluster(redis_mode: str) -> bool:
    return redis_mode == "cluster"


@pytest.fixture
def redis_url(redis_mode: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("redis_cluster_url" if redis_mode == "cluster" else "redis_server_url")


@pytest.fixture
def make_redis(redis_url: str, redis_cluster: bool):
    """A factory of asyncio clients for this test's Redis (cluster client in cluster mode)."""
    return lambda **options: connect(redis_url, cluster=redis_cluster, **options)


@pytest_asyncio.fixture
async def redis(make_redis):
    """An asyncio client (bytes replies) on an empty database."""
    client = make_redis(decode_responses=False)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()
