"""The Slack channel: a Bolt `AsyncApp` that stores each delivery, acknowledges, then does the work.

Every request is checked (signature, 5-minute replay window → 401; see mount.py for the shape
checks), and our listeners parse the payload and commit it to the inbox (bot/store/inbox.py) BEFORE
Bolt answers (`process_before_response=True`: the ack goes when our listener returns). The turn then
runs in a task the channel keeps a reference to, from the inbox row; its replies are outbox rows of
the turn's transaction (`Pipeline.durable_replies`). Rows left by a stopped process or another
replica are claimed by `start_inbox` (started by `serve`). No Slack call sits on the ack path (the
one exception is Bolt's own `auth.test`, made once per process and cached); one small insert does.

Duplicate deliveries (Slack retries with `X-Slack-Retry-Num` and the same `event_id`) are dropped
by a small in-memory memory of recent event ids, by the inbox's unique key, and in any case by the
pipeline, which records `slack:<event_id>` in the database in the turn's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.channels.slack.api import SlackApi
from bot.channels.slack.blocks import V_FORM, V_FORM_REF, V_MORE, BlockKit
from bot.channels.slack.sender import Directory, ReplySender, SlackSender
from bot.channels.slack.translate import (
    SHORTCUT_CALLBACK,
    Inbound,
    inbound_from_json,
    inbound_to_json,
    is_dm,
    modal_metadata,
    parse_block_action,
    parse_command,
    parse_event,
    parse_shortcut,
    parse_view_submission,
    thread_of,
    to_incoming,
)
from bot.core.models import Button, Person, Platform, PlatformUser, Reply
from bot.core.ports import DurableInbox, InboxItem, RetryLater
from bot.settings import Settings

log = logging.getLogger("bot.slack")

# Sections other parts of the bot add to the Home tab (my open tickets, active outages):
# `app.services["home_sections"]` is a list of `async (person, platform) -> Sequence[Reply]`, each
# Reply's text already rendered for the platform (renderer.text(Platform.SLACK, ...)).
HomeSection = Callable[[Person, Platform], Awaitable[Sequence[Reply]]]


class IdentityUnavailable(Exception):
    """`users.info` answered 429 (or a temporary error) past the in-place budget: who the person is
    is not known yet, which is not the same as not being in the directory."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("users.info is temporarily unavailable")
        self.retry_after = retry_after


# A turn whose sender could not be looked up is retried this many times (after Retry-After).
IDENTITY_RETRIES = 3


class IdentityCache:
    """Slack user id → PlatformUser with the profile email (`users.info`), cached with a TTL.

    The person is always found from the Slack account, never from anything typed.
    """

    def __init__(self, api: SlackApi, ttl_seconds: float = 600.0, budget_seconds: float = 10.0) -> None:
        self.api = api
        self.ttl = ttl_seconds
        self.budget = budget_seconds
        self._cache: dict[str, tuple[float, PlatformUser]] = {}
        self._pending: dict[str, asyncio.Future[PlatformUser]] = {}

    async def user(self, user_id: str) -> PlatformUser:
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._pending.get(user_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[PlatformUser] = asyncio.get_running_loop().create_future()
        self._pending[user_id] = future
        try:
            user = await self._lookup(user_id)
            future.set_result(user)
            return user
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody else waits
            raise
        finally:
            del self._pending[user_id]

    async def _lookup(self, user_id: str) -> PlatformUser:
        try:
            data = await self.api.call_soon("users.info", user=user_id, budget=self.budget)
        except RetryLater as exc:  # 429 / 5xx / timeout: not known YET; the turn is tried again
            log.warning("users.info temporarily unavailable: %s", exc, extra={"slack_user": user_id})
            raise IdentityUnavailable(exc.retry_after) from exc
        except Exception as exc:
            log.warning("users.info failed: %s", exc, extra={"slack_user": user_id})
            return PlatformUser(Platform.SLACK, user_id)  # not cached: try again next time
        user = data.get("user") or {}
        profile = user.get("profile") or {}
        email = profile.get("email")
        if user.get("is_bot") or user.get("deleted"):
            email = None
        found = PlatformUser(Platform.SLACK, user_id, email=str(email).lower() if email else None,
                             display_name=profile.get("real_name") or user.get("real_name") or user.get("name"))
        self._cache[user_id] = (time.monotonic() + self.ttl, found)
        if len(self._cache) > 100_000:
            self._cache.clear()
        return found


class SlackChannel:
    """Translate Slack to the pipeline and back. Built inside the running event loop."""

    def __init__(self, app: Any, settings: Settings, *, api: SlackApi | None = None) -> None:
        self.app = app
        self.settings = settings
        self.api = api or SlackApi(settings.slack)
        self.blocks = BlockKit(app.renderer)
        self.directory = Directory(self.api)
        self.sender = SlackSender(self.api, self.blocks, self.directory)
        self.replies = ReplySender(self.api, self.blocks, app.renderer, self.directory)
        self.identity = IdentityCache(self.api, float(settings.directory.cache_seconds or 600))
        # Channels whose thread replies are relayed (the technicians' queue); others may be added.
        self.relay_channels: set[str] = {c for c in [settings.slack.queue_channel] if c}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.handled = 0
        # Acknowledged work is durable: stored before the ack, handled from the inbox, replies
        # through the outbox in the turn's transaction (bot/store/inbox.py).
        cfg = settings.inbox
        self.inbox: DurableInbox = app.durable_inbox()
        self.inbox_poll_seconds = cfg.poll_seconds
        self.max_in_flight = max(1, cfg.concurrency)
        self.drain_seconds = cfg.drain_seconds
        self._processing: dict[int, asyncio.Task[Any]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._poll_wake = asyncio.Event()
        self._stopping = False
        app.pipeline.durable_replies.add(Platform.SLACK.value)
        secret = settings.slack.signing_secret.get_secret_value() if settings.slack.signing_secret else None
        self.bolt = AsyncApp(
            client=self.api.client,
            signing_secret=secret,
            process_before_response=True,
            request_verification_enabled=secret is not None,
            ignoring_self_assistant_message_events_enabled=False,
            attaching_conversation_kwargs_enabled=False,
            attaching_function_token_enabled=False,
            name="helpdesk",
        )
        self._register()

    # ----- background work ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("slack background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, seconds: float = 10.0) -> None:
        """Wait for turns in flight (tests; graceful shutdown)."""
        deadline = time.monotonic() + seconds
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.01, deadline - time.monotonic()))

    async def aclose(self) -> None:
        """Graceful stop (SIGTERM): take no more rows, let turns in flight finish for up to
        `inbox.drain_seconds`, then hand what is left back to the inbox (due at once for another
        replica or the next start). Nothing acknowledged is dropped."""
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
        await self.drain(self.drain_seconds)
        left = list(self._processing)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if left:
            try:
                await self.inbox.release(left)
                log.warning("slack: %d acknowledged messages left in the inbox for the next start", len(left))
            except Exception as exc:  # their leases run out instead
                log.warning("slack: could not release %d inbox rows: %s", len(left), exc)
        await self.api.aclose()

    # ----- the inbox ----------------------------------------------------------------------------

    async def accept(self, inbound: Inbound, name: str) -> bool:
        """Store a delivery in the inbox (committed) and start handling it. Called BEFORE the ack:
        returns False when it could not be stored, and then the caller must not acknowledge it as
        received. A redelivery (same event key) is stored once and handled once."""
        if not self.first_delivery(inbound.event_id):
            log.info("duplicate slack delivery dropped", extra={"event_id": inbound.event_id})
            return True
        # Start it now when there is room; otherwise it waits its turn in the inbox (the poller).
        start = not self._stopping and len(self._processing) < self.max_in_flight
        try:
            row_id = await self.inbox.put(f"slack:{inbound.event_id}", Platform.SLACK.value,
                                          inbound_to_json(inbound), claim=start)
        except Exception as exc:
            self._seen.pop(inbound.event_id, None)  # a redelivery gets another chance
            log.error("slack delivery not stored, not acknowledged: %s", type(exc).__name__,
                      extra={"event_id": inbound.event_id})
            return False
        if row_id is None:
            log.info("duplicate slack delivery dropped", extra={"event_id": inbound.event_id})
            return True
        if not start:
            self._poll_wake.set()
            return True
        self._start(InboxItem(row_id, f"slack:{inbound.event_id}", Platform.SLACK.value,
                              inbound_to_json(inbound), 1), name)
        return True

    def _start(self, item: InboxItem, name: str) -> None:
        task = asyncio.create_task(self._process(item), name=name)
        self._tasks.add(task)
        self._processing[item.id] = task
        task.add_done_callback(self._done)
        task.add_done_callback(lambda _: self._finished(item.id))

    def _finished(self, row_id: int) -> None:
        self._processing.pop(row_id, None)
        self._poll_wake.set()

    async def _process(self, item: InboxItem) -> None:
        inbound = inbound_from_json(item.payload)
        try:
            await self.run_turn(inbound)
        except Exception as exc:
            log.exception("slack turn failed (attempt %d)", item.attempts, extra={"event_id": inbound.event_id})
            # Failed for good: say sorry, once per message (not again after `helpdesk inbox retry`).
            if not await self.inbox.retry_later(item, f"{type(exc).__name__}: {exc}") \
                    and await self._first_failure(item.id):
                await self.say_error(inbound)
            return
        await self.inbox.done(item.id)

    async def _first_failure(self, row_id: int) -> bool:
        """Is this the first time this message failed for good? A row re-queued by the help desk
        (`helpdesk inbox retry`) that fails again does not say sorry a second time. When the inbox
        cannot tell (database down), the person is told: twice is better than never."""
        try:
            return await self.inbox.tell_once(row_id)
        except Exception as exc:
            log.warning("inbox: could not record that the person was told: %s", type(exc).__name__)
            return True

    def start_inbox(self) -> None:
        """Handle rows left by a stopped process or another replica (`serve` starts this)."""
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="slack-inbox")

    async def _poll(self) -> None:
        with contextlib.suppress(Exception):
            await self.inbox.recover_orphans()
        purged_at = 0.0
        while not self._stopping:
            if time.monotonic() - purged_at > 3600:
                purged_at = time.monotonic()
                try:
                    await self.inbox.purge()
                except Exception as exc:
                    log.warning("slack inbox purge failed: %s", type(exc).__name__)
            try:
                free = self.max_in_flight - len(self._processing)
                items = await self.inbox.claim(free, (Platform.SLACK.value,)) if free > 0 else []
            except Exception:
                log.exception("slack inbox claim failed")
                items = []
            for item in items:
                self._start(item, "slack-inbox")
            if items and len(self._processing) < self.max_in_flight:
                continue
            self._poll_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_wake.wait(), timeout=self.inbox_poll_seconds)

    def _busy_text(self) -> str:
        return "Sorry, I couldn't take that in just now. Please try again in a moment."

    def _busy_errors(self, body: dict[str, Any]) -> dict[str, str]:
        blocks = ((body.get("view") or {}).get("state") or {}).get("values") or {}
        first = next(iter(blocks), "")
        return {first: self._busy_text()} if first else {}

    def first_delivery(self, event_id: str) -> bool:
        """Cheap in-process dedup of Slack retries; the database check in the pipeline is the real one."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > 20_000:
            self._seen.popitem(last=False)
        return True

    # ----- Bolt wiring ----------------------------------------------------------------------

    def _register(self) -> None:
        bolt = self.bolt

        async def events(req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[None]]) -> Any:
            body = req.body
            if body.get("type") != "event_callback":
                return await next()
            if not await self.on_event(body, req.context.bot_user_id, req.context.bot_id):
                # Not stored: no 200, so Slack delivers it again (it retries a failed event 3 times).
                return BoltResponse(status=503, body="")
            return BoltResponse(status=200, body="")

        bolt.use(events)

        @bolt.command(re.compile(r"^/helpdesk"))
        async def command(ack: AsyncAck, body: dict[str, Any]) -> None:
            if await self.accept(parse_command(body), "slack-command"):
                await ack()
            else:
                await ack(text=self._busy_text())

        @bolt.action(re.compile(".*"))
        async def action(ack: AsyncAck, body: dict[str, Any]) -> None:
            await self.on_action(body)
            await ack()

        @bolt.view(re.compile(".*"))
        async def view(ack: AsyncAck, body: dict[str, Any]) -> None:
            errors = self._form_errors(body)
            if errors:
                await ack(response_action="errors", errors=errors)
                return
            inbound = parse_view_submission(body)
            if inbound is not None and not await self.accept(inbound, "slack-view"):
                await ack(response_action="errors", errors=self._busy_errors(body))
                return
            await ack()

        @bolt.shortcut(re.compile(".*"))
        async def shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
            if body.get("type") == "message_action" and body.get("callback_id") == SHORTCUT_CALLBACK:
                inbound = parse_shortcut(body)
                if inbound is not None:
                    await self.accept(inbound, "slack-shortcut")
            await ack()

    async def on_event(self, body: dict[str, Any], bot_user_id: str | None, bot_id: str | None) -> bool:
        """False when the event could not be stored (so it must not be acknowledged)."""
        event = body.get("event") or {}
        if not isinstance(event, dict):
            return True
        if event.get("type") == "app_home_opened":
            if event.get("tab") == "home" and event.get("user"):
                self.spawn(self.publish_home(str(event["user"])), "slack-home")
            return True
        inbound = parse_event(body, bot_user_id=bot_user_id, bot_id=bot_id,
                              relay_channels=frozenset(self.relay_channels))
        if inbound is None:
            return True
        return await self.accept(inbound, "slack-event")

    async def on_action(self, body: dict[str, Any]) -> None:
        actions = body.get("actions") or []
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            return
        first = actions[0]
        value = str(first.get("value") or (first.get("selected_option") or {}).get("value") or "")
        if value.startswith((V_FORM, V_FORM_REF)):
            self.spawn(self.open_form(body, value), "slack-open-form")
            return
        if value.startswith(V_MORE):
            trigger = str(body.get("trigger_id") or "")
            self.spawn(self.api.call("views.open", trigger_id=trigger,
                                     view=self.blocks.more_modal(value.removeprefix(V_MORE))), "slack-more")
            return
        resolved = self.blocks.resolve_ref(value)
        if resolved is None:
            self.spawn(self._gone(body), "slack-gone")
            return
        inbound = parse_block_action(body, resolved)
        if inbound is not None:
            await self.accept(inbound, "slack-action")

    # ----- turns ----------------------------------------------------------------------------

    async def run_turn(self, inbound: Inbound, attempt: int = 0) -> None:
        """Run one turn. Raises when it could not be handled (the inbox tries again, and says
        sorry with `say_error` after the last attempt)."""
        started = time.perf_counter()
        try:
            user = await self.identity.user(inbound.user_id)
        except IdentityUnavailable as exc:
            await self._identity_later(inbound, attempt, exc.retry_after)
            return
        if is_dm(inbound.channel) and not inbound.needs_dm and (
                inbound.kind != "dm" or self.directory.known_dm(inbound.user_id) is not None):
            # A payload naming a DM that is not the sender's own (a forged or misrouted interaction)
            # is answered in the sender's own DM, learnt from conversations.open.
            own = await self.directory.dm_channel(inbound.user_id)
            if own != inbound.channel:
                log.warning("payload names a DM that is not the sender's; answering in their own DM",
                            extra={"event_id": inbound.event_id, "kind": inbound.kind})
                inbound = replace(inbound, needs_dm=True)
        dm = await self.directory.dm_channel(inbound.user_id) if inbound.needs_dm else None
        incoming = to_incoming(inbound, user, dm_channel=dm)
        result = await self.app.pipeline.handle(incoming)
        if result.duplicate:
            return
        sent = await self.replies.send(result.replies, sender_user=inbound.user_id) + result.queued
        self.handled += 1
        if sent and inbound.needs_dm and inbound.channel and not is_dm(inbound.channel) \
                and inbound.kind in ("command", "shortcut"):
            pointer = self.app.renderer.text(Platform.SLACK, template="dm_pointer",
                                             context={"app_name": self.settings.app.name})
            try:
                await self.api.call_soon("chat.postEphemeral", channel=inbound.channel, user=inbound.user_id,
                                         text=pointer)
            except Exception as exc:  # the bot may not be in that channel; the DM is what matters
                log.info("pointer not posted: %s", exc)
        log.debug("slack turn done", extra={"event_id": inbound.event_id,
                                            "ms": round((time.perf_counter() - started) * 1000, 1)})

    async def say_error(self, inbound: Inbound) -> None:
        """The turn failed for good: say so where the person wrote (never silence)."""
        from bot.core.models import Outbound

        try:
            dm = await self.directory.dm_channel(inbound.user_id) if inbound.needs_dm else None
            incoming = to_incoming(inbound, PlatformUser(Platform.SLACK, inbound.user_id), dm_channel=dm)
            text = self.app.renderer.text(Platform.SLACK, template="error", context={})
            await self.replies.send([Outbound(incoming.reply_to, Reply(text=text))], sender_user=inbound.user_id)
        except Exception as exc:
            log.warning("could not tell the person their message failed: %s", exc)

    async def _identity_later(self, inbound: Inbound, attempt: int, retry_after: float | None) -> None:
        """Slack would not say who this is yet (429): tell the person once, then try the turn
        again after Retry-After; never "I couldn't find your account"."""
        last = attempt >= IDENTITY_RETRIES
        if attempt == 0 or last:
            template = "identity_gave_up" if last else "identity_retry"
            text = self.app.renderer.text(Platform.SLACK, template=template, context={})
            dm = await self.directory.dm_channel(inbound.user_id) if inbound.needs_dm else None
            probe = to_incoming(inbound, PlatformUser(Platform.SLACK, inbound.user_id), dm_channel=dm)
            from bot.core.models import Outbound

            try:
                await self.replies.send([Outbound(probe.reply_to, Reply(text=text, private=True))],
                                        sender_user=inbound.user_id)
            except Exception as exc:  # Slack is busy; the retry below still runs
                log.warning("could not say 'one moment': %s", exc, extra={"event_id": inbound.event_id})
        if last:
            return
        wait = retry_after if retry_after is not None else min(30.0, 2.0 * 2 ** attempt)
        await asyncio.sleep(wait)
        await self.run_turn(inbound, attempt + 1)

    async def _gone(self, body: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        text = self.app.renderer.text(Platform.SLACK, template="content_gone", context={})
        channel = str((body.get("container") or {}).get("channel_id") or "") or await self.directory.dm_channel(user)
        extra: dict[str, Any] = {} if is_dm(channel) else {"user": user}
        await self.api.call_soon("chat.postMessage" if is_dm(channel) else "chat.postEphemeral",
                                 channel=channel, text=text, **extra)

    # ----- forms ----------------------------------------------------------------------------

    async def open_form(self, body: dict[str, Any], value: str) -> None:
        form = self.blocks.form_of(value)
        if form is None:
            await self._gone(body)
            return
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = container.get("channel_id")
        thread = None if is_dm(channel) else thread_of(container, message)
        meta = json.loads(modal_metadata(channel, thread))
        patterns = {f.name: f.pattern for f in form.fields if f.pattern}
        if patterns:
            meta["p"] = patterns
        view = self.blocks.modal(form, json.dumps(meta, separators=(",", ":")))
        await self.api.call("views.open", trigger_id=str(body.get("trigger_id") or ""), view=view)

    def _form_errors(self, body: dict[str, Any]) -> dict[str, str]:
        view = body.get("view") or {}
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            return {}
        patterns = meta.get("p") if isinstance(meta, dict) else None
        if not isinstance(patterns, dict):
            return {}
        errors: dict[str, str] = {}
        for block_id, block in ((view.get("state") or {}).get("values") or {}).items():
            for name, element in (block or {}).items():
                pattern = patterns.get(name)
                answer = element.get("value")
                if pattern and answer and not re.fullmatch(str(pattern), str(answer)):
                    errors[block_id] = "That doesn't look right. Please check and try again."
        return errors

    # ----- App Home -------------------------------------------------------------------------

    async def publish_home(self, user_id: str) -> None:
        user = await self.identity.user(user_id)
        person = await self.app.resolver.resolve(user)
        flows = getattr(self.app, "engine", None)
        known = set(getattr(flows, "flows", {}) or {})
        if person is None:
            welcome = self.app.renderer.text(Platform.SLACK, template="home_unknown", context={})
            view = self.blocks.home(welcome, [], [])
        else:
            first = person.display_name.split()[0] if person.display_name else person.email.split("@")[0]
            welcome = self.app.renderer.text(Platform.SLACK, template="home_welcome", context={"first_name": first})
            quick = [Button("Get help", "cmd:help", "primary"), Button("My tickets", "cmd:my tickets")]
            if "password_reset" in known:
                quick.append(Button("Reset my password", "start:password_reset"))
            if "human" in known:
                quick.append(Button("Talk to a person", "flow:human"))
            sections: list[Reply] = []
            for provider in self.app.services.get("home_sections", []):
                try:
                    sections.extend(await provider(person, Platform.SLACK))
                except Exception:
                    log.exception("home section provider failed")
            view = self.blocks.home(welcome, quick, sections)
        await self.api.call("views.publish", user_id=user_id, view=view)
