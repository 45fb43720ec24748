"""Activities in, `Incoming` out: the only place that knows Teams' activity shapes.

- Personal chat: conversation key `teams:<tenant>:<conversation id>`, replies to the same chat.
- Channel (and group chat): the bot only hears messages that @mention it (plus, with the
  `ChannelMessage.Read.Group` permission, replies in threads the bot started: ticket cards). The
  mention is stripped; the reply goes to the thread (`<channel id>;messageid=<root id>`).
- Card buttons: `Action.Submit` arrives as a `message` whose `value` is the button's data;
  `Action.Execute` as an `invoke` named `adaptiveCard/action` with `value.action.verb/data`. Both
  carry `{"verb": ..., "value": ...}` and, for forms, the inputs as `f_<field name>`.
- The sender is the activity's `from`: Teams id and Entra object id, never anything typed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from microsoft_agents.activity import Activity

from bot.core.models import Action, Address, Incoming, Platform, PlatformUser

THREAD_MARK = ";messageid="
COMMAND_PREFIX = "/helpdesk"
FIELD_PREFIX = "f_"
VERB_CLICK = "click"
VERB_FORM = "form"
VERB_REFRESH = "refresh"


def split_thread(conversation_id: str) -> tuple[str, str | None]:
    """`19:c@thread.tacv2;messageid=123` -> (`19:c@thread.tacv2`, `123`)."""
    base, mark, thread = conversation_id.partition(THREAD_MARK)
    return base, (thread or None) if mark else None


def thread_conversation_id(conversation_id: str, thread_id: str | None) -> str:
    """The conversation id that posts into a channel thread."""
    if not thread_id:
        return conversation_id
    base, _ = split_thread(conversation_id)
    return f"{base}{THREAD_MARK}{thread_id}"


def conversation_key(tenant_id: str | None, conversation_id: str) -> str:
    return f"teams:{tenant_id or '-'}:{conversation_id}"


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """What a proactive message needs to reach a conversation later (JSON-able, no SDK types)."""

    conversation_id: str  # without any `;messageid=` thread suffix
    service_url: str
    tenant_id: str | None = None
    conversation_type: str | None = None  # personal | channel | groupChat
    bot_id: str | None = None
    user_id: str | None = None  # personal chats: the person's Teams id
    aad_object_id: str | None = None  # personal chats: the person's Entra object id
    team_id: str | None = None
    name: str | None = None


Kind = Literal["turn", "installed", "uninstalled", "refresh", "ignore"]


@dataclass(frozen=True, slots=True)
class Translated:
    kind: Kind
    ref: ConversationRef | None = None
    incoming: Incoming | None = None
    # For `refresh` invokes: the activity id of the card being refreshed.
    message_ref: str | None = None
    reason: str = ""


def tenant_of(activity: Activity) -> str | None:
    conversation = activity.conversation
    if conversation is not None and conversation.tenant_id:
        return str(conversation.tenant_id)
    data = _channel_data(activity)
    tenant = data.get("tenant")
    if isinstance(tenant, Mapping) and tenant.get("id"):
        return str(tenant["id"])
    return None


def _channel_data(activity: Activity) -> dict[str, Any]:
    data = activity.channel_data
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "model_dump"):
        dumped = data.model_dump(by_alias=True, exclude_none=True)
        return dumped if isinstance(dumped, dict) else {}
    return {}


def conversation_ref(activity: Activity) -> ConversationRef | None:
    conversation = activity.conversation
    if conversation is None or not conversation.id or not activity.service_url:
        return None
    base, _ = split_thread(str(conversation.id))
    kind = conversation.conversation_type or ("channel" if base.startswith("19:") and "@thread" in base else None)
    personal = kind == "personal"
    sender = activity.from_property
    team = _channel_data(activity).get("team")
    return ConversationRef(
        conversation_id=base,
        service_url=str(activity.service_url),
        tenant_id=tenant_of(activity),
        conversation_type=kind,
        bot_id=activity.recipient.id if activity.recipient is not None else None,
        user_id=sender.id if personal and sender is not None else None,
        aad_object_id=sender.aad_object_id if personal and sender is not None else None,
        team_id=str(team["id"]) if isinstance(team, Mapping) and team.get("id") else None,
        name=conversation.name,
    )


_AT = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)


def strip_mentions(text: str, activity: Activity) -> tuple[str, bool]:
    """Remove the bot's @mention; other mentions become the plain name. Returns (text, mentioned)."""
    bot_id = activity.recipient.id if activity.recipient is not None else None
    mentioned = False
    for entity in activity.entities or []:
        if str(getattr(entity, "type", "")).lower() not in {"mention", "entitytypes.mention"}:
            continue
        who = getattr(entity, "mentioned", None)
        if who is None and hasattr(entity, "model_extra"):
            who = (entity.model_extra or {}).get("mentioned")
        who_id = who.get("id") if isinstance(who, Mapping) else getattr(who, "id", None)
        if bot_id and who_id == bot_id:
            mentioned = True
            said = getattr(entity, "text", None) or ""
            if said:
                text = text.replace(said, " ")
    text = _AT.sub(lambda m: m.group(1), text)
    return " ".join(text.replace("\u00a0", " ").split()), mentioned


def parse_card_value(value: Any) -> tuple[str | None, str | None, tuple[tuple[str, str], ...]]:
    """Card data -> (verb, value, form values). Unknown shapes give (None, None, ())."""
    if not isinstance(value, Mapping):
        return None, None, ()
    verb = value.get("verb")
    chosen = value.get("value")
    fields = tuple(
        (key[len(FIELD_PREFIX):], "" if item is None else str(item))
        for key, item in value.items()
        if isinstance(key, str) and key.startswith(FIELD_PREFIX)
    )
    return (str(verb) if verb is not None else None), (str(chosen) if chosen is not None else None), fields


def _user(activity: Activity) -> PlatformUser | None:
    sender = activity.from_property
    if sender is None or not sender.id:
        return None
    return PlatformUser(platform=Platform.TEAMS, user_id=str(sender.id), aad_object_id=sender.aad_object_id,
                        display_name=sender.name or None)


def translate(activity: Activity, *, in_bot_thread: bool = False) -> Translated:
    """One activity -> what the channel should do with it.

    `in_bot_thread`: the message is a reply in a channel thread whose root the bot posted (a
    ticket card), so it is for the bot even without an @mention (the relay path)."""
    ref = conversation_ref(activity)
    kind = str(activity.type or "")
    sender = activity.from_property
    bot_id = activity.recipient.id if activity.recipient is not None else None
    if sender is not None and bot_id and sender.id == bot_id:
        return Translated("ignore", ref, reason="the bot's own activity")
    if kind == "conversationUpdate":
        if bot_id and any(m.id == bot_id for m in activity.members_added or []):
            return Translated("installed", ref)
        if bot_id and any(m.id == bot_id for m in activity.members_removed or []):
            return Translated("uninstalled", ref)
        return Translated("ignore", ref, reason="membership change")
    if kind == "installationUpdate":
        update_action = str(activity.action or "")
        if update_action.startswith("add"):
            return Translated("installed", ref)
        if update_action.startswith("remove"):
            return Translated("uninstalled", ref)
        return Translated("ignore", ref, reason=f"installationUpdate {update_action}")
    if kind == "messageReaction":
        return Translated("ignore", ref, reason="reaction")
    user = _user(activity)
    if user is None or activity.conversation is None or ref is None:
        return Translated("ignore", ref, reason="no sender or conversation")
    conversation_id = str(activity.conversation.id)
    base, thread = split_thread(conversation_id)
    personal = ref.conversation_type == "personal"
    reply_to = Address(Platform.TEAMS, base, thread_id=thread)
    event_id = f"{conversation_id}|{activity.id or ''}"
    common: dict[str, Any] = {
        "platform": Platform.TEAMS,
        "conversation_key": conversation_key(ref.tenant_id, conversation_id),
        "sender": user,
        "event_id": event_id,
        "reply_to": reply_to,
        "received_at": activity.timestamp,
        "is_direct": personal,
    }
    message_ref = _card_message_ref(activity)
    if kind == "invoke":
        if activity.name != "adaptiveCard/action" or not isinstance(activity.value, Mapping):
            return Translated("ignore", ref, reason=f"invoke {activity.name}")
        invoked = activity.value.get("action")
        action: Mapping[str, Any] = invoked if isinstance(invoked, Mapping) else {}
        data: dict[str, Any] = dict(action.get("data") or {})
        if str(action.get("verb") or data.get("verb") or "") == VERB_REFRESH:
            return Translated("refresh", ref, message_ref=message_ref)
        _, value, fields = parse_card_value(data)
        if not value:
            return Translated("ignore", ref, reason="card action without a value")
        return Translated("turn", ref, Incoming(
            **common, action=Action(value=value, form_values=fields, message_ref=message_ref)))
    if kind != "message":
        return Translated("ignore", ref, reason=f"activity type {kind}")
    _, value, fields = parse_card_value(activity.value)
    if value is not None:
        return Translated("turn", ref, Incoming(
            **common, action=Action(value=value, form_values=fields, message_ref=message_ref)))
    text, mentioned = strip_mentions(str(activity.text or ""), activity)
    if not personal and not mentioned and not in_bot_thread:
        return Translated("ignore", ref, reason="channel message not addressed to the bot")
    if not text and not (personal or mentioned):
        return Translated("ignore", ref, reason="empty message")
    command = None
    if text.lower() == COMMAND_PREFIX or text.lower().startswith(COMMAND_PREFIX + " "):
        command = text[len(COMMAND_PREFIX):].strip()
    return Translated("turn", ref, Incoming(**common, text=text, command=command))


def _card_message_ref(activity: Activity) -> str | None:
    """The id of the message whose card was clicked."""
    if activity.reply_to_id:
        return str(activity.reply_to_id)
    legacy = _channel_data(activity).get("legacy")
    if isinstance(legacy, Mapping) and legacy.get("replyToId"):
        return str(legacy["replyToId"])
    return None
