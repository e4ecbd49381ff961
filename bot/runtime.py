"""What every runtime (terminal chat, Telegram, web) shares: settings, policies, Redis, the dialogue.

`open_runtime` is the one place they are put together, in dependency order, and taken apart again
in reverse: a start that fails says why in one line (`StartError`), never with a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from bot.config import Settings
from bot.embedded_redis import EmbeddedRedis, EmbeddedRedisError, default_data_dir
from bot.redis_client import connect
from bot.store import RedisSessionStore
from bot.year_store import RedisYearStore
from conversations.asking import warm_up
from conversations.dialogue import Dialogue, Effect
from conversations.knowledge import KnowledgeErrors, knowledge
from rules.account import account_rules
from rules.loader import PolicyErrors, load_policies, policy_dir
from rules.policy import PolicySet

log = logging.getLogger(__name__)


class StartError(RuntimeError):
    """The bot cannot start; the message says why and what to do."""


@dataclass
class Runtime:
    settings: Settings
    policies: PolicySet
    redis: aioredis.Redis
    store: RedisSessionStore
    dialogue: Dialogue
    embedded: EmbeddedRedis | None = None
    effects: dict[str, Effect] = field(default_factory=dict)

    def replace_policies(self, policies: PolicySet) -> None:
        """Swap in a reloaded policy set; turns already running finish on the old one."""
        self.policies = policies
        self.dialogue.policies = policies


def reload_policies(runtime: Runtime) -> bool:
    """SIGHUP in a command without the notices (`yibao web`): load the policy folder again and log the
    outcome either way; an invalid folder keeps the policies in use."""
    try:
        policies = load_policies(runtime.settings.policy_dir)
    except PolicyErrors as bad:
        log.error("policy reload failed, the policies loaded before stay in use:\n%s",
                  "\n".join(f"  {e}" for e in bad.errors), extra={"event": "reload"})
        return False
    except Exception as bad:  # an unreadable folder: still a reload that failed, not a crash
        log.error("policy reload failed (%s), the policies loaded before stay in use", type(bad).__name__,
                  extra={"event": "reload"})
        return False
    runtime.replace_policies(policies)
    log.info("policies reloaded: %d regions", len(policies.regions), extra={"event": "reload"})
    return True


def load_policy_set(settings: Settings) -> PolicySet:
    try:
        policies = load_policies(settings.policy_dir)
    except PolicyErrors as bad:
        lines = "\n".join(f"  {e}" for e in bad.errors)
        raise StartError(f"invalid policy set in {policy_dir(settings.policy_dir)}; not starting:\n{lines}") from None
    check_shipped_data()
    return policies


def check_shipped_data() -> None:
    """The personal-account rules and the knowledge base, checked at start like the policies (a broken
    file stops the start with its file, line and field, not the first turn that needs it)."""
    try:
        account_rules()
        knowledge()
    except (PolicyErrors, KnowledgeErrors) as bad:
        lines = "\n".join(f"  {e}" for e in bad.errors)
        raise StartError(f"invalid data file; not starting:\n{lines}") from None


def start_embedded(settings: Settings) -> EmbeddedRedis:
    embedded = EmbeddedRedis(settings.redis_dir or default_data_dir())
    try:
        return embedded.start()
    except EmbeddedRedisError as bad:
        raise StartError(f"could not start the embedded Redis (set REDIS_URL to use another): {bad}") from None


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    policies = load_policy_set(settings)
    embedded = None if settings.redis_url else start_embedded(settings)
    url = settings.redis_url or embedded.url  # type: ignore[union-attr]
    redis = connect(url, cluster=settings.redis_cluster, **redis_options(settings))
    try:
        try:
            await redis.ping()
        except (RedisError, OSError) as bad:
            raise StartError(f"Redis at {_safe_url(url)} does not answer: {bad}") from None
        store = RedisSessionStore(redis, ttl_seconds=settings.session_ttl)
        # A daemon thread: the process never waits for it to exit (Ctrl-C ends `yibao chat` at once).
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
        effects: dict[str, Effect] = {}
        dialogue = Dialogue(policies, store, effects=effects, years=RedisYearStore(store),
                            year_keep_days=settings.year_keep_days)
        yield Runtime(settings, policies, redis, store, dialogue, embedded, effects)
    finally:
        await redis.aclose()
        if embedded is not None:
            embedded.stop()


def redis_options(settings: Settings) -> dict:
    """Timeouts on every Redis client, so a stalled Redis costs a turn a second, not a hang: a reply
    within REDIS_TIMEOUT, a connection within REDIS_CONNECT_TIMEOUT; a dropped connection (a restarted
    Redis) is retried once at once, a timeout is not retried (the person is told to try again)."""
    return {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError, ConnectionResetError)),
    }


def _safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
