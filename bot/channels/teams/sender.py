"""The outbox sender for Teams: queue posts, card updates, relays, escalation and outage notices.

Delivery ids: the Bot Connector has no idempotency key, so right after the connector answers, the
activity id is written to `teams_activities` under the outbox row's idempotency key, and
`find_delivered` reads it back after an interrupted attempt. The remaining window is honest: a
crash between the connector's answer and that write (milliseconds) would send the message again.
Updates and deletes are idempotent and simply repeated.

Failures: 429/412/502/504 (and other 5xx, network) → `RetryLater`, with Retry-After honoured plus
jitter, otherwise the worker's exponential backoff with jitter; 403/404 → `Undeliverable` with the
reason ("not reachable on Teams: ... has not installed the app"), never retried.
"""

from __future__ import annotations

import logging
import random

from bot.channels.teams.connector import ConnectorError
from bot.channels.teams.delivery import Deliverer, Unreachable
from bot.core.models import Address, reply_from_json
from bot.core.ports import Delivery, RetryLater, Undeliverable

log = logging.getLogger("bot.teams.sender")


class TeamsSender:
    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer

    async def _activity_id(self, ref: str) -> str:
        """`update_ref` is the activity id, or the idempotency key the message was posted under."""
        return await self.deliverer.refs.delivered(ref) or ref

    async def send(self, delivery: Delivery) -> str | None:
        payload = delivery.payload
        kind = str(payload.get("kind") or "post")
        try:
            address = Address.from_json(dict(delivery.address))
            target = await self.deliverer.target(address)
            if kind == "post":
                reply = reply_from_json(payload.get("reply") or {})
                return await self.deliverer.post(target, reply, idempotency_key=delivery.idempotency_key)
            update_ref = payload.get("update_ref")
            if not update_ref:
                raise Undeliverable(f"a {kind} needs update_ref (the message to change)")
            activity_id = await self._activity_id(str(update_ref))
            if kind == "update":
                reply = reply_from_json(payload.get("reply") or {})
                return await self.deliverer.update(target, activity_id, reply)
            if kind == "delete":
                await self.deliverer.delete(target, activity_id)
                return activity_id
            raise Undeliverable(f"unknown outbox payload kind {kind!r}")
        except Unreachable as exc:
            raise Undeliverable(str(exc)) from None
        except ConnectorError as exc:
            if exc.transient:
                wait = exc.retry_after + random.uniform(0, 1) if exc.retry_after is not None else None
                raise RetryLater(str(exc), retry_after=wait) from None
            if exc.status == 404 and kind == "update":
                raise Undeliverable("the message to update no longer exists on Teams (404)") from None
            if exc.unreachable:
                raise Undeliverable(f"not reachable on Teams: {exc}") from None
            raise Undeliverable(str(exc)) from None

    async def find_delivered(self, delivery: Delivery) -> str | None:
        if str(delivery.payload.get("kind") or "post") != "post":
            return None
        return await self.deliverer.refs.delivered(delivery.idempotency_key)
