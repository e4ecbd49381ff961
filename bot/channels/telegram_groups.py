"""Group chats: what the bot hears in a group, and who may change a group's subscriptions.

Many people and bots talk in a group; the bot takes part only in what is meant for it:

- a command addressed to it, `/start@ourbot`, or a plain `/start` (Telegram delivers that to the bots
  it concerns), never `/start@someotherbot`;
- a reply to one of its own messages (answering its question);
- a press of one of its own buttons.

Everything else — chatter, other bots' commands, members joining, photos — is ignored silently, before
any handler runs (`group_gate`, in the first handler group).

The answer quotes the message it answers (`reply_target`), so each person sees which is theirs.

A group's subscriptions belong to the group, so only its administrators change them (`may_manage`
asks Telegram with getChatMember; an anonymous administrator writes as the group itself).
"""

from __future__ import annotations

from telegram import Bot, Message, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

GROUPS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
MANAGERS = frozenset({ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR})
GATE_GROUP = -100  # before every other handler group


def command_target(message: Message) -> str | None:
    """For a message that is a command: the bot it names after '@' ('' for none); None otherwise."""
    entities = message.entities or ()
    if not message.text or not entities or entities[0].type != MessageEntity.BOT_COMMAND or entities[0].offset:
        return None
    command = message.text[: entities[0].length]
    return command.partition("@")[2]


def addressed_to_us(message: Message, username: str, bot_id: int) -> bool:
    """Whether a group message is meant for this bot (see the module docstring)."""
    target = command_target(message)
    if target is not None:
        return not target or target.lower() == username.lower()
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == bot_id)


async def _gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = update.effective_chat
    if chat is None or chat.type not in GROUPS or update.callback_query is not None:
        return
    message = update.message
    if message is None or not addressed_to_us(message, context.bot.username, context.bot.id):
        raise ApplicationHandlerStop  # not for us: no handler runs, nothing is answered


def group_gate() -> TypeHandler:
    """The handler that drops group updates not meant for the bot; add it in `GATE_GROUP`."""
    return TypeHandler(Update, _gate)


def reply_target(update: Update) -> ReplyParameters | None:
    """In a group the bot's answer quotes the message it answers: several people may be talking to it,
    and replying to its question is how a person answers there. None in a private chat."""
    chat, message = update.effective_chat, update.message
    if chat is None or chat.type not in GROUPS or message is None:
        return None
    return ReplyParameters(message.message_id, allow_sending_without_reply=True)


async def may_manage(bot: Bot, chat_id: int, user_id: int | None, sender_chat_id: int | None = None) -> bool:
    """Whether this person may change the chat's subscriptions: anyone in their own private chat, a
    group's owner and administrators in a group. Telegram trouble raises (the caller apologises)
    rather than refuse an administrator."""
    if chat_id > 0:  # a private chat (groups, supergroups and channels have negative ids)
        return True
    if sender_chat_id == chat_id:  # an anonymous administrator, writing as the group
        return True
    if user_id is None:
        return False
    member = await bot.get_chat_member(chat_id, user_id)
    return member.status in MANAGERS
