"""Slack payloads → platform-neutral turns. Pure functions over the JSON Slack sends.

`parse_*` return an `Inbound` (what happened, where, who) or None for things the bot ignores
(its own messages, edits, joins, other bots...). `to_incoming` adds the identity, which needs a
`users.info` call and is therefore done after the ack.

Conversation keys:
- a direct message: `slack:<team>:<D channel>`; a thread in a DM stays the same conversation;
- a mention in a channel: `slack:<team>:<channel>:<thread_ts or ts>`, answered in that thread;
- `/helpdesk`, the message shortcut and Home-tab buttons belong to the person's DM with the bot
  (opened with conversations.open when the payload does not name it), so a flow started there
  continues there;
- a reply in a thread of the queue channel (a technician talking to an employee through a ticket)
  is forwarded with `reply_to.thread_id` set, for the tickets relay.

Conventions (documented in docs/slack.md):
- `/helpdesk <text>` → `Incoming.command = <text>` (`help` when empty), `text = "/helpdesk <text>"`;
- the message shortcut "Open a help desk ticket from this message" →
  `command = "open-from-message <permalink>"`, `text` = the message's text;
- a button value `cmd:<command>` (Home tab quick actions) → `Incoming.command = <command>`;
- a form submitted in a modal → `Action(value="form:<form_id>", form_values=...)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bot.core.models import Action, Address, Incoming, Platform, PlatformUser

COMMAND = "/helpdesk"
SHORTCUT_CALLBACK = "open_ticket_from_message"
SHORTCUT_COMMAND = "open-from-message"
V_COMMAND = "cmd:"

# Message subtypes that are a person writing; everything else (edits, deletions, joins, topic
# changes, bot messages...) is ignored.
PERSON_SUBTYPES = frozenset({None, "", "file_share", "thread_broadcast"})


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing a person did on Slack, parsed, before identity is known."""

    kind: str  # dm | mention | relay | command | action | view | shortcut
    team: str
    user_id: str
    event_id: str
    channel: str | None = None  # where it happened (None: Home tab, global surfaces)
    thread_ts: str | None = None  # the thread to answer in
    text: str | None = None
    command: str | None = None
    action: Action | None = None
    trigger_id: str | None = None
    # True when the conversation is the person's DM with the bot but the payload does not say
    # which channel that is (commands from a channel, Home buttons, shortcuts).
    needs_dm: bool = False
    received_ts: str | None = None


def inbound_to_json(inbound: Inbound) -> dict[str, Any]:
    """What the inbox stores of a delivery (plain JSON; `inbound_from_json` reverses it)."""
    data = asdict(inbound)
    if inbound.action is not None:
        data["action"] = {"value": inbound.action.value, "form_values": [list(p) for p in inbound.action.form_values],
                          "message_ref": inbound.action.message_ref}
    return data


def inbound_from_json(data: Mapping[str, Any]) -> Inbound:
    values = dict(data)
    action = values.pop("action", None)
    known = {f.name for f in fields(Inbound)}
    inbound = Inbound(**{k: v for k, v in values.items() if k in known and k != "action"})
    if isinstance(action, Mapping):
        inbound = replace(inbound, action=Action(
            value=str(action.get("value") or ""),
            form_values=tuple((str(k), str(v)) for k, v in action.get("form_values") or ()),
            message_ref=action.get("message_ref")))
    return inbound


def _team(body: Mapping[str, Any]) -> str:
    team = body.get("team")
    if isinstance(team, Mapping):
        return str(team.get("id") or "")
    return str(body.get("team_id") or team or "")


def is_dm(channel: str | None) -> bool:
    return bool(channel) and str(channel).startswith("D")


def mentions(text: str, user_id: str | None) -> bool:
    return bool(user_id) and f"<@{user_id}>" in text


def unescape(text: str) -> str:
    """Slack's three entities (`&amp;`, `&lt;`, `&gt;`) back to what the person typed, once, here at
    the adapter; the renderer escapes once where the text lands."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_mention(text: str, user_id: str | None) -> str:
    if user_id:
        text = text.replace(f"<@{user_id}>", " ")
    return re.sub(r"\s+", " ", text).strip()


def event_key(body: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    """The dedup key of an event: Slack's `event_id`, else the message's `client_msg_id`, else one
    that names the person and the place (`event_ts` alone is not unique across channels and
    people), else a digest of the event itself: two people's messages never share a key, and a
    redelivery of the same event keeps its own."""
    found = body.get("event_id") or event.get("client_msg_id")
    if found:
        return str(found)
    stamp = event.get("event_ts") or event.get("ts")
    if stamp:
        return f"ts:{event.get('channel') or ''}:{event.get('user') or ''}:{stamp}"
    digest = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"sha:{digest}"


def parse_event(body: Mapping[str, Any], *, bot_user_id: str | None = None, bot_id: str | None = None,
                relay_channels: frozenset[str] = frozenset()) -> Inbound | None:
    event = body.get("event")
    if not isinstance(event, Mapping):
        return None
    team = str(body.get("team_id") or event.get("team") or "")
    kind = event.get("type")
    user = event.get("user")
    event_id = event_key(body, event)
    if not user or event.get("bot_id") or event.get("bot_profile"):
        return None  # bots, including this one, never start a turn
    if bot_user_id and user == bot_user_id:
        return None
    text = str(event.get("text") or "")
    channel = str(event.get("channel") or "")
    ts = str(event.get("ts") or event.get("event_ts") or "")
    thread_ts = event.get("thread_ts")
    if kind == "app_mention":
        if is_dm(channel):
            return None  # DMs arrive as message.im as well
        return Inbound("mention", team, str(user), event_id, channel=channel, thread_ts=str(thread_ts or ts),
                       text=unescape(strip_mention(text, bot_user_id)), received_ts=ts)
    if kind != "message" or event.get("subtype") not in PERSON_SUBTYPES or event.get("hidden"):
        return None
    if event.get("channel_type") == "im" or is_dm(channel):
        if event.get("subtype") == "thread_broadcast":
            return None
        return Inbound("dm", team, str(user), event_id, channel=channel,
                       thread_ts=str(thread_ts) if thread_ts else None, text=unescape(text), received_ts=ts)
    # In channels only thread replies in the queue channel(s) matter (the ticket relay); a
    # message that mentions the bot is handled through its app_mention event instead.
    if channel in relay_channels and thread_ts and thread_ts != ts and not mentions(text, bot_user_id):
        return Inbound("relay", team, str(user), event_id, channel=channel, thread_ts=str(thread_ts),
                       text=unescape(text), received_ts=ts)
    return None


def parse_command(body: Mapping[str, Any]) -> Inbound:
    text = unescape(str(body.get("text") or "")).strip()
    channel = str(body.get("channel_id") or "")
    trigger = str(body.get("trigger_id") or "")
    return Inbound("command", _team(body), str(body.get("user_id") or ""), f"command:{trigger}",
                   channel=channel or None, text=f"{COMMAND} {text}".strip(), command=text or "help",
                   trigger_id=trigger, needs_dm=not is_dm(channel))


def permalink(body: Mapping[str, Any], channel: str, ts: str) -> str:
    team = body.get("team")
    domain = team.get("domain") if isinstance(team, Mapping) else None
    host = f"https://{domain}.slack.com" if domain else "https://slack.com"
    return f"{host}/archives/{channel}/p{ts.replace('.', '')}"


def parse_shortcut(body: Mapping[str, Any]) -> Inbound | None:
    """The message shortcut: open a ticket from someone's message (channel or DM)."""
    user = body.get("user") or {}
    channel = str((body.get("channel") or {}).get("id") or "")
    message = body.get("message") or {}
    ts = str(message.get("ts") or body.get("message_ts") or "")
    if not user.get("id") or not channel or not ts:
        return None
    trigger = str(body.get("trigger_id") or "")
    return Inbound("shortcut", _team(body), str(user["id"]), f"shortcut:{trigger or ts}", channel=channel,
                   text=unescape(str(message.get("text") or "")),
                   command=f"{SHORTCUT_COMMAND} {permalink(body, channel, ts)}", trigger_id=trigger,
                   needs_dm=True)


def parse_block_action(body: Mapping[str, Any], value: str) -> Inbound | None:
    """A button click; `value` is the clicked button's value (after resolving long-value refs)."""
    user = body.get("user") or {}
    actions = body.get("actions") or []
    if not user.get("id") or not actions:
        return None
    first = actions[0]
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "") or None
    message_ts = str(container.get("message_ts") or message.get("ts") or "") or None
    stamp = message_ts or str(container.get("view_id") or "")
    event_id = f"action:{stamp}:{first.get('action_ts') or body.get('trigger_id')}"
    team = _team(body)
    trigger = str(body.get("trigger_id") or "")
    if value.startswith(V_COMMAND):
        command = value.removeprefix(V_COMMAND).strip()
        return Inbound("command", team, str(user["id"]), event_id, channel=channel, text=f"{COMMAND} {command}",
                       command=command, trigger_id=trigger, needs_dm=not is_dm(channel))
    thread = thread_of(container, message)
    action = Action(value=value, message_ref=message_ts)
    if channel is None:  # the Home tab or a modal: the person's DM
        return Inbound("action", team, str(user["id"]), event_id, action=action, trigger_id=trigger, needs_dm=True)
    return Inbound("action", team, str(user["id"]), event_id, channel=channel,
                   thread_ts=None if is_dm(channel) else thread, action=action, trigger_id=trigger)


def thread_of(container: Mapping[str, Any], message: Mapping[str, Any]) -> str | None:
    """The thread a click belongs to: the message's thread, or the clicked message itself. An
    ephemeral message (a private reply, a "Fill in the form" prompt) is not a message anyone can
    thread on; its thread is the one it was posted in, if any (`container.thread_ts`)."""
    if container.get("is_ephemeral"):
        return str(container.get("thread_ts") or message.get("thread_ts") or "") or None
    return str(message.get("thread_ts") or container.get("message_ts") or message.get("ts") or "") or None


def modal_metadata(channel: str | None, thread_ts: str | None) -> str:
    """What a form modal remembers about the conversation it belongs to."""
    return json.dumps({"c": channel, "t": thread_ts}, separators=(",", ":"))


def form_values(state: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """view.state.values → (field, answer) pairs; our blocks use the field name as action_id."""
    pairs: list[tuple[str, str]] = []
    for block in (state.get("values") or {}).values():
        for action_id, element in (block or {}).items():
            kind = element.get("type")
            if kind in ("static_select", "radio_buttons", "external_select"):
                value = (element.get("selected_option") or {}).get("value")
            elif kind in ("multi_static_select", "checkboxes"):
                value = ",".join(o.get("value", "") for o in element.get("selected_options") or [])
            elif kind == "datepicker":
                value = element.get("selected_date")
            elif kind == "users_select":
                value = element.get("selected_user")
            else:
                value = element.get("value")
            pairs.append((str(action_id), str(value or "")))
    return tuple(pairs)


def parse_view_submission(body: Mapping[str, Any]) -> Inbound | None:
    user = body.get("user") or {}
    view = body.get("view") or {}
    if not user.get("id") or not view:
        return None
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    channel = meta.get("c")
    thread = meta.get("t")
    action = Action(value=f"form:{view.get('callback_id') or ''}", form_values=form_values(view.get("state") or {}))
    event_id = f"view:{view.get('id')}:{body.get('trigger_id') or view.get('hash')}"
    return Inbound("view", _team(body), str(user["id"]), event_id, channel=channel or None,
                   thread_ts=thread if channel and not is_dm(channel) else None, action=action,
                   needs_dm=not channel)


def conversation_key(inbound: Inbound, channel: str) -> str:
    if is_dm(channel) or not inbound.thread_ts:
        return f"slack:{inbound.team}:{channel}"
    return f"slack:{inbound.team}:{channel}:{inbound.thread_ts}"


def to_incoming(inbound: Inbound, user: PlatformUser, *, dm_channel: str | None = None) -> Incoming:
    """The neutral turn. `dm_channel` is the person's DM with the bot when `needs_dm`."""
    channel = dm_channel if inbound.needs_dm and dm_channel else (inbound.channel or dm_channel or "")
    thread = None if inbound.needs_dm else inbound.thread_ts
    if is_dm(channel) and inbound.kind != "dm":
        thread = None
    direct = is_dm(channel)
    probe = Inbound(inbound.kind, inbound.team, inbound.user_id, inbound.event_id, channel=channel,
                    thread_ts=None if direct else thread)
    return Incoming(
        platform=Platform.SLACK,
        conversation_key=conversation_key(probe, channel),
        sender=user,
        event_id=inbound.event_id,
        reply_to=Address(Platform.SLACK, channel, thread_id=thread),
        text=inbound.text,
        action=inbound.action,
        is_direct=direct,
        command=inbound.command,
        # A person's DM is learnt only from conversations.open for that person (at send time),
        # never from the channel an incoming payload names.
        direct_to=Address(Platform.SLACK, user.user_id),
    )
