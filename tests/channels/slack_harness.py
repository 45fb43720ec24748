"""Test harness for the Slack channel: the whole app on the REAL stack (the repository's flows,
the knowledge base over kb_articles/, the demo directory with the real self-service runner, the
real ticket desk and outages) on a temporary SQLite database, the Slack Web API stand-in on
loopback, and helpers that sign requests exactly as Slack does.

Payload builders reproduce the captured shapes in shared/reference/payloads/slack_*.json (field
names, nesting, form encoding), with ids and text as parameters.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from sqlalchemy import func, or_, select

from bot.channels.serve import build_asgi
from bot.channels.slack.mount import SlackMount
from bot.outbox.worker import OutboxWorker
from bot.settings import Settings, load_settings
from bot.store.migrate import upgrade
from bot.store.tables import OutboxRow
from tests.standins.slack_api import DEFAULT_USERS, SlackStandIn

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-signing-secret-0123456789abcdef"
TOKEN = "xoxb-test"
TEAM = "T0TEAM0001"
QUEUE = "C0QUEUE001"
ALICE = "U0USER0001"  # alice@example.com, an employee
TOM = "U0TECH0001"  # tom.tech@example.com, a technician
TINA = "U0TECH0002"  # tina.tech@example.com, a technician
BOB = "U0USER0002"  # bob@example.com, an employee
ADA = "U0ADMN0001"  # ada.admin@example.com, an admin
ANNOUNCE = "C0ANNOUNCE1"  # the outage announcement channel

# ----- signing and payloads ---------------------------------------------------------------------


def sign(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def envelope(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """The Events API envelope of slack_01_event_message_im.json."""
    return {
        "token": "verification_token", "team_id": TEAM, "api_app_id": "A0APP00001", "event": event,
        "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "U0BOT00001", "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


_ts_counter = [0]


def next_ts() -> str:
    _ts_counter[0] += 1
    return f"{int(time.time())}.{_ts_counter[0]:06d}"


def message_im(text: str, *, user: str = ALICE, event_id: str | None = None, ts: str | None = None,
               thread_ts: str | None = None) -> dict[str, Any]:
    ts = ts or next_ts()
    event = {"user": user, "type": "message", "ts": ts, "text": text, "channel": "D" + user[1:],
             "event_ts": ts, "channel_type": "im", "client_msg_id": f"cm-{ts}"}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return envelope(event, event_id or f"Ev{ts.replace('.', '')}")


def app_mention(text: str, *, user: str = ALICE, channel: str = "C0CHAN0001", thread_ts: str | None = None,
                event_id: str | None = None) -> dict[str, Any]:
    """slack_02_event_app_mention.json."""
    ts = next_ts()
    event: dict[str, Any] = {
        "client_msg_id": f"cm-{ts}", "type": "app_mention", "text": f"<@U0BOT00001> {text}", "user": user,
        "ts": ts, "team": TEAM, "channel": channel, "event_ts": ts,
        "blocks": [{"type": "rich_text", "block_id": "K8xp", "elements": [{"type": "rich_text_section", "elements": [
            {"type": "user", "user_id": "U0BOT00001"}, {"type": "text", "text": f" {text}"}]}]}],
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return envelope(event, event_id or f"Ev{ts.replace('.', '')}")


def channel_message(text: str, *, user: str, channel: str, thread_ts: str | None = None) -> dict[str, Any]:
    """slack_05_event_message_thread_reply.json."""
    ts = next_ts()
    event: dict[str, Any] = {"user": user, "type": "message", "ts": ts, "text": text, "team": TEAM,
                             "channel": channel, "event_ts": ts, "channel_type": "channel"}
    if thread_ts:
        event.update({"thread_ts": thread_ts, "parent_user_id": "U0BOT00001"})
    return envelope(event, f"Ev{ts.replace('.', '')}")


def message_changed() -> dict[str, Any]:
    """slack_03_event_message_changed.json (an edit)."""
    ts = next_ts()
    return envelope({
        "type": "message", "subtype": "message_changed", "hidden": True, "channel": "D0USER0001", "ts": ts,
        "event_ts": ts, "channel_type": "im",
        "message": {"type": "message", "text": "updated message", "user": ALICE, "team": TEAM,
                    "edited": {"user": ALICE, "ts": ts}},
        "previous_message": {"type": "message", "text": "original message", "user": ALICE, "ts": "1.0"},
    }, f"Ev{ts.replace('.', '')}")


def bot_message(*, classic: bool) -> dict[str, Any]:
    """slack_04 (bot_id + bot_profile) and slack_04b (subtype bot_message) in a DM."""
    ts = next_ts()
    if classic:
        event = {"type": "message", "subtype": "bot_message", "text": "Hi there!", "ts": ts, "username": "classic-bot",
                 "bot_id": "B0BOT00003", "channel": "D0USER0001", "event_ts": ts, "channel_type": "im"}
    else:
        event = {"bot_id": "B0BOT00002", "type": "message", "text": "Hi there!", "user": "U0BOT00002", "ts": ts,
                 "team": TEAM, "bot_profile": {"id": "B0BOT00002", "name": "other-app", "app_id": "A0APP00002"},
                 "channel": "D0USER0001", "event_ts": ts, "channel_type": "im"}
    return envelope(event, f"Ev{ts.replace('.', '')}")


def own_message() -> dict[str, Any]:
    ts = next_ts()
    return envelope({"bot_id": "B0BOT00001", "type": "message", "text": "I said this", "user": "U0BOT00001",
                     "ts": ts, "channel": "D0USER0001", "event_ts": ts, "channel_type": "im"},
                    f"Ev{ts.replace('.', '')}")


def channel_join() -> dict[str, Any]:
    ts = next_ts()
    return envelope({"type": "message", "subtype": "channel_join", "user": ALICE, "text": "<@U0USER0001> has joined",
                     "channel": QUEUE, "ts": ts, "event_ts": ts, "channel_type": "channel"}, f"Ev{ts.replace('.', '')}")


def block_actions(value: str, *, user: str = ALICE, channel: str | None = None,
                  message_ts: str = "1605853634.000400", thread_ts: str | None = None) -> dict[str, Any]:
    """slack_07_interactivity_block_actions_message_button.json."""
    channel = channel or "D" + user[1:]
    message: dict[str, Any] = {"bot_id": "B0BOT00001", "type": "message", "text": "…", "user": "U0BOT00001",
                               "ts": message_ts, "team": TEAM, "blocks": []}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions", "user": {"id": user, "username": "u", "name": "u", "team_id": TEAM},
        "api_app_id": "A0APP00001", "token": "fixed-value",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"111.222.{next_ts()}", "team": {"id": TEAM, "domain": "example"},
        "channel": {"id": channel, "name": "x"}, "message": message,
        "response_url": "https://hooks.slack.com/actions/T0TEAM0001/111/xxx",
        "actions": [{"action_id": "hd_0", "block_id": "hd_0", "text": {"type": "plain_text", "text": "x"},
                     "value": value, "type": "button", "action_ts": next_ts()}],
    }


def home_button(value: str, *, user: str = ALICE) -> dict[str, Any]:
    """slack_08_interactivity_block_actions_app_home_button.json."""
    return {
        "type": "block_actions", "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user, "username": "u", "name": "u", "team_id": TEAM}, "api_app_id": "A0APP00001",
        "token": "legacy-fixed-value", "container": {"type": "view", "view_id": "V0VIEW0001"},
        "trigger_id": f"987.{next_ts()}", "view": {"id": "V0VIEW0001", "type": "home", "blocks": []},
        "actions": [{"action_id": "home_0", "block_id": "home_0", "text": {"type": "plain_text", "text": "x"},
                     "value": value, "type": "button", "action_ts": next_ts()}],
    }


def view_submission(callback_id: str, values: Mapping[str, Mapping[str, Any]], metadata: str,
                    *, user: str = ALICE) -> dict[str, Any]:
    """slack_09_interactivity_view_submission.json; `values` is view.state.values."""
    return {
        "type": "view_submission", "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user, "username": "u", "name": "u", "team_id": TEAM}, "api_app_id": "A0APP00001",
        "token": "verification_token", "trigger_id": f"111.222.{next_ts()}",
        "view": {"id": "V0VIEW0001", "team_id": TEAM, "type": "modal", "blocks": [], "private_metadata": metadata,
                 "callback_id": callback_id, "state": {"values": values}, "hash": "1596530361.3wRYuk3R",
                 "title": {"type": "plain_text", "text": "x"}, "app_id": "A0APP00001", "bot_id": "B0BOT00001"},
        "response_urls": [],
    }


def message_action(text: str, *, user: str = ALICE, author: str = BOB, channel: str = "C0CHAN0001") -> dict[str, Any]:
    """slack_10_interactivity_message_action.json."""
    ts = next_ts()
    return {
        "type": "message_action", "token": "verification_token", "action_ts": next_ts(),
        "team": {"id": TEAM, "domain": "example"}, "user": {"id": user, "name": "u"},
        "channel": {"id": channel, "name": "dev"}, "callback_id": "open_ticket_from_message",
        "trigger_id": f"111.222.{ts}", "message_ts": ts,
        "message": {"client_msg_id": f"cm-{ts}", "type": "message", "text": text, "user": author, "ts": ts,
                    "team": TEAM},
        "response_url": "https://hooks.slack.com/app/T0TEAM0001/111/xxx",
    }


def slash_command(text: str, *, user: str = ALICE, channel: str = "C0CHAN0001") -> dict[str, str]:
    """slack_12_slash_command_form_fields.json."""
    return {"token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": TEAM, "team_domain": "example", "channel_id": channel,
            "channel_name": "test", "user_id": user, "user_name": "u", "command": "/helpdesk", "text": text,
            "response_url": "https://hooks.slack.com/commands/1234/5678", "trigger_id": f"133.738.{next_ts()}",
            "api_app_id": "A0APP00001"}


def app_home_opened(user: str = ALICE) -> dict[str, Any]:
    """slack_13_event_app_home_opened.json."""
    ts = next_ts()
    return envelope({"type": "app_home_opened", "user": user, "channel": "D" + user[1:], "tab": "home",
                     "event_ts": ts}, f"Ev{ts.replace('.', '')}")


# ----- the harness ------------------------------------------------------------------------------


@dataclass
class Harness:
    client: httpx.AsyncClient
    standin: SlackStandIn
    mount: SlackMount
    worker: OutboxWorker
    app: Any
    settings: Settings

    async def post(self, raw: bytes, content_type: str, *, headers: Mapping[str, str] | None = None,
                   timestamp: int | None = None, secret: str = SECRET) -> httpx.Response:
        sent = {"Content-Type": content_type, **sign(raw, timestamp, secret), **(headers or {})}
        return await self.client.post("/slack/events", content=raw, headers=sent)

    async def event(self, payload: Mapping[str, Any], **kw: Any) -> httpx.Response:
        return await self.post(json.dumps(payload).encode(), "application/json", **kw)

    async def interactive(self, payload: Mapping[str, Any], **kw: Any) -> httpx.Response:
        raw = f"payload={quote(json.dumps(payload))}".encode()
        return await self.post(raw, "application/x-www-form-urlencoded", **kw)

    async def command(self, fields: Mapping[str, str], **kw: Any) -> httpx.Response:
        return await self.post(urlencode(fields).encode(), "application/x-www-form-urlencoded", **kw)

    async def settle(self) -> None:
        """Let turns in flight finish and the outbox deliver what they queued (replies are outbox
        rows too): including rows due again within a couple of seconds (a 429's Retry-After)."""
        for _ in range(3):
            await self.mount.channel.drain()
            await self.worker.drain()
        for _ in range(60):
            if not await self._due_soon():
                break
            await asyncio.sleep(0.1)
            await self.mount.channel.drain()
            await self.worker.drain()

    async def _due_soon(self) -> bool:
        soon = self.worker.clock() + timedelta(seconds=2)
        async with self.app.sessions() as session:
            count = (await session.execute(select(func.count()).select_from(OutboxRow).where(or_(
                (OutboxRow.status == "pending") & (OutboxRow.next_attempt_at <= soon),
                (OutboxRow.status == "sending") & (OutboxRow.locked_until <= soon))))).scalar_one()
        return bool(count)

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [c.params for c in self.standin.calls_to("chat.postMessage")
                if channel is None or c.params.get("channel") == channel]

    def last_post(self, channel: str) -> dict[str, Any]:
        posts = self.posts(channel)
        assert posts, f"nothing posted to {channel}; calls: {[c.method for c in self.standin.calls]}"
        return posts[-1]

    def buttons(self, params: Mapping[str, Any]) -> dict[str, str]:
        """label → value of the buttons in a posted message."""
        found: dict[str, str] = {}
        for block in params.get("blocks") or []:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                found[element["text"]["text"]] = element["value"]
        return found


def make_settings(tmp: Path, standin: SlackStandIn, **slack: Any) -> Settings:
    """The repository's configuration (flows, knowledge base, demo directory, roles, tickets), with
    Slack pointed at the stand-in, a private database and fast pacing."""
    return load_settings(
        ROOT / "config" / "helpdesk.yaml",
        app={"data_dir": str(tmp)},
        database={"url": f"sqlite+aiosqlite:///{tmp / 'slack.db'}"},
        flows={"dir": str(ROOT / "flows")},
        kb={"dir": str(ROOT / "kb_articles")},
        directory={"backend": "demo", "demo_file": str(ROOT / "config" / "demo_directory.yaml")},
        outages={"announcement_channels": {"slack": [ANNOUNCE]}, "dm_platform": "slack"},
        slack={"enabled": True, "mode": "http", "bot_token": TOKEN, "signing_secret": SECRET,
               "api_url": standin.url, "queue_channel": QUEUE, "post_rate_per_channel": 50.0,
               "post_burst_per_channel": 20, "rate_per_minute_global": 60000.0, **slack},
        teams={"enabled": False},
    )


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    users = {**DEFAULT_USERS, TINA: {"email": "tina.tech@example.com", "real_name": "Tina Technician"}}
    with SlackStandIn(token=TOKEN, users=users) as server:
        yield server


@pytest.fixture
async def harness(tmp_path: Path, standin: SlackStandIn) -> AsyncIterator[Harness]:
    from bot.app import build_app

    settings = make_settings(tmp_path, standin)
    await upgrade(settings.database_url)
    app = await build_app(settings)
    mount = SlackMount(app, settings)
    worker = OutboxWorker(app.sessions, mount.senders(), poll_seconds=0.05, max_attempts=5)
    asgi = build_asgi(app, [mount])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://slack.test")
    try:
        yield Harness(client, standin, mount, worker, app, settings)
    finally:
        await client.aclose()
        await mount.stop()
        await app.aclose()
