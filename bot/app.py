"""The assembly: `yibao serve` puts the whole bot together here, top to bottom — the Telegram bot (long
polling or webhook), the HTTP endpoints beside it, the WeChat Official Account, the web chat, the admin
API and the broadcast runner. With only WECHAT_TOKEN set it serves WeChat without Telegram.

Order matters and is kept in one function: policies and Redis first (a bad policy set or an absent
Redis stops the start with a reason), then the Bot API, then the HTTP server; on SIGTERM/SIGINT the
reverse: stop taking updates, finish those in hand, close Redis. Of the Bot API calls at start only
what the bot cannot run without is fatal: getMe (the token) and, in webhook mode, setWebhook; the
command menus failing is a warning (the bot works without them).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from telegram.error import InvalidToken, NetworkError, TelegramError

from bot import logs
from bot.channels.telegram import ALLOWED_UPDATES, add_webhook_route, build_application, register_commands
from bot.channels.telegram_polling import Poller
from bot.channels.wechat import add_wechat
from bot.config import Settings
from bot.http_app import build_app, probe_app
from bot.lifecycle import run_site, stop_event_on_signals
from bot.metrics import Metrics
from bot.notices.admin_api import add_admin_api
from bot.notices.jobs import BroadcastStore
from bot.notices.sending import BroadcastRunner, RateLimiter
from bot.notices.service import NoticeService
from bot.notices.subscriptions import Subscriptions
from bot.notices.telegram_admin import NoticeCommands
from bot.notices.telegram_sender import telegram_sender
from bot.runtime import StartError, open_runtime, reload_policies

log = logging.getLogger(__name__)

NO_TOKEN = ("yibao serve: neither TELEGRAM_BOT_TOKEN nor WECHAT_TOKEN is set. To try the bot without a "
            "messenger, run `yibao chat` (terminal) or `yibao web` (browser).")


async def run_serve(settings: Settings) -> int:
    if not settings.telegram_token and not settings.wechat_token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    logs.setup(settings.log_format, settings.log_level)
    logs.set_salt(settings.salt())
    if not settings.telegram_token:
        return await _serve_without_telegram(settings)
    polling = not settings.webhook_url
    async with open_runtime(settings) as runtime:
        metrics = Metrics()
        application, bridge = build_application(runtime, metrics)
        app = build_app(runtime, metrics)
        poller = Poller(application, bridge, ALLOWED_UPDATES) if polling else None
        if not polling:
            add_webhook_route(app, application, bridge, settings)
        notices, commands, runner = _notices(runtime, bridge, application, settings)
        await notices.subscriptions.migrate_legacy(sorted(runtime.policies.regions))
        if settings.admin_token:
            add_admin_api(app, notices, settings.admin_token.value)
        if settings.web_chat:
            from bot.channels.web import add_web_chat

            add_web_chat(app)
        if settings.wechat_token:
            add_wechat(app)
        try:
            await application.initialize()
        except InvalidToken:
            raise StartError("Telegram refused the token (TELEGRAM_BOT_TOKEN): check it with @BotFather") from None
        except NetworkError as bad:
            raise StartError(f"cannot reach the Bot API: {bad}") from None
        reloads: set[asyncio.Task] = set()

        def reload() -> None:  # SIGHUP
            task = asyncio.create_task(commands.reload_from_signal())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        stop = stop_event_on_signals({signal.SIGHUP: reload})
        broadcasting: asyncio.Task | None = None
        try:
            await _optional("the command menus", register_commands(application))
            await application.start()
            if poller is not None:
                await _required("deleteWebhook", poller.start())
                log.info("long polling for updates")
            else:
                await _required("setWebhook", application.bot.set_webhook(
                    settings.webhook_url, secret_token=settings.secret_token(), allowed_updates=ALLOWED_UPDATES))
                log.info("webhook registered")

            broadcasting = asyncio.create_task(runner.run(), name="broadcasts")

            async def stop_updates() -> None:
                runner.stop()  # no new claims; messages in flight finish and are recorded
                if poller is not None and poller.running:
                    await poller.stop()

            await run_site(app, settings.host, settings.port, stop, before_stop=stop_updates,
                           probes=_probes(runtime, metrics))
        finally:
            runner.stop()
            if broadcasting is not None:
                await broadcasting
            if poller is not None and poller.running:
                await poller.stop()
            if application.running:
                await application.stop()
            await application.shutdown()
    log.info("stopped")
    return 0


async def _serve_without_telegram(settings: Settings) -> int:
    """WeChat (and the web chat with WEB_CHAT) without a Telegram token: the HTTP server alone."""
    async with open_runtime(settings) as runtime:
        metrics = Metrics()
        app = build_app(runtime, metrics)
        add_wechat(app)
        if settings.web_chat:
            from bot.channels.web import add_web_chat

            add_web_chat(app)
        log.info("answering WeChat at %s", settings.wechat_path)
        stop = stop_event_on_signals({signal.SIGHUP: lambda: reload_policies(runtime)})
        await run_site(app, settings.host, settings.port, stop, probes=_probes(runtime, metrics))
    log.info("stopped")
    return 0


def _probes(runtime, metrics: Metrics):
    """/readyz and /metrics on METRICS_HOST:METRICS_PORT, when set."""
    app = probe_app(runtime, metrics)
    return None if app is None else (app, runtime.settings.metrics_host, runtime.settings.metrics_port)


async def _required(what: str, call) -> None:
    """A start-up call the bot cannot run without: its failure stops the start, with the reason."""
    try:
        await call
    except TelegramError as bad:
        raise StartError(f"the Bot API refused {what}: {bad.message}") from None


async def _optional(what: str, call) -> None:
    """A start-up call the bot works without: its failure is a warning, and the start goes on."""
    try:
        await call
    except TelegramError as bad:
        log.warning("could not set %s (the bot works without them): %s", what, bad.message)


def _notices(runtime, bridge, application, settings: Settings):
    """Subscriptions, broadcasts and the admin commands, wired to the dialogue and the Bot API."""
    subscriptions = Subscriptions(runtime.redis, runtime.store)
    broadcasts = BroadcastStore(runtime.redis)
    notices = NoticeService(runtime, subscriptions, broadcasts)
    commands = NoticeCommands(notices, bridge, settings.admin_ids)
    commands.add_to(application)
    runtime.effects["subscribe"] = commands.subscribe_effect
    runtime.effects["forget"] = commands.forget_effect
    runner = BroadcastRunner(broadcasts, RateLimiter(runtime.redis, settings.broadcast_rate),
                             telegram_sender(application.bot, settings.allow_paid_broadcast),
                             on_blocked=subscriptions.remove_chat, on_progress=commands.on_progress)
    return notices, commands, runner
