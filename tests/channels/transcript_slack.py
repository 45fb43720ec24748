"""Runs a `helpdesk simulate` transcript through the Slack channel on the real stack (demo directory,
self-service, knowledge base, tickets, outages), against the Slack Web API stand-in: every `say` a
signed DM event, every `click` the block action of the newest message the person can see with that
button (their DM, or the queue channel for technicians), every `form` the "Fill in the form" button
and the modal's submission. Returns the audit trail's events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bot.channels.console.simulate import FakeClock, TranscriptError, parse_duration
from bot.channels.serve import build_asgi
from bot.channels.slack.mount import SlackMount
from bot.outbox.worker import OutboxWorker
from bot.settings import Settings, load_settings
from bot.store.migrate import upgrade
from bot.store.tables import EventRow
from tests.channels.slack_harness import (
    SECRET,
    TOKEN,
    Harness,
    block_actions,
    message_im,
    slash_command,
    view_submission,
)
from tests.standins.slack_api import SlackStandIn, dm_of

SLACK_QUEUE = "C0QUEUE001"
DEMO_PEOPLE = ("alice@example.com", "bob@example.com", "carol@example.com", "tom.tech@example.com",
               "tina.tech@example.com", "theo.tech@example.com", "ada.admin@example.com")


def slack_users() -> dict[str, dict[str, Any]]:
    return {f"U0DEMO{n:04d}": {"email": email, "real_name": email.split("@")[0].replace(".", " ").title()}
            for n, email in enumerate(DEMO_PEOPLE, 1)}


def slack_settings(tmp: Path, standin: SlackStandIn, *, flows_dir: str = "flows", **sections: Any) -> Settings:
    return load_settings(
        database={"url": f"sqlite+aiosqlite:///{tmp / 'slack.db'}"}, flows={"dir": flows_dir},
        app={"data_dir": str(tmp)},
        slack={"enabled": True, "mode": "http", "bot_token": TOKEN, "signing_secret": SECRET, "api_url": standin.url,
               "queue_channel": SLACK_QUEUE, "post_rate_per_channel": 50.0, "post_burst_per_channel": 20,
               "rate_per_minute_global": 60000.0},
        **sections)


class SlackTranscript:
    def __init__(self, harness: Harness, clock: FakeClock) -> None:
        self.h = harness
        self.clock = clock
        self.ids = {v["email"]: k for k, v in harness.standin.users.items()}
        self.views_used = 0  # modals already submitted (a button that asks for a form opens one at once)

    async def settle(self) -> None:
        await self.h.settle()
        await self.h.app.tick()
        await self.h.settle()

    def user(self, email: str) -> str:
        if email not in self.ids:
            raise TranscriptError(f"{email} has no Slack user in the stand-in")
        return self.ids[email]

    def _messages(self, user: str) -> list[tuple[str, dict[str, Any]]]:
        """(channel, message), newest first: the person's DM, the queue channel, and messages only
        they can see (ephemeral). A message edited in place counts once, in its latest version."""
        places = (dm_of(user), SLACK_QUEUE)
        posted: dict[str, int] = {}
        timeline: list[tuple[str, dict[str, Any]]] = []
        for call in self.h.standin.calls:
            if not call.ok:
                continue
            channel = str(call.params.get("channel") or "")
            if call.method == "chat.postMessage":
                index = posted.get(channel, 0)
                posted[channel] = index + 1
                if channel in places:
                    stored = self.h.standin.messages.get(channel, [])
                    ts = stored[index]["ts"] if index < len(stored) else "0"
                    timeline.append((channel, {**call.params, "ts": ts}))
            elif call.method == "chat.postEphemeral" and channel in places and call.params.get("user") == user:
                timeline.append((channel, {**call.params, "ts": "1.0", "ephemeral": True}))
            elif call.method == "chat.update" and channel in places:
                timeline = [(c, m) for c, m in timeline if not (c == channel and m["ts"] == call.params.get("ts"))]
                timeline.append((channel, {**call.params, "ts": call.params.get("ts")}))
        return list(reversed(timeline))

    async def click(self, user: str, wanted: str, number: int) -> None:
        for channel, message in self._messages(user):
            buttons = self.h.buttons(message)
            value = buttons.get(wanted)
            if value is None and wanted.isdigit() and channel == dm_of(user) and 0 < int(wanted) <= len(buttons):
                value = list(buttons.values())[int(wanted) - 1]
            if value is not None:
                await self.h.interactive(block_actions(value, user=user, channel=channel, message_ts=message["ts"],
                                                       thread_ts=message.get("thread_ts")))
                return
        raise TranscriptError(f"turn {number}: no message with a {wanted!r} button for {user}")

    async def form(self, user: str, values: Mapping[str, Any], number: int) -> None:
        views = self.h.standin.calls_to("views.open")
        if len(views) <= self.views_used:
            await self.click(user, "Fill in the form", number)
            await self.settle()
            views = self.h.standin.calls_to("views.open")
            if len(views) <= self.views_used:
                raise TranscriptError(f"turn {number}: no modal opened for {user}")
        self.views_used = len(views)
        view = views[-1].params["view"]
        view = json.loads(view) if isinstance(view, str) else view
        state: dict[str, dict[str, Any]] = {}
        for block in view.get("blocks", []):
            element = block.get("element") or {}
            name = element.get("action_id")
            if block.get("type") != "input" or name not in values:
                continue
            answer = str(values[name])
            kind = element.get("type")
            if kind in ("static_select", "radio_buttons"):
                state[block["block_id"]] = {name: {"type": kind, "selected_option": {"value": answer}}}
            else:
                state[block["block_id"]] = {name: {"type": "plain_text_input", "value": answer}}
        await self.h.interactive(view_submission(view["callback_id"], state, view.get("private_metadata", ""),
                                                 user=user))

    async def run(self, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        default_as = str(doc.get("as") or "alice@example.com").lower()
        await self.settle()
        for number, turn in enumerate(doc["turns"], 1):
            user = self.user(str(turn.get("as") or default_as).lower())
            if "wait" in turn:
                self.clock.advance(parse_duration(str(turn["wait"])))
                await self.settle()
                if set(turn) <= {"wait", "as"}:
                    continue
            said = str(turn.get("say", ""))
            if said.startswith("/helpdesk"):  # Slack: a slash command, typed in the DM
                await self.h.command(slash_command(said.removeprefix("/helpdesk").strip(), user=user,
                                                   channel=dm_of(user)))
            elif "say" in turn:
                await self.h.event(message_im(said, user=user))
            elif "click" in turn:
                await self.click(user, str(turn["click"]), number)
            elif "form" in turn:
                await self.form(user, dict(turn["form"] or {}), number)
            await self.settle()
        async with self.h.app.sessions() as session:
            rows = (await session.execute(select(EventRow).order_by(EventRow.id))).scalars()
            return [{"type": r.type, **r.data} for r in rows]


async def slack_transcript_events(doc: Mapping[str, Any], tmp: Path, *, flows_dir: str,
                                  **sections: Any) -> list[dict[str, Any]]:
    from bot.app import build_app

    clock = FakeClock()
    if "start" in doc:
        clock.now = datetime.fromisoformat(str(doc["start"])).astimezone(UTC)
    with SlackStandIn(token=TOKEN, users=slack_users()) as standin:
        settings = slack_settings(tmp, standin, flows_dir=flows_dir, **sections)
        await upgrade(settings.database_url)
        app = await build_app(settings, clock=clock)
        mount = SlackMount(app, settings)
        worker = OutboxWorker(app.sessions, mount.senders(), poll_seconds=0.05, max_attempts=5, clock=clock)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_asgi(app, [mount])),
                                   base_url="http://slack.test")
        try:
            harness = Harness(client, standin, mount, worker, app, settings)
            return await SlackTranscript(harness, clock).run(doc)
        finally:
            await client.aclose()
            await mount.stop()
            await app.aclose()
