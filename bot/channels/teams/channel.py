"""The Teams channel: `POST /api/messages` in, Bot Connector calls out. It only translates.

Deadline: Teams wants an answer within a few seconds (the Bot Connector gives up after ~15 s). The
request is authenticated, parsed and answered at once (202; 200 with an invoke response for
`adaptiveCard/action`); the turn runs in a background task and its replies are sent through the
connector from the stored conversation reference. A turn still running after
`teams.interim_after_seconds` (a Graph action) gets a "working on it" message first.

Private replies (a temporary password) go only to the person's personal chat; in a channel the
thread gets a pointer to it instead, never the content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from microsoft_agents.activity import Activity
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.channels.teams.auth import RequestAuthenticator, Unauthorized
from bot.channels.teams.connector import ConnectorError, with_retries
from bot.channels.teams.delivery import Deliverer, Target, Unreachable
from bot.channels.teams.translate import Translated, split_thread, translate
from bot.core.models import Address, Incoming, Outbound, Platform, PlatformUser, Reply
from bot.core.pipeline import Pipeline, TurnResult, person_context

log = logging.getLogger("bot.teams")

INVOKE_MESSAGE = "application/vnd.microsoft.activity.message"
INVOKE_CARD = "application/vnd.microsoft.card.adaptive"


class TeamsChannel:
    def __init__(self, *, pipeline: Pipeline, deliverer: Deliverer, authenticator: RequestAuthenticator,
                 resolver: Any, app_name: str, interim_after: float = 4.0) -> None:
        self.pipeline = pipeline
        self.deliverer = deliverer
        self.refs = deliverer.refs
        self.renderer = deliverer.renderer
        self.authenticator = authenticator
        self.resolver = resolver
        self.app_name = app_name
        self.interim_after = interim_after
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----- HTTP ----------------------------------------------------------------------------

    async def handle_request(self, request: Request) -> Response:
        try:
            verified = await self.authenticator.authenticate(request.headers.get("authorization"))
        except Unauthorized as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        try:
            body = await request.json()
            activity = Activity.model_validate(body)
        except (ValueError, ValidationError):
            return JSONResponse({"error": "Invalid JSON or not an activity"}, status_code=400)
        try:
            # The raw strings, as the connector sent them (compared exactly, as the SDKs do).
            self.authenticator.bind(verified, channel_id=_text(body.get("channelId")),
                                    service_url=_text(body.get("serviceUrl")))
        except Unauthorized as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        if not activity.type or activity.conversation is None or not activity.conversation.id:
            return JSONResponse({"error": "Activity must have type and conversation.id"}, status_code=400)
        return await self.accept(activity)

    async def accept(self, activity: Activity) -> Response:
        translated = translate(activity)
        if translated.kind == "ignore" and activity.type == "message" and activity.conversation is not None:
            base, root = split_thread(str(activity.conversation.id))
            if root and await self.refs.is_bot_thread(base, root):
                translated = translate(activity, in_bot_thread=True)
        if activity.type == "invoke":
            return JSONResponse(await self._invoke_response(activity, translated), status_code=200)
        self.spawn(self.process(translated), name=f"teams-{activity.type}")
        return Response(status_code=202)

    async def _invoke_response(self, activity: Activity, translated: Translated) -> dict[str, Any]:
        if activity.name != "adaptiveCard/action":
            return {}
        if translated.kind == "refresh":
            if translated.ref is not None:
                await self.refs.remember(translated.ref)
            row = await self.refs.sent_activity(translated.message_ref) if translated.message_ref else None
            if row is not None and row.card and not row.deleted:
                return {"statusCode": 200, "type": INVOKE_CARD, "value": row.card}
            text = self.renderer.text(Platform.TEAMS, template="refresh_current", context={})
            return {"statusCode": 200, "type": INVOKE_MESSAGE, "value": text}
        self.spawn(self.process(translated), name="teams-invoke")
        return {"statusCode": 200, "type": INVOKE_MESSAGE,
                "value": self.renderer.text(Platform.TEAMS, template="working", context={})}

    # ----- background work -------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, seconds: float = 30.0) -> None:
        """Wait for every turn in flight (tests; graceful shutdown)."""
        async with asyncio.timeout(seconds):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.drain(seconds=10.0)
        for task in list(self._tasks):
            task.cancel()

    async def process(self, translated: Translated) -> None:
        try:
            if translated.ref is not None:
                # Hearing from a conversation means the bot is (again) in it.
                installed = {"installed": True, "turn": True, "uninstalled": False}.get(translated.kind)
                reason = "the app was removed" if translated.kind == "uninstalled" else None
                await self.refs.remember(translated.ref, installed=installed, reason=reason)
            if translated.kind == "installed":
                await self._welcome(translated)
            elif translated.kind == "turn" and translated.incoming is not None:
                await self._turn(translated)
        except Exception:
            log.exception("Teams activity could not be processed")

    async def _welcome(self, translated: Translated) -> None:
        ref = translated.ref
        if ref is None:
            return
        context: dict[str, Any] = {"app_name": self.app_name, "first_name": ""}
        if ref.conversation_type == "personal" and ref.user_id:
            user = PlatformUser(Platform.TEAMS, ref.user_id, aad_object_id=ref.aad_object_id)
            person = await self.resolver.resolve(user)
            if not await self.pipeline.record_once(
                    f"teams:installed:{ref.conversation_id}:{ref.user_id}", "teams_installed", person=person,
                    user=user, direct=Address(Platform.TEAMS, ref.conversation_id), scope="personal",
                    known=person is not None):
                return
            if person is not None:
                context["first_name"] = person_context(person)["first_name"]
            template = "welcome"
        else:
            if not await self.pipeline.record_once(
                    f"teams:installed:{ref.conversation_id}", "teams_installed",
                    scope=ref.conversation_type or "channel", conversation=ref.conversation_id):
                return
            template = "welcome_channel"
        text = self.renderer.text(Platform.TEAMS, template=template, context=context)
        target = Target(ref.service_url, ref.conversation_id, ref.conversation_id,
                        ref.conversation_type == "personal")
        await self._post(target, Reply(text=text, template=template))

    async def _turn(self, translated: Translated) -> None:
        incoming = translated.incoming
        ref = translated.ref
        assert incoming is not None and ref is not None
        here = await self.deliverer.target(incoming.reply_to)
        if incoming.text is not None:
            self.spawn(self.deliverer.connector.send_typing(here.service_url, here.conversation_id), "teams-typing")
        interim = asyncio.get_running_loop().call_later(
            self.interim_after, lambda: self.spawn(self._post(here, Reply(
                text=self.renderer.text(Platform.TEAMS, template="working", context={}))), "teams-interim"))
        try:
            result: TurnResult = await self.pipeline.handle(incoming)
        except Exception:
            log.exception("turn failed", extra={"conversation": incoming.conversation_key})
            text = self.renderer.text(Platform.TEAMS, template="error", context={})
            result = TurnResult(replies=[Outbound(incoming.reply_to, Reply(text=text))])
        finally:
            interim.cancel()
        for outbound in result.replies:
            await self._reply(incoming, here, outbound)

    async def _reply(self, incoming: Incoming, here: Target, outbound: Outbound) -> None:
        reply = outbound.reply
        try:
            same_place = outbound.address == incoming.reply_to
            target = here if same_place else await self.deliverer.target(outbound.address)
            if (reply.private or reply.secret) and not target.personal:
                await self._private(incoming, target, reply)
                return
            await self._post(target, reply)
        except Unreachable as exc:
            log.warning("reply not delivered: %s", exc, extra={"conversation": incoming.conversation_key})

    async def _private(self, incoming: Incoming, public: Target, reply: Reply) -> None:
        """Send a private reply to the person's personal chat; say so (without it) where they asked."""
        sender = incoming.sender
        name = sender.display_name.split()[0] if sender.display_name else "Hi"
        tenant = incoming.conversation_key.split(":")[1] if incoming.conversation_key.count(":") >= 2 else None
        try:
            personal = await self.deliverer.personal_target(aad_object_id=sender.aad_object_id,
                                                           user_id=sender.user_id,
                                                           tenant_id=tenant if tenant != "-" else None)
            await self._post(personal, reply)
            template = "private_elsewhere"
        except (Unreachable, ConnectorError) as exc:
            log.warning("private reply not delivered: %s", exc)
            template = "private_unreachable"
        text = self.renderer.text(Platform.TEAMS, template=template,
                                  context={"name": name, "app_name": self.app_name})
        await self._post(public, Reply(text=text, template=template))

    async def _post(self, target: Target, reply: Reply) -> str | None:
        try:
            return await with_retries(lambda: self.deliverer.post(target, reply))
        except ConnectorError as exc:
            log.warning("Teams message not delivered: %s", exc)
            return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
