"""Sending to Slack: the outbox `SlackSender` (messages that must arrive, including the answers to
the person who just wrote) and `ReplySender` (answers sent right after the turn commits: turns that
show a secret, which is never written to the outbox, and "something went wrong").

Both share the process's `SlackApi` (one pacer, one 429 pause per channel).

Idempotency: every outbox post carries message metadata `{"event_type": "helpdesk_outbox",
"event_payload": {"key": <idempotency key>}}`; after an interrupted attempt `find_delivered` looks
for that key in the channel's (or thread's) recent messages, so a crash between the Slack call and
the database update never posts twice.

Privacy: a direct message is already private, so private replies and secrets go there as normal
messages. In a channel, a private reply is an ephemeral message to its owner; a secret (a temporary
password) never goes to a channel at all: it is sent to the person's DM with the bot, with an
ephemeral pointer in the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bot.channels.slack.api import SlackApi, SlackUndeliverable
from bot.channels.slack.blocks import BlockKit
from bot.channels.slack.translate import is_dm
from bot.core.models import Address, Outbound, Platform, Reply, reply_from_json
from bot.core.ports import Delivery, RetryLater, Undeliverable
from bot.render.renderer import Renderer

log = logging.getLogger("bot.slack.send")

METADATA_EVENT = "helpdesk_outbox"


def split_ref(ref: str, channel: str) -> tuple[str, str]:
    """A message reference is a Slack `ts`, or `<channel>:<ts>` when it names its channel."""
    if ":" in ref:
        head, ts = ref.split(":", 1)
        return head, ts
    return channel, ref


class Directory:
    """Slack user ↔ channel lookups the senders need, cached for the process's life."""

    def __init__(self, api: SlackApi) -> None:
        self.api = api
        self._dm: dict[str, str] = {}
        self._by_email: dict[str, str] = {}

    def known_dm(self, user_id: str) -> str | None:
        return self._dm.get(user_id)

    def remember_dm(self, user_id: str, channel: str) -> None:
        if channel.startswith("D"):
            self._dm[user_id] = channel

    async def dm_channel(self, user_id: str) -> str:
        channel = self._dm.get(user_id)
        if channel is None:
            data = await self.api.call_soon("conversations.open", users=user_id)
            channel = str((data.get("channel") or {}).get("id") or "")
            if not channel:
                raise SlackUndeliverable(f"conversations.open gave no channel for {user_id}")
            self._dm[user_id] = channel
        return channel

    async def user_by_email(self, email: str) -> str:
        user = self._by_email.get(email.lower())
        if user is None:
            data = await self.api.call("users.lookupByEmail", email=email)
            user = str((data.get("user") or {}).get("id") or "")
            if not user:
                raise SlackUndeliverable(f"no Slack user for {email}", error="users_not_found")
            self._by_email[email.lower()] = user
        return user

    async def channel_for(self, conversation_id: str) -> str:
        """`email:<addr>` and bare user ids become the person's DM channel."""
        if conversation_id.startswith("email:"):
            return await self.dm_channel(await self.user_by_email(conversation_id.removeprefix("email:")))
        if conversation_id[:1] in ("U", "W"):
            return await self.dm_channel(conversation_id)
        return conversation_id


def _message_params(message: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"text": message.get("text") or " "}
    if message.get("blocks"):
        params["blocks"] = message["blocks"]
    return params


class SlackSender:
    """The outbox Sender for Slack: post, update (`chat.update`), delete; finds earlier deliveries."""

    def __init__(self, api: SlackApi, blocks: BlockKit, directory: Directory | None = None) -> None:
        self.api = api
        self.blocks = blocks
        self.directory = directory or Directory(api)

    async def send(self, delivery: Delivery) -> str | None:
        payload = delivery.payload
        kind = str(payload.get("kind") or "post")
        address = Address.from_json(dict(delivery.address))
        reply: Reply = reply_from_json(payload.get("reply") or {})
        target_user = address.conversation_id if address.conversation_id[:1] in ("U", "W") else ""
        if kind == "post" and target_user and not address.user_id and not address.thread_id \
                and self.directory.known_dm(target_user) is None:
            # chat.postMessage to a user id lands in their DM with the bot and answers with the DM's
            # id: a broadcast to channel members needs no conversations.open (a Tier 3 method, ~50
            # a minute) per recipient.
            channel = target_user
        else:
            channel = await self.directory.channel_for(address.conversation_id)
        message = self.blocks.message(reply)
        if kind in ("update", "delete"):
            ref = str(payload.get("update_ref") or "")
            if not ref:
                raise Undeliverable(f"{kind} without update_ref")
            target, ts = split_ref(ref, channel)
            if kind == "delete":
                try:
                    await self.api.call("chat.delete", channel=target, ts=ts)
                except SlackUndeliverable as exc:
                    if exc.error != "message_not_found":  # already gone: that is what we wanted
                        raise
                return ts
            await self.api.call("chat.update", channel=target, ts=ts, **_message_params(message))
            return ts
        params = _message_params(message)
        if address.thread_id:
            params["thread_ts"] = address.thread_id
        if address.user_id and not is_dm(channel):
            data = await self.api.call("chat.postEphemeral", channel=channel, user=address.user_id, **params)
            return str(data.get("message_ts") or "") or None
        data = await self.api.call(
            "chat.postMessage", channel=channel, unfurl_links=False, unfurl_media=False,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": delivery.idempotency_key}},
            **params)
        if channel == target_user:
            self.directory.remember_dm(target_user, str(data.get("channel") or ""))
        return str(data.get("ts") or "") or None

    async def find_delivered(self, delivery: Delivery) -> str | None:
        if str(delivery.payload.get("kind") or "post") != "post":
            return None  # edits and deletions are safe to repeat
        address = Address.from_json(dict(delivery.address))
        if address.user_id:
            return None  # ephemeral messages cannot be looked up
        try:
            channel = await self.directory.channel_for(address.conversation_id)
            if address.thread_id:
                data = await self.api.call("conversations.replies", channel=channel, ts=address.thread_id,
                                           limit=100, include_all_metadata=True)
            else:
                data = await self.api.call("conversations.history", channel=channel, limit=50,
                                           include_all_metadata=True)
        except SlackUndeliverable:
            return None  # cannot look: sending will tell whether the channel is usable
        for message in data.get("messages") or []:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == METADATA_EVENT and \
                    (meta.get("event_payload") or {}).get("key") == delivery.idempotency_key:
                return str(message.get("ts"))
        return None


class ReplySender:
    """Answers the person who just wrote, outside the outbox (the turn is already committed)."""

    def __init__(self, api: SlackApi, blocks: BlockKit, renderer: Renderer, directory: Directory) -> None:
        self.api = api
        self.blocks = blocks
        self.renderer = renderer
        self.directory = directory

    async def send(self, replies: Sequence[Outbound], *, sender_user: str) -> int:
        """Send in order; returns how many arrived. Failures are logged, never raised."""
        sent = 0
        for outbound in replies:
            try:
                await self.send_one(outbound, sender_user=sender_user)
                sent += 1
            except (RetryLater, Undeliverable) as exc:
                # Never log the reply itself: it may be a secret.
                log.warning("reply not delivered: %s", exc, extra={"secret": outbound.reply.secret})
            except Exception:
                log.exception("reply not delivered", extra={"secret": outbound.reply.secret})
        return sent

    async def send_one(self, outbound: Outbound, *, sender_user: str) -> None:
        address, reply = outbound.address, outbound.reply
        if address.platform is not Platform.SLACK:
            raise Undeliverable(f"not a Slack address: {address.platform}")
        channel = await self.directory.channel_for(address.conversation_id)
        owner = address.user_id or sender_user
        message = self.blocks.message(reply)
        params = _message_params(message)
        if reply.secret:
            # A secret goes only to its owner's own DM, as conversations.open names it, whatever
            # channel the turn came from.
            dm = await self.directory.dm_channel(owner)
            await self.api.call_soon("chat.postMessage", channel=dm, unfurl_links=False, **params)
            if dm != channel and not is_dm(channel):
                pointer = self.renderer.text(Platform.SLACK, template="secret_sent_to_dm", context={})
                extra: dict[str, Any] = {"thread_ts": address.thread_id} if address.thread_id else {}
                await self.api.call_soon("chat.postEphemeral", channel=channel, user=owner, text=pointer, **extra)
            return
        if address.thread_id:
            params["thread_ts"] = address.thread_id
        if (reply.private or address.user_id) and not is_dm(channel):
            await self.api.call_soon("chat.postEphemeral", channel=channel, user=owner, **params)
            return
        await self.api.call_soon("chat.postMessage", channel=channel, unfurl_links=False, unfurl_media=False,
                                 **params)
