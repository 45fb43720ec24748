"""A generic outbound webhook: signed JSON on each ticket event, for any other system.

Each POST carries `X-Helpdesk-Delivery` (stable across retries: the receiver drops repeats, which
makes at-least-once delivery exactly-once), `X-Helpdesk-Timestamp`, and
`X-Helpdesk-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with
HELPDESK_ITSM__WEBHOOK_SECRET. Outbound only: nothing comes back this way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from bot.itsm.http import call, sign
from bot.itsm.port import OPEN, CheckLine, NewRecord, RemoteChange, RemoteRecord, Webhook, WebhookRefused
from bot.settings import ItsmSettings


class SignedWebhook:
    name = "webhook"

    def __init__(self, cfg: ItsmSettings, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Any = time.time) -> None:
        self.cfg = cfg
        self.secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret else ""
        self.client = httpx.AsyncClient(transport=transport, timeout=cfg.timeout_seconds)
        # Real epoch seconds by default, not the app's injected clock: the receiver checks this stamp
        # against its own real clock (a replay window), so a fake app clock would get us refused.
        self.clock = clock
        self.delivery_id = ""  # set by the sender for each call: the outbox row's idempotency key

    async def aclose(self) -> None:
        await self.client.aclose()

    async def post(self, event: str, data: Mapping[str, Any]) -> None:
        stamp = str(int(self.clock()))
        body = json.dumps({"event": event, "id": self.delivery_id, **data}, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Helpdesk-Delivery": self.delivery_id,
                   "X-Helpdesk-Timestamp": stamp, "X-Helpdesk-Event": event}
        if self.secret:
            headers["X-Helpdesk-Signature"] = "sha256=" + sign(self.secret, stamp.encode() + b"." + body)
        await call(self.client, "webhook", "POST", self.cfg.base_url, content=body, headers=headers,
                   ok=(200, 201, 202, 204))

    async def create(self, record: NewRecord) -> RemoteRecord:
        await self.post("ticket.created", {"ticket": {
            "id": record.ref, "category": record.category, "priority": record.priority, "summary": record.summary,
            "description": record.description, "requester": {"email": record.requester_email,
                                                             "name": record.requester_name}}})
        return RemoteRecord(record.ref, record.ref)

    async def find(self, ref: str) -> RemoteRecord | None:
        return None  # the receiver drops the repeat by X-Helpdesk-Delivery

    async def comment(self, remote_id: str, text: str, *, public: bool) -> str:
        await self.post("ticket.comment", {"ticket": {"id": remote_id}, "comment": {"text": text, "public": public}})
        return self.delivery_id

    async def find_comment(self, remote_id: str, marker: str) -> str | None:
        return None

    async def get_status(self, remote_id: str) -> str:
        return OPEN

    async def set_status(self, remote_id: str, status: str, note: str) -> None:
        event = "ticket.resolved" if status == "resolved" else "ticket.reopened"
        await self.post(event, {"ticket": {"id": remote_id}, "note": note})

    async def changed_since(self, since: datetime, now: datetime) -> list[RemoteChange]:
        return []

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> Webhook:
        raise WebhookRefused(404, "the generic webhook connector is outbound only")

    async def check(self) -> list[CheckLine]:
        lines = [CheckLine(bool(self.cfg.base_url.startswith("https://")), "target",
                           self.cfg.base_url or "itsm.base_url is not set")]
        if not self.secret:
            lines.append(CheckLine(False, "signature", "HELPDESK_ITSM__WEBHOOK_SECRET is not set: the receiver "
                                                       "cannot tell our posts from anyone's"))
        try:
            self.delivery_id = "check"
            await self.post("ping", {})
            lines.append(CheckLine(True, "delivery", "the receiver accepted a signed ping"))
        except Exception as exc:
            lines.append(CheckLine(False, "delivery", str(exc)))
        return lines
