"""Builds the configured connector and plugs it into the app: the ticket service's mirror, the
outbox sender for platform "itsm", the periodic poll, and `POST /itsm/webhook` for `helpdesk serve`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.itsm.port import TicketSystem, WebhookRefused
from bot.itsm.sync import PLATFORM, ItsmSync
from bot.outbox.worker import Sender
from bot.settings import ItsmSettings, Settings

log = logging.getLogger("bot.itsm")

WEBHOOK_PATH = "/itsm/webhook"
MAX_WEBHOOK_BYTES = 1024 * 1024


def build_system(cfg: ItsmSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> TicketSystem:
    if cfg.system == "jira":
        from bot.itsm.jira import JiraServiceManagement

        return JiraServiceManagement(cfg, transport=transport)
    if cfg.system == "servicenow":
        from bot.itsm.servicenow import ServiceNow

        return ServiceNow(cfg, transport=transport)
    if cfg.system == "webhook":
        from bot.itsm.webhook import SignedWebhook

        return SignedWebhook(cfg, transport=transport)
    raise ValueError(f"no ticket system is configured (itsm.system is {cfg.system!r})")


def settings_problems(settings: Settings) -> list[str]:
    cfg = settings.itsm
    if not cfg.enabled:
        return []
    problems = []
    if not cfg.base_url:
        problems.append("itsm.base_url is not set")
    elif not cfg.base_url.startswith("https://") and not cfg.base_url.startswith("http://127.0.0.1"):
        problems.append("itsm.base_url must be https:// (credentials go there)")
    if cfg.system in ("jira", "servicenow") and (not cfg.user or cfg.token is None):
        problems.append("itsm.user and HELPDESK_ITSM__TOKEN are needed to sign in")
    if cfg.system == "jira" and not (cfg.service_desk_id and cfg.project_key):
        problems.append("itsm.service_desk_id and itsm.project_key are needed for Jira Service Management")
    return problems


def wire(app: Any, tickets: Any, *, transport: httpx.AsyncBaseTransport | None = None) -> ItsmSync | None:
    """Called by bot/app.py when itsm.system is set."""
    settings: Settings = app.settings
    if not settings.itsm.enabled:
        return None
    system = build_system(settings.itsm, transport=transport)
    sync = ItsmSync(settings, system, app.sessions, clock=app.clock)
    sync.tickets = tickets
    sync.on_commit = lambda: app.pipeline.on_commit() if app.pipeline.on_commit else None
    tickets.mirror = sync
    app.services[PLATFORM] = sync
    app.add_tick(sync.poll_if_due)
    app.on_close(system.aclose)
    return sync


def webhook_route(sync: ItsmSync) -> Route:
    async def receive(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
            return JSONResponse({"ok": False, "error": "too large"}, status_code=413)
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_WEBHOOK_BYTES:
                    return JSONResponse({"ok": False, "error": "too large"}, status_code=413)
        except ClientDisconnect:
            return JSONResponse({"ok": False}, status_code=400)
        try:
            webhook = sync.system.parse_webhook(dict(request.headers), body, sync.clock())
        except WebhookRefused as exc:
            log.warning("itsm webhook refused (%s): %s", exc.status, exc.reason)
            return JSONResponse({"ok": False, "error": exc.reason}, status_code=exc.status)
        applied = await sync.apply(webhook.changes, delivery_id=webhook.delivery_id)
        return JSONResponse({"ok": True, "applied": applied})

    return Route(WEBHOOK_PATH, receive, methods=["POST"], name="itsm_webhook")


class ItsmMount:
    """For `helpdesk serve` (bot/channels/serve.py MOUNTS): the webhook route and the sender."""

    name = "itsm"

    def __init__(self, sync: ItsmSync) -> None:
        self.sync = sync

    def routes(self) -> Sequence[BaseRoute]:
        return [webhook_route(self.sync)]

    def senders(self) -> dict[str, Sender]:
        return {PLATFORM: self.sync}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def mount(app: Any, settings: Settings) -> ItsmMount | None:
    sync = app.services.get(PLATFORM)
    return ItsmMount(sync) if sync is not None else None
