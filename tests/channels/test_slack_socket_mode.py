"""Slack Socket Mode end to end, offline: the REAL stack of the HTTP-mode tests (slack_harness: the
repository's flows and triage, kb_articles/, the demo directory and self-service runner, tickets) in
`slack.mode: socket` with an app-level token, started the way `helpdesk serve` starts it (the ASGI
lifespan runs `SlackMount.start`, which connects Bolt's `AsyncSocketModeHandler`).

Everything is on 127.0.0.1: the Web API stand-in (tests/standins/slack_api.py) answers
apps.connections.open with the URL of the Socket Mode stand-in (tests/standins/slack_socket.py),
which pushes envelopes in Slack's shapes and records the acknowledgements. The assertions are on
what reached the Web API stand-in, what was acknowledged, and what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.app import build_app
from bot.channels.serve import build_asgi, settings_problems
from bot.channels.slack.mount import SlackMount
from bot.outbox.worker import OutboxWorker
from bot.settings import Settings
from bot.store.migrate import upgrade
from bot.store.tables import ProcessedEventRow
from tests.channels import slack_harness
from tests.channels.slack_harness import (
    ALICE,
    TOKEN,
    Harness,
    block_actions,
    make_settings,
    message_im,
    slash_command,
    view_submission,
)
from tests.standins.slack_api import SlackStandIn
from tests.standins.slack_socket import SocketModeStandIn

standin = slack_harness.standin  # fixture: the Web API stand-in

APP_TOKEN = "xapp-1-A0APP00001-1234567890-standin"
ALICE_DM = "D0USER0001"
WAIT = 15.0  # seconds; generous so a slow machine never fails a test, polling keeps fast ones fast
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass
class SocketBot:
    """One `helpdesk serve` process in Socket Mode, and the two Slack stand-ins it talks to."""

    h: Harness
    socket: SocketModeStandIn

    @property
    def web(self) -> SlackStandIn:
        return self.h.standin

    async def deliver(self, kind: str, payload: dict[str, Any], **kw: Any) -> str:
        """Push an envelope, wait for its acknowledgement, then for the turn and the outbox."""
        envelope_id = await self.socket.push(kind, payload, **kw)
        await self.socket.wait_ack(envelope_id, WAIT)
        await self.h.settle()
        return envelope_id

    async def say(self, text: str, **kw: Any) -> str:
        return await self.deliver("events_api", message_im(text), **kw)

    async def click(self, label: str, *, channel: str = ALICE_DM) -> str:
        """Press the button labelled `label` on the last message the bot posted in `channel`."""
        post = self.h.last_post(channel)
        buttons = self.h.buttons(post)
        assert label in buttons, f"no {label!r} button in {list(buttons)}: {post.get('text')}"
        message = self.web.messages[channel][-1]
        return await self.deliver("interactive", block_actions(buttons[label], channel=channel,
                                                               message_ts=message["ts"]))

    async def wait_posts(self, channel: str, count: int) -> list[dict[str, Any]]:
        """At least `count` chat.postMessage calls to `channel` (polled; settle() normally suffices)."""
        deadline = time.monotonic() + WAIT
        while len(self.h.posts(channel)) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            await self.h.settle()
        posts = self.h.posts(channel)
        assert len(posts) >= count, f"{len(posts)} post(s) to {channel}, not {count}: {[p.get('text') for p in posts]}"
        return posts


def socket_settings(tmp_path: Path, web: SlackStandIn) -> Settings:
    """The harness's settings (real flows, kb, demo directory...) in Socket Mode: an app-level token
    and no signing secret (Socket Mode needs none)."""
    return make_settings(tmp_path, web, mode="socket", app_token=APP_TOKEN, signing_secret=None)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:  # slack_sdk's Socket Mode client honours them: keep it on loopback
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def socket_server() -> AsyncIterator[SocketModeStandIn]:
    server = await SocketModeStandIn().start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def serving(settings: Settings, web: SlackStandIn, socket: SocketModeStandIn) -> AsyncIterator[SocketBot]:
    """One process of `helpdesk serve` (the database already migrated), connected to the stand-ins."""
    app = await build_app(settings)
    mount = SlackMount(app, settings)
    worker = OutboxWorker(app.sessions, mount.senders(), poll_seconds=0.05, max_attempts=5)
    asgi = build_asgi(app, [mount])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://slack.test")
    before = len(socket.connections)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(app.aclose)
        stack.push_async_callback(client.aclose)
        # What uvicorn does for `helpdesk serve`: the lifespan starts the mounts (SlackMount.start
        # connects the Socket Mode handler) and stops them at the end (closes it).
        async with asyncio.timeout(WAIT):
            await stack.enter_async_context(asgi.router.lifespan_context(asgi))
        await socket.wait_connections(before + 1, WAIT)
        yield SocketBot(Harness(client, web, mount, worker, app, settings), socket)


@pytest.fixture
async def bot(tmp_path: Path, standin: SlackStandIn, socket_server: SocketModeStandIn) -> AsyncIterator[SocketBot]:
    standin.app_token = APP_TOKEN
    standin.socket_url = socket_server.issue_url
    settings = socket_settings(tmp_path, standin)
    assert settings_problems(settings) == []
    await upgrade(settings.database_url)
    async with serving(settings, standin, socket_server) as running:
        yield running


async def processed(bot: SocketBot, event_id: str) -> list[str]:
    async with bot.h.app.sessions() as session:
        rows = (await session.execute(select(ProcessedEventRow.event_id))).scalars()
        return [row for row in rows if event_id in row]


# ----- connecting -------------------------------------------------------------------------------


async def test_connects_with_the_app_level_token_and_serves_no_http_endpoint(bot: SocketBot) -> None:
    opens = bot.web.calls_to("apps.connections.open", ok_only=False)
    # Two: start() checks the app token once (a refused token must stop start-up, not retry forever),
    # then the Socket Mode client asks for its own URL.
    assert len(opens) == 2 and all(c.ok for c in opens)
    assert all(c.headers["authorization"] == f"Bearer {APP_TOKEN}" for c in opens)  # the app token, not the bot's
    assert all(c.headers.get("authorization") == f"Bearer {TOKEN}" for c in bot.web.calls
               if c.method != "apps.connections.open")
    assert bot.web.calls_to("auth.test"), "start() checks the bot token"
    connection = bot.socket.connections[0]
    assert connection.ticket == bot.socket.tickets[-1]  # the URL apps.connections.open handed out
    assert connection.sent[0]["type"] == "hello"
    # Socket Mode: nothing is mounted at /slack/events; the health check still answers.
    assert (await bot.h.client.post("/slack/events", content=b"{}")).status_code == 404
    health = await bot.h.client.get("/healthz")
    assert health.status_code == 200 and health.json()["channels"] == ["slack"]


async def test_a_signing_secret_set_as_well_does_not_get_in_the_way(tmp_path: Path, standin: SlackStandIn,
                                                                    socket_server: SocketModeStandIn) -> None:
    # Envelopes are not signed (the app-level token authenticated the connection): Bolt must not
    # check signatures in Socket Mode even when HELPDESK_SLACK__SIGNING_SECRET is also set.
    standin.app_token = APP_TOKEN
    standin.socket_url = socket_server.issue_url
    settings = make_settings(tmp_path, standin, mode="socket", app_token=APP_TOKEN)
    assert settings.slack.signing_secret is not None
    await upgrade(settings.database_url)
    async with serving(settings, standin, socket_server) as bot:
        envelope_id = await bot.say("I forgot my password")
        assert bot.socket.acks_for(envelope_id)
        assert "Which fits best?" in (await bot.wait_posts(ALICE_DM, 1))[-1]["text"]


async def test_the_web_api_standin_refuses_the_wrong_kind_of_token(bot: SocketBot) -> None:
    async with httpx.AsyncClient(base_url=bot.web.url) as client:
        async def call(method: str, token: str) -> dict[str, Any]:
            response = await client.post(method, headers={"Authorization": f"Bearer {token}"})
            return dict(response.json())

        assert await call("apps.connections.open", TOKEN) == {"ok": False, "error": "not_allowed_token_type"}
        assert await call("apps.connections.open", "xapp-unknown") == {"ok": False, "error": "invalid_auth"}
        assert await call("chat.postMessage", APP_TOKEN) == {"ok": False, "error": "not_allowed_token_type"}
        opened = await call("apps.connections.open", APP_TOKEN)
        assert opened["ok"] is True and opened["url"].startswith(bot.socket.url + "?ticket=")


# ----- a) a DM, b) a button -----------------------------------------------------------------------


async def test_a_dm_is_acknowledged_and_answered_and_buttons_continue_the_flow(bot: SocketBot) -> None:
    # a) "I forgot my password" as an events_api envelope: acknowledged by envelope_id (no payload),
    # answered in Alice's DM by the real password_reset flow.
    envelope_id = await bot.say("I forgot my password")
    ack = bot.socket.acks_for(envelope_id)
    assert len(ack) == 1 and ack[0].message == {"envelope_id": envelope_id}
    question = (await bot.wait_posts(ALICE_DM, 1))[-1]
    assert "Which fits best?" in question["text"]
    assert {"I forgot it", "It has expired", "I want to change it"} <= set(bot.h.buttons(question))
    assert [c.params["user"] for c in bot.web.calls_to("users.info")] == [ALICE]  # identity from the account

    # b) the button as an `interactive` envelope (block_actions as JSON): acknowledged, flow goes on.
    clicked = await bot.click("I forgot it")
    assert [a.envelope_id for a in bot.socket.acks_for(clicked)] == [clicked]
    confirm = (await bot.wait_posts(ALICE_DM, 2))[-1]
    assert "Shall I go ahead?" in confirm["text"]
    await bot.click("Reset my password")
    posts = await bot.wait_posts(ALICE_DM, 3)
    assert any("temporary password:" in json.dumps(p.get("blocks") or []) for p in posts)
    assert all(p["channel"] == ALICE_DM for p in bot.h.posts())  # nothing anywhere else
    assert len(bot.socket.acks) == 3 and not bot.socket.received  # one ack per envelope, nothing else


async def test_a_slash_command_envelope_is_acknowledged_and_answered_in_the_dm(bot: SocketBot) -> None:
    envelope_id = await bot.deliver("slash_commands", slash_command("help", channel=ALICE_DM))
    assert bot.socket.envelopes[envelope_id]["accepts_response_payload"] is True
    assert len(bot.socket.acks_for(envelope_id)) == 1
    # `/helpdesk help`: what the bot does, then the commands, in the person's DM.
    shown = " ".join(p.get("text") or "" for p in await bot.wait_posts(ALICE_DM, 2))
    assert "the IT help desk bot" in shown and "/helpdesk" in shown, shown


async def test_a_modal_answer_is_given_in_the_acknowledgement_payload(bot: SocketBot) -> None:
    # Over HTTP a modal's validation errors are the response body; in Socket Mode they travel in
    # the acknowledgement's `payload` (the interactive envelope accepts a response payload).
    await bot.say("I need help with my outlook email")
    await bot.click("Out-of-office reply")
    await bot.click("Fill in the form")
    opened = bot.web.calls_to("views.open")
    assert opened, [c.method for c in bot.web.calls]
    view = opened[-1].params["view"]
    assert view["callback_id"] == "ooo_form" and opened[-1].params["trigger_id"]

    def values(start: str) -> dict[str, Any]:
        return {"message": {"message": {"type": "plain_text_input", "value": "Away, back soon"}},
                "start_date": {"start_date": {"type": "plain_text_input", "value": start}},
                "end_date": {"end_date": {"type": "plain_text_input", "value": "2026-12-31"}},
                "external": {"external": {"type": "static_select", "selected_option": {"value": "no"}}}}

    posted = len(bot.h.posts(ALICE_DM))
    refused = await bot.deliver("interactive", view_submission("ooo_form", values("next week"),
                                                               view["private_metadata"]))
    answer = bot.socket.acks_for(refused)[0].payload
    assert answer["response_action"] == "errors" and "start_date" in answer["errors"], answer
    assert len(bot.h.posts(ALICE_DM)) == posted  # refused inside the modal: no turn
    accepted = await bot.deliver("interactive", view_submission("ooo_form", values("2026-12-24"),
                                                                view["private_metadata"]))
    assert bot.socket.acks_for(accepted)[0].message == {"envelope_id": accepted}  # closes the modal
    after = (await bot.wait_posts(ALICE_DM, posted + 1))[-1]
    assert "Fill in the form" not in bot.h.buttons(after)


# ----- c) a redelivery is acknowledged and dropped ----------------------------------------------


async def test_a_redelivered_event_is_acknowledged_twice_but_handled_once(bot: SocketBot) -> None:
    body = message_im("I forgot my password")
    first = await bot.deliver("events_api", body)
    await bot.wait_posts(ALICE_DM, 1)
    # Slack redelivers the same event (same event_id) in a new envelope, marked as a retry.
    again = await bot.deliver("events_api", body, retry_attempt=1, retry_reason="timeout")
    assert first != again
    retry = bot.socket.envelopes[again]
    assert retry["retry_attempt"] == 1 and retry["retry_reason"] == "timeout"
    assert retry["payload"]["event_id"] == body["event_id"]
    assert len(bot.socket.acks_for(first)) == 1 and len(bot.socket.acks_for(again)) == 1
    await bot.h.settle()
    posts = bot.h.posts(ALICE_DM)
    assert len(posts) == 1, [p.get("text") for p in posts]
    assert await processed(bot, body["event_id"]) == [f"slack:{body['event_id']}"]


# ----- d) Slack recycles the connection -----------------------------------------------------------


async def test_a_refresh_request_makes_the_client_reconnect_and_events_still_flow(bot: SocketBot) -> None:
    old = bot.socket.current()
    await bot.socket.disconnect("refresh_requested")
    new = await bot.socket.wait_connections(2, WAIT)
    assert new is not old and new.number == 2
    opens = bot.web.calls_to("apps.connections.open")
    assert len(opens) == 3 and all(c.headers["authorization"] == f"Bearer {APP_TOKEN}" for c in opens)
    assert new.ticket == bot.socket.tickets[-1] != old.ticket  # the fresh URL, not the old one
    await bot.socket.wait_closed(old, WAIT)
    assert old.closed_by == "client"
    assert new.sent[0]["type"] == "hello" and new.sent[0]["num_connections"] == 1

    envelope_id = await bot.say("I forgot my password")
    assert [a.connection for a in bot.socket.acks_for(envelope_id)] == [new.number]
    assert "Which fits best?" in (await bot.wait_posts(ALICE_DM, 1))[-1]["text"]
    assert len(set(bot.socket.tickets)) == len(bot.socket.tickets)  # every connection on a URL of its own


# ----- a redelivery to another replica's connection ---------------------------------------------


async def test_a_retry_racing_the_first_delivery_on_another_replica_is_handled_once(bot: SocketBot) -> None:
    # Slack spreads an app's envelopes over its open connections (up to 10), which may belong to
    # different processes: the in-memory memory of one process cannot see the other's deliveries,
    # the event id recorded in the shared database does.
    async with serving(bot.h.settings, bot.web, bot.socket) as replica:
        first, second = bot.socket.connections[0], bot.socket.connections[1]
        assert first.open and second.open and second.sent[0]["num_connections"] == 2
        body = message_im("I forgot my password")
        one = await bot.socket.push_event(body, connection=first)
        two = await bot.socket.push_event(body, connection=second, retry_attempt=1, retry_reason="timeout")
        await bot.socket.wait_ack(one, WAIT)
        await bot.socket.wait_ack(two, WAIT)
        assert [a.connection for a in bot.socket.acks_for(one) + bot.socket.acks_for(two)] == [1, 2]
        for _ in range(2):
            await bot.h.settle()
            await replica.h.settle()
        posts = await bot.wait_posts(ALICE_DM, 1)
        assert len(posts) == 1, [p.get("text") for p in posts]
        assert "Which fits best?" in posts[0]["text"]
        assert await processed(bot, body["event_id"]) == [f"slack:{body['event_id']}"]


# ----- a token Slack refuses ----------------------------------------------------------------------


def test_the_bot_token_in_place_of_the_app_token_is_a_settings_problem(tmp_path: Path, standin: SlackStandIn) -> None:
    settings = make_settings(tmp_path, standin, mode="socket", app_token=TOKEN, signing_secret=None)
    assert any("xapp-" in problem for problem in settings_problems(settings))


async def test_an_app_token_slack_refuses_stops_start_up_with_a_clear_message(
    tmp_path: Path, standin: SlackStandIn, socket_server: SocketModeStandIn
) -> None:
    from bot.app import StartupError

    standin.app_token = APP_TOKEN
    standin.socket_url = socket_server.issue_url
    settings = make_settings(tmp_path, standin, mode="socket", app_token="xapp-1-revoked", signing_secret=None)
    await upgrade(settings.database_url)
    with pytest.raises(StartupError, match=r"Slack refused HELPDESK_SLACK__APP_TOKEN .*invalid_auth"):
        async with serving(settings, standin, socket_server):
            pass
    assert not socket_server.connections  # never connected, and start-up did not hang


async def test_slack_unreachable_at_start_up_connects_in_the_background(
    tmp_path: Path, standin: SlackStandIn, socket_server: SocketModeStandIn
) -> None:
    standin.app_token = APP_TOKEN
    standin.socket_url = socket_server.issue_url
    standin.rate_limit("apps.connections.open", retry_after=1, times=1)  # the start-up check gets a 429
    settings = socket_settings(tmp_path, standin)
    await upgrade(settings.database_url)
    async with serving(settings, standin, socket_server) as running:  # start-up did not wait for Slack
        opens = standin.calls_to("apps.connections.open", ok_only=False)
        assert opens[0].status == 429 and opens[-1].ok
        await running.say("I forgot my password")
        assert "Which fits best?" in (await running.wait_posts(ALICE_DM, 1))[-1]["text"]
