"""`yibao serve`: the Telegram bot, by long polling or by webhook, with the HTTP endpoints beside it.

Order matters and is kept in one function: policies and Redis first (a bad policy set or an absent
Redis stops the start with a reason), then the Bot API (commands menu, webhook), then the HTTP
server; on SIGTERM/SIGINT the reverse: stop taking updates, finish those in hand, close Redis.
"""

from __future__ import annotations

import logging
import sys

from telegram.error import InvalidToken, NetworkError, TelegramError

from bot import logs
from bot.config import Settings
from bot.metrics import Metrics
from bot.runtime import StartError, open_runtime
from bot.server import build_app
from bot.serving import run_site, stop_event_on_signals
from bot.telegram import ALLOWED_UPDATES, add_webhook_route, build_application, register_commands

log = logging.getLogger(__name__)

NO_TOKEN = ("yibao serve: TELEGRAM_BOT_TOKEN is not set. To try the bot without Telegram, run `yibao chat` "
            "(terminal) or `yibao web` (browser).")


async def run_serve(settings: Settings) -> int:
    if not settings.telegram_token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    logs.setup(settings.log_format, settings.log_level)
    logs.set_salt(settings.telegram_token.value)
    polling = not settings.webhook_url
    async with open_runtime(settings) as runtime:
        metrics = Metrics()
        application, _bridge = build_application(runtime, metrics, polling=polling)
        app = build_app(runtime, metrics)
        if not polling:
            add_webhook_route(app, application, settings)
        if settings.web_chat:
            from bot.web import add_web_chat

            add_web_chat(app)
        try:
            await application.initialize()
        except InvalidToken:
            raise StartError("Telegram refused the token (TELEGRAM_BOT_TOKEN): check it with @BotFather") from None
        except NetworkError as bad:
            raise StartError(f"cannot reach the Bot API: {bad}") from None
        stop = stop_event_on_signals()
        try:
            await register_commands(application)
            await application.start()
            if polling:
                await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
                log.info("long polling for updates")
            else:
                await application.bot.set_webhook(settings.webhook_url, secret_token=settings.secret_token(),
                                                  allowed_updates=ALLOWED_UPDATES)
                log.info("webhook registered")

            async def stop_updates() -> None:
                if polling and application.updater.running:
                    await application.updater.stop()

            await run_site(app, settings.host, settings.port, stop, before_stop=stop_updates)
        except TelegramError as bad:
            raise StartError(f"the Bot API refused a start-up call: {bad.message}") from None
        finally:
            if application.running:
                await application.stop()
            await application.shutdown()
    log.info("stopped")
    return 0
