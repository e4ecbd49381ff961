"""Every setting of the bot, read and checked once at start from the environment.

The table `VARIABLES` is the one place a setting is declared: its variable, default, type and meaning.
The README's configuration table and `.env.example` are printed from it (`yibao config --markdown`,
`yibao config --env`), so they cannot drift apart. A wrong value stops the start with the variable's
name and what is expected.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A setting has a value we cannot use: names the variable and what it expects."""


class Secret(str):
    """A string that does not show itself in logs, reprs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('**********')"

    @property
    def value(self) -> str:
        return str.__str__(self)


def _text(raw: str) -> str:
    return raw.strip()


def _secret(raw: str) -> Secret:
    return Secret(raw.strip())


def _url(raw: str) -> str:
    parsed = urlparse(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("an http(s) URL, e.g. https://bot.example.org/telegram")
    return raw.strip()


def _redis_url(raw: str) -> str:
    if urlparse(raw.strip()).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("a redis://, rediss:// or unix:// URL")
    return raw.strip()


def _port(raw: str) -> int:
    if not raw.strip().isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError("a port number from 1 to 65535")
    return int(raw)


def _positive_int(raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError("a whole number, 1 or more")
    return int(raw)


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("a number above 0, e.g. 25") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("a number above 0, e.g. 25")
    return value


def _flag(raw: str) -> bool:
    folded = raw.strip().lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("true or false")


def _ids(raw: str) -> frozenset[int]:
    parts = [p.strip() for p in raw.replace(";", ",").split(",") if p.strip()]
    if not all(p.lstrip("-").isdigit() for p in parts):
        raise ValueError("Telegram user ids separated by commas, e.g. 12345,67890")
    return frozenset(int(p) for p in parts)


def _aes_key(raw: str) -> Secret:
    import base64
    import binascii

    key = raw.strip()
    try:
        ok = len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise ValueError("the 43-character EncodingAESKey from the Official Account's developer settings")
    return Secret(key)


def _path(raw: str) -> str:
    path = raw.strip()
    if not path.startswith("/") or any(c in path for c in "?#{} "):
        raise ValueError("a URL path starting with /, e.g. /wechat")
    return path


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip().lower() not in options:
            raise ValueError(" or ".join(options))
        return raw.strip().lower()

    return parse


@dataclass(frozen=True)
class Variable:
    name: str  # environment variable
    attr: str  # Settings attribute
    parse: Callable[[str], Any]
    default: Any
    meaning: str
    secret: bool = False


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "TELEGRAM_BOT_TOKEN",
        "telegram_token",
        _secret,
        None,
        "Bot token from @BotFather. `yibao serve` needs it or WECHAT_TOKEN.",
        secret=True,
    ),
    Variable(
        "TELEGRAM_BASE_URL",
        "telegram_base_url",
        _url,
        None,
        "Another Bot API server (self-hosted telegram-bot-api, or a test server); may contain `{token}`.",
    ),
    Variable(
        "WEBHOOK_URL", "webhook_url", _url, None, "Public HTTPS URL Telegram posts updates to. Unset: long polling."
    ),
    Variable(
        "WEBHOOK_SECRET",
        "webhook_secret",
        _secret,
        None,
        "Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token. Unset: derived from the token.",
        secret=True,
    ),
    Variable(
        "HOST", "host", _text, "0.0.0.0", "Address the HTTP server listens on (webhook, health, web chat, admin API)."
    ),
    Variable("PORT", "port", _port, 8080, "Port of the HTTP server."),
    Variable(
        "METRICS_PORT",
        "metrics_port",
        _port,
        None,
        "Serve /metrics and /readyz on this port (and METRICS_HOST) only, not on PORT. Unset: on PORT.",
    ),
    Variable("METRICS_HOST", "metrics_host", _text, "127.0.0.1", "Address of the METRICS_PORT server."),
    Variable(
        "REDIS_URL",
        "redis_url",
        _redis_url,
        None,
        "Redis server. Unset: an embedded redis-server on a unix socket under YIBAO_REDIS_DIR.",
    ),
    Variable(
        "REDIS_CLUSTER",
        "redis_cluster",
        _flag,
        False,
        "REDIS_URL names a node of a Redis Cluster: every store uses the cluster client.",
    ),
    Variable(
        "REDIS_TIMEOUT",
        "redis_timeout",
        _positive_float,
        1.0,
        "Seconds to wait for a Redis reply; past it the person is told the service is busy (nothing is lost).",
    ),
    Variable(
        "REDIS_CONNECT_TIMEOUT",
        "redis_connect_timeout",
        _positive_float,
        1.0,
        "Seconds to wait for a Redis connection.",
    ),
    Variable(
        "YIBAO_REDIS_DIR",
        "redis_dir",
        _text,
        None,
        "Data folder of the embedded Redis (default ~/.local/share/yibao-bot/redis).",
    ),
    Variable("YIBAO_POLICY_DIR", "policy_dir", _text, None, "Folder of policy files. Unset: the policies shipped."),
    Variable(
        "SESSION_TTL",
        "session_ttl",
        _positive_int,
        7 * 24 * 3600,
        "Seconds a conversation is kept after its last message.",
    ),
    Variable(
        "YEAR_KEEP_DAYS",
        "year_keep_days",
        _positive_int,
        400,
        "Days a recorded insurance year (visits, profile) is kept after that insurance year ends.",
    ),
    Variable(
        "THROTTLE_RATE",
        "throttle_rate",
        _positive_float,
        3.0,
        "Updates a second one user may send; more are dropped after one notice.",
    ),
    Variable(
        "THROTTLE_BURST", "throttle_burst", _positive_int, 6, "Updates a user may send at once before throttling."
    ),
    Variable("WEB_CHAT", "web_chat", _flag, False, "Serve the browser chat page at /chat (always on for `yibao web`)."),
    Variable("ADMIN_IDS", "admin_ids", _ids, frozenset(), "Telegram user ids of the admins (broadcasts, /reload)."),
    Variable(
        "ADMIN_TOKEN",
        "admin_token",
        _secret,
        None,
        "Bearer token of the HTTP admin API. Unset: the admin API is off.",
        secret=True,
    ),
    Variable(
        "BROADCAST_RATE", "broadcast_rate", _positive_float, 25.0, "Broadcast messages a second, all chats together."
    ),
    Variable(
        "ALLOW_PAID_BROADCAST",
        "allow_paid_broadcast",
        _flag,
        False,
        "Use Telegram's paid broadcasts (allow_paid_broadcast): the rate may go up to 1000/s.",
    ),
    Variable(
        "TRUST_PROXY",
        "trust_proxy",
        _flag,
        False,
        "Behind a reverse proxy: take the client's address from X-Forwarded-For (web chat flood limit).",
    ),
    Variable(
        "LOG_SALT",
        "log_salt",
        _secret,
        None,
        "Salt of the hashed chat ids in logs. Unset: derived from the bot token or WECHAT_TOKEN "
        "(yibao web: a fixed salt).",
        secret=True,
    ),
    Variable(
        "WECHAT_TOKEN",
        "wechat_token",
        _secret,
        None,
        "Token of the WeChat Official Account (developer settings). Set: `yibao serve` answers WeChat.",
        secret=True,
    ),
    Variable("WECHAT_APP_ID", "wechat_app_id", _text, None, "AppID of the Official Account (needed for safe mode)."),
    Variable(
        "WECHAT_AES_KEY",
        "wechat_aes_key",
        _aes_key,
        None,
        "EncodingAESKey of the Official Account: safe (encrypted) mode. Unset: plain mode.",
        secret=True,
    ),
    Variable("WECHAT_PATH", "wechat_path", _path, "/wechat", "URL path WeChat posts messages to."),
    Variable("LOG_FORMAT", "log_format", _choice("text", "json"), "text", "`text` or `json` (one object a line)."),
    Variable(
        "LOG_LEVEL", "log_level", _choice("debug", "info", "warning", "error"), "info", "Least severe level logged."
    ),
)


@dataclass(frozen=True)
class Settings:
    telegram_token: Secret | None = None
    telegram_base_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    redis_url: str | None = None
    redis_cluster: bool = False
    redis_timeout: float = 1.0
    redis_connect_timeout: float = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    redis_dir: str | None = None
    policy_dir: str | None = None
    session_ttl: int = 7 * 24 * 3600
    year_keep_days: int = 400
    throttle_rate: float = 3.0
    throttle_burst: int = 6
    web_chat: bool = False
    admin_ids: frozenset[int] = field(default_factory=frozenset)
    admin_token: Secret | None = None
    broadcast_rate: float = 25.0
    allow_paid_broadcast: bool = False
    log_format: str = "text"
    log_level: str = "info"
    trust_proxy: bool = False
    log_salt: Secret | None = None
    wechat_token: Secret | None = None
    wechat_app_id: str | None = None
    wechat_aes_key: Secret | None = None
    wechat_path: str = "/wechat"

    def salt(self) -> str | None:
        """What the log hashes are salted with: LOG_SALT, else the bot token, else the WeChat token."""
        return (self.log_salt or self.telegram_token or self.wechat_token or Secret("")).value or None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None or raw.strip() == "":
                values[var.attr] = var.default
                continue
            try:
                values[var.attr] = var.parse(raw)
            except ValueError as bad:
                raise ConfigError(f"{var.name}: expected {bad}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.redis_cluster and not self.redis_url:
            raise ConfigError("REDIS_CLUSTER: needs REDIS_URL, the address of any node of the cluster")
        if self.wechat_aes_key and not self.wechat_app_id:
            raise ConfigError("WECHAT_APP_ID: expected the Official Account's AppID (safe mode checks it)")
        limit = 1000 if self.allow_paid_broadcast else 30
        if self.broadcast_rate > limit:
            raise ConfigError(
                f"BROADCAST_RATE: expected at most {limit} messages a second"
                + ("" if self.allow_paid_broadcast else " (set ALLOW_PAID_BROADCAST for more)")
            )

    def secret_token(self) -> str:
        """The webhook secret: WEBHOOK_SECRET, or one derived from the bot token, so the check is never off."""
        if self.webhook_secret:
            return self.webhook_secret.value
        if not self.telegram_token:
            raise ConfigError("TELEGRAM_BOT_TOKEN: required to derive the webhook secret")
        digest = hashlib.sha256(b"yibao-webhook:" + self.telegram_token.value.encode()).hexdigest()
        return digest[:64]


def env_text(value: Any) -> str:
    """A setting's value as one would write it in the environment: true/false, ids with commas, "" for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (frozenset, set, tuple, list)):
        return ",".join(str(v) for v in sorted(value))
    return str(value)


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for var in VARIABLES:
        lines.append(f"| `{var.name}` | {env_text(var.default) or '—'} | {var.meaning} |")
    return "\n".join(lines)


def env_example() -> str:
    lines = ["# yibao-bot settings: copy to .env and fill in. Printed by `yibao config --env`."]
    for var in VARIABLES:
        default = env_text(var.default)
        lines += [f"# {var.meaning}", f"{var.name}={default}" if var.secret or default else f"# {var.name}=", ""]
    return "\n".join(lines)


def settings_table(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The settings in force, one a line: variable, value (secrets hidden), and whether it came from the
    environment or is the default — what `yibao config` prints."""
    env = os.environ if env is None else env
    rows = [("variable", "value", "from")]
    for var in VARIABLES:
        value = getattr(settings, var.attr)
        shown = "(set, hidden)" if var.secret and value else env_text(value) or "(not set)"
        rows.append((var.name, shown, "environment" if env.get(var.name, "").strip() else "default"))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in rows)
