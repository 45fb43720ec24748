"""How `helpdesk serve` runs Slack: `POST /slack/events` (HTTP mode) or a Socket Mode connection."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.channels.slack.channel import SlackChannel
from bot.core.ports import Sender
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
    elif slack.mode == "socket" and slack.app_token and not slack.app_token.get_secret_value().startswith("xapp-"):
        missing.append("HELPDESK_SLACK__APP_TOKEN as an app-level token (xapp-..., not the bot token)")
    return missing


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


# What Bolt reads without checking, per payload type (a signed payload lacking them is a 400, not a
# KeyError and a 500): field -> the JSON type it must have.
_REQUIRED: dict[str, dict[str, type]] = {
    "event_callback": {"event": dict},
    "block_actions": {"user": dict, "actions": list},
    "interactive_message": {"user": dict, "actions": list},
    "view_submission": {"user": dict, "view": dict},
    "view_closed": {"user": dict, "view": dict},
    "message_action": {"user": dict},
    "shortcut": {"user": dict},
    "block_suggestion": {"user": dict},
}


def _shape_problem(payload: dict[str, Any]) -> tuple[int, str] | None:
    kind = payload.get("type")
    for name, expected in _REQUIRED.get(str(kind), {}).items():
        value = payload.get(name)
        if not isinstance(value, expected) or not value:
            return 400, f"{kind} without a usable {name}"
    if kind in ("block_actions", "interactive_message") and not isinstance(payload["actions"][0], dict):
        return 400, f"{kind} without a usable action"
    return None


def signed(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None) -> bool:
    """Slack's v0 request signature over the raw bytes (any bytes: slack_sdk's verifier decodes
    the body first and raises on invalid UTF-8), within the 5-minute replay window.

    The window is judged by the real clock, not the app's injected one: Slack stamps requests with
    its own (real) time, so a fake app clock must not make every genuine request look replayed."""
    if not _digits(timestamp) or abs((time.time() if now is None else now) - int(timestamp)) > 60 * 5:
        return False
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


class SlackMount:
    """The Slack channel as `serve` sees it: routes, senders, start and stop."""

    name = "slack"

    def __init__(self, app: Any, settings: Settings) -> None:
        self.settings = settings
        self.channel = SlackChannel(app, settings)
        app.services["slack"] = self.channel  # build_senders(settings, app) shares its client
        self._handler = AsyncSlackRequestHandler(self.channel.bolt)
        self._socket: Any = None
        self._connecting: asyncio.Task[None] | None = None

    def routes(self) -> list[Route]:
        if self.settings.slack.mode != "http":
            return []

        async def events(request: Request) -> Response:
            body = await request.body()  # at most server.max_body_bytes (serve.BodyLimit)
            problem = self._refuse(request, body)
            if problem is not None:
                status, reason = problem
                log.warning("slack request refused (%d): %s", status, reason)
                return PlainTextResponse(reason, status_code=status)
            try:
                response = await self._handler.handle(request)
            except Exception as exc:  # a signed payload our code could not take: one line, no 500
                log.warning("slack request not handled: %s", type(exc).__name__)
                return PlainTextResponse("Unsupported request", status_code=400)
            if response.status_code == 500:
                # Bolt's answer when a payload of a shape we do not know broke its own parsing
                # (our listeners never raise: a delivery not stored answers 503).
                log.warning("slack request not handled (a payload Bolt could not read)")
                return PlainTextResponse("Unsupported request", status_code=400)
            return response

        return [Route("/slack/events", events, methods=["POST"])]

    def _refuse(self, request: Request, body: bytes) -> tuple[int, str] | None:
        """Check what Bolt would otherwise choke on (500 and a traceback): the signature first
        (401, before the body is even decoded), then the shape (400)."""
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not _digits(timestamp.strip()):
            return 401, "Missing or invalid X-Slack-Request-Timestamp"
        secret = self.settings.slack.signing_secret
        if secret is not None and not signed(secret.get_secret_value(), timestamp.strip(), body, signature):
            return 401, "Invalid signature or stale request"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "Body is not UTF-8"
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json":
                data = json.loads(text) if text else None
                if not isinstance(data, dict):
                    return 400, "Body must be a JSON object"
                return _shape_problem(data)
            else:
                form = parse_qs(text, keep_blank_values=True)
                if "payload" in form:
                    payload = json.loads(form["payload"][0])
                    if not isinstance(payload, dict):
                        return 400, "payload must be a JSON object"
                    return _shape_problem(payload)
                elif "command" not in form and "ssl_check" not in form:
                    return 400, "Not a Slack request body"
        except ValueError:
            return 400, "Body is not valid JSON"
        return None

    def senders(self) -> dict[str, Sender]:
        return {"slack": self.channel.sender}

    async def start(self) -> None:
        self.channel.start_inbox()  # rows acknowledged before a restart, or left by another replica
        try:  # check the token once, and warm Bolt's cached auth.test
            auth = await self.channel.api.call("auth.test")
            log.info("slack connected", extra={"team": auth.get("team_id"), "bot_user": auth.get("user_id")})
        except Exception as exc:
            log.error("slack auth.test failed: %s", exc)
        if self.settings.slack.mode == "socket":
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            token = self.settings.slack.app_token.get_secret_value() if self.settings.slack.app_token else ""
            usable = await self._check_app_token(token)
            self._socket = AsyncSocketModeHandler(self.channel.bolt, token)
            if usable:
                await self._socket.connect_async()
                log.info("slack socket mode connected")
            else:
                # Slack could not be reached: slack_sdk keeps retrying; serving the other channels
                # and /healthz must not wait for it.
                self._connecting = asyncio.create_task(self._socket.connect_async(), name="slack-socket-connect")

    async def _check_app_token(self, token: str) -> bool:
        """One apps.connections.open before connecting: slack_sdk would retry a token Slack refuses
        every 10 s forever, and `serve` would never finish starting. A refused token stops start-up
        with a clear message; an unreachable Slack returns False (connect in the background)."""
        from bot.app import StartupError
        from bot.channels.slack.api import SlackUndeliverable

        try:
            async with asyncio.timeout(15):
                await self.channel.api.call("apps.connections.open", app_token=token)
        except SlackUndeliverable as exc:
            raise StartupError(
                f"Slack refused HELPDESK_SLACK__APP_TOKEN for Socket Mode ({exc.error or exc}): it must be an "
                "app-level token (xapp-...) with the connections:write scope; see docs/slack.md"
            ) from None
        except Exception as exc:  # unreachable, timed out, 5xx, rate limited: not the token's fault
            log.warning("slack socket mode: could not reach apps.connections.open (%s); connecting in the background",
                        type(exc).__name__)
            return False
        return True

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self._socket is not None:
            await self._socket.close_async()
        await self.channel.aclose()
