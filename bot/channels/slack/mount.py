"""How `helpdesk serve` runs Slack: `POST /slack/events` (HTTP mode) or a Socket Mode connection."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.channels.slack.channel import SlackChannel
from bot.outbox.worker import Sender
from bot.settings import Settings

log = logging.getLogger("bot.slack")


def missing_settings(settings: Settings) -> list[str]:
    """Environment variables Slack needs in the configured mode and does not have."""
    slack = settings.slack
    missing = []
    if not slack.bot_token:
        missing.append("HELPDESK_SLACK__BOT_TOKEN")
    if slack.mode == "http" and not slack.signing_secret:
        missing.append("HELPDESK_SLACK__SIGNING_SECRET")
    if slack.mode == "socket" and not slack.app_token:
        missing.append("HELPDESK_SLACK__APP_TOKEN")
    return missing


class SlackMount:
    """The Slack channel as `serve` sees it: routes, senders, start and stop."""

    name = "slack"

    def __init__(self, app: Any, settings: Settings) -> None:
        self.settings = settings
        self.channel = SlackChannel(app, settings)
        app.services["slack"] = self.channel  # build_senders(settings, app) shares its client
        self._handler = AsyncSlackRequestHandler(self.channel.bolt)
        self._socket: Any = None

    def routes(self) -> list[Route]:
        if self.settings.slack.mode != "http":
            return []

        async def events(request: Request) -> Response:
            return await self._handler.handle(request)

        return [Route("/slack/events", events, methods=["POST"])]

    def senders(self) -> dict[str, Sender]:
        return {"slack": self.channel.sender}

    async def start(self) -> None:
        try:  # check the token once, and warm Bolt's cached auth.test
            auth = await self.channel.api.call("auth.test")
            log.info("slack connected", extra={"team": auth.get("team_id"), "bot_user": auth.get("user_id")})
        except Exception as exc:
            log.error("slack auth.test failed: %s", exc)
        if self.settings.slack.mode == "socket":
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            token = self.settings.slack.app_token.get_secret_value() if self.settings.slack.app_token else ""
            self._socket = AsyncSocketModeHandler(self.channel.bolt, token)
            await self._socket.connect_async()
            log.info("slack socket mode connected")

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
        await self.channel.aclose()
