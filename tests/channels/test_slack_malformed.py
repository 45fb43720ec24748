"""Size and shape (issue 20): what does not look like a Slack request gets 400/401/413 and one log
line, never 500 and a traceback; a body is never read past `server.max_body_bytes`; two people's
messages without Slack's ids never share a dedup key."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.channels import slack_harness
from tests.channels.slack_harness import ALICE, BOB, TEAM, Harness, block_actions, envelope, sign

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


UNSIGNED_BODIES = [
    (b"not json at all", "application/json"),
    (b"null", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
    (b"payload=%5B%5D", "application/x-www-form-urlencoded"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(("raw", "content_type"), UNSIGNED_BODIES)
async def test_unsigned_malformed_bodies_get_401_and_one_line(harness: Harness, raw: bytes, content_type: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(int(time.time())),
               "X-Slack-Signature": "v0=" + "0" * 64}
    response = await harness.client.post("/slack/events", content=raw, headers=headers)
    assert response.status_code == 401
    _no_traceback(caplog)
    assert len([r for r in caplog.records if r.name == "bot.slack"]) == 1


@pytest.mark.parametrize(("raw", "content_type"), UNSIGNED_BODIES)
async def test_signed_malformed_bodies_get_400_not_500(harness: Harness, raw: bytes, content_type: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    response = await harness.post(raw, content_type)
    assert response.status_code == 400
    _no_traceback(caplog)


@pytest.mark.parametrize("timestamp", ["abc", "", "1.5e9", "-1", "12 34", "0x10"])
async def test_non_numeric_timestamp_gets_401(harness: Harness, timestamp: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    response = await harness.client.post(
        "/slack/events", content=b'{"type": "event_callback"}',
        headers={"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
                 "X-Slack-Signature": "v0=abc"})
    assert response.status_code == 401
    _no_traceback(caplog)


SIGNED_ODD_PAYLOADS: list[dict[str, Any]] = [
    {"type": "event_callback"},
    {"type": "event_callback", "event": None, "team_id": TEAM},
    {"type": "event_callback", "event": "text", "team_id": TEAM},
    {"type": "event_callback", "event": {"type": "message"}, "team_id": TEAM, "event_id": "Ev1"},
    {"type": "event_callback", "event": {"type": "message", "user": ALICE, "channel": "D0USER0001",
                                         "channel_type": "im"}, "team_id": TEAM},
    {"type": "something_new"},
    {},
]


@pytest.mark.parametrize("payload", SIGNED_ODD_PAYLOADS)
async def test_signed_events_with_missing_fields_do_not_answer_500(harness: Harness, payload: dict[str, Any],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    response = await harness.event(payload)
    assert response.status_code < 500
    await harness.settle()
    assert response.status_code in (200, 400, 404)


INTERACTIONS: list[dict[str, Any]] = [
    {"type": "block_actions"},
    {"type": "block_actions", "user": {"id": ALICE}, "actions": None},
    {"type": "block_actions", "user": {"id": ALICE}, "actions": ["x"]},
    {"type": "view_submission"},
    {"type": "view_submission", "user": {"id": ALICE}, "view": None},
    {"type": "view_closed", "user": {"id": ALICE}, "view": {"id": "V1"}},
    {"type": "message_action"},
    {"type": "shortcut", "callback_id": "nothing"},
    {"type": "block_suggestion", "action_id": "x", "value": "a"},
    {"type": "interactive_message", "callback_id": "legacy"},
    {"type": "workflow_step_edit"},
    {"type": "totally_unknown"},
    {},
]


@pytest.mark.parametrize("payload", INTERACTIONS, ids=[str(p.get("type")) + str(i) for i, p in enumerate(INTERACTIONS)])
async def test_signed_interactions_of_unknown_types_or_missing_fields_do_not_answer_500(
        harness: Harness, payload: dict[str, Any]) -> None:
    response = await harness.interactive(payload)
    assert response.status_code < 500
    await harness.settle()


# ----- size --------------------------------------------------------------------------------------


async def _streamed(total: int, chunk: int, counter: list[int]) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(chunk, total - sent)
        counter[0] += piece
        sent += piece
        yield b"x" * piece


async def test_a_declared_100_mb_body_gets_413_before_it_is_read(harness: Harness) -> None:
    counter = [0]
    headers = {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}
    response = await harness.client.post("/slack/events", content=_streamed(100 * 1024 * 1024, 65536, counter),
                                         headers=headers)
    assert response.status_code == 413
    # The ASGI test transport hands over the body up front; what counts is that the server stopped
    # at the header: nothing past the limit was taken into the app.
    assert harness.standin.calls_to("users.info") == []


async def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit(harness: Harness) -> None:
    from bot.channels.serve import BodyLimit

    read = [0]
    big = 100 * 1024 * 1024

    async def receive() -> dict[str, Any]:
        read[0] += 65536
        return {"type": "http.request", "body": b"x" * 65536, "more_body": read[0] < big}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    await BodyLimit(app, 1_048_576)({"type": "http", "headers": [], "path": "/slack/events"}, receive, send)
    assert sent[0]["status"] == 413
    assert read[0] <= 1_048_576 + 65536


@pytest.mark.parametrize("path", ["/slack/events", "/healthz", "/api/messages", "/nowhere"])
async def test_every_route_refuses_an_oversized_body(harness: Harness, path: str) -> None:
    body = b"{" + b" " * (harness.settings.server.max_body_bytes + 1) + b"}"
    response = await harness.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


async def test_a_bad_content_length_gets_400(harness: Harness) -> None:
    from bot.channels.serve import BodyLimit

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be called")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await BodyLimit(app, 1024)({"type": "http", "headers": [(b"content-length", b"12abc")]}, receive, send)
    assert sent[0]["status"] == 400


async def test_a_normal_request_still_passes_the_limit(harness: Harness) -> None:
    response = await harness.event(slack_harness.message_im("hello"))
    assert response.status_code == 200
    form = f"payload={quote(json.dumps(block_actions('kb:solved')))}".encode()
    assert (await harness.post(form, "application/x-www-form-urlencoded")).status_code == 200


# ----- dedup keys --------------------------------------------------------------------------------


def _bare_message(user: str, text: str) -> dict[str, Any]:
    """A message event with none of event_id, client_msg_id, event_ts (nor ts)."""
    body = envelope({"user": user, "type": "message", "text": text, "channel": "D" + user[1:],
                     "channel_type": "im"}, "")
    del body["event_id"]
    return body


async def test_two_people_without_event_ids_are_both_answered(harness: Harness) -> None:
    assert (await harness.event(_bare_message(ALICE, "hello"))).status_code == 200
    assert (await harness.event(_bare_message(BOB, "hello"))).status_code == 200
    await harness.settle()
    assert harness.posts("D0USER0001"), "Alice was not answered"
    assert harness.posts("D0USER0002"), "Bob was not answered"


def test_event_keys_differ_by_person_and_place_and_repeat_for_a_redelivery() -> None:
    from bot.channels.slack.translate import event_key

    alice = {"user": ALICE, "type": "message", "text": "hi", "channel": "D0USER0001", "event_ts": "1.000001"}
    bob = {**alice, "user": BOB, "channel": "D0USER0002"}
    assert event_key({}, alice) != event_key({}, bob)
    assert event_key({}, alice) == event_key({}, dict(alice))
    bare_alice = {k: v for k, v in alice.items() if k != "event_ts"}
    bare_bob = {k: v for k, v in bob.items() if k != "event_ts"}
    assert event_key({}, bare_alice) != event_key({}, bare_bob)
    assert event_key({"event_id": "Ev1"}, alice) == "Ev1"
    _ = sign  # the harness signs
