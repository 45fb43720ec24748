"""Acknowledged work is durable (issue 20): a Slack delivery is in the inbox before the ack, its
replies are outbox rows committed with the turn, rows left by a stopped process are handled, and a
delivery that cannot be stored is not acknowledged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.slack.translate import inbound_to_json, parse_event
from bot.store.tables import InboxRow, OutboxRow
from tests.channels import slack_harness
from tests.channels.slack_harness import Harness, message_im, slash_command

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin

ALICE_DM = "D0USER0001"


async def _rows(h: Harness, table: Any) -> list[Any]:
    async with h.app.sessions() as session:
        return list((await session.execute(select(table))).scalars().all())


async def test_the_delivery_is_stored_before_the_ack_and_the_reply_is_committed_with_the_turn(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(harness.mount.channel, "_start", lambda item, name: started.append(item.key))
    payload = message_im("hello")
    response = await harness.event(payload)
    assert response.status_code == 200
    # Acknowledged: the row is already committed (nothing else has run yet).
    [row] = await _rows(harness, InboxRow)
    assert row.key == f"slack:{payload['event_id']}" and row.status == "pending"
    assert started == [row.key]
    monkeypatch.undo()
    # Handled: the reply is an outbox row of the turn's transaction, not a call made after it.
    item = await harness.mount.channel.inbox.get(row.id)
    assert item is not None
    harness.mount.channel._start(item, "test")
    await harness.mount.channel.drain()
    assert harness.posts(ALICE_DM) == []
    keys = [r.idempotency_key for r in await _rows(harness, OutboxRow)]
    assert f"reply:slack:{payload['event_id']}:0" in keys
    [row] = await _rows(harness, InboxRow)
    assert row.status == "done"
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == 1


async def test_a_delivery_that_cannot_be_stored_is_not_acknowledged(harness: Harness,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(harness.mount.channel.inbox, "put", broken)
    payload = message_im("hello")
    assert (await harness.event(payload)).status_code == 503  # Slack delivers it again
    command = await harness.command(slash_command("my vpn is down"))
    assert command.status_code == 200 and "try again" in command.text
    monkeypatch.undo()
    # The redelivery (same event id) is taken this time.
    assert (await harness.event(payload)).status_code == 200
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == 1


async def test_rows_left_by_a_stopped_process_are_handled_once(harness: Harness) -> None:
    channel = harness.mount.channel
    payloads = [message_im(f"hello {n}", ts=f"1700000000.00000{n}") for n in range(3)]
    for payload in payloads:
        inbound = parse_event(payload, bot_user_id="U0BOT00001")
        assert inbound is not None
        await channel.inbox.put(f"slack:{inbound.event_id}", "slack", inbound_to_json(inbound), claim=False)
    channel.inbox_poll_seconds = 0.05
    channel.start_inbox()
    for _ in range(200):
        if all(r.status == "done" for r in await _rows(harness, InboxRow)):
            break
        await asyncio.sleep(0.05)
    await harness.settle()
    assert [r.status for r in await _rows(harness, InboxRow)] == ["done"] * 3
    keys = harness.standin.delivered().get(ALICE_DM, [])
    assert sorted(keys) == sorted(f"reply:slack:{p['event_id']}:0" for p in payloads)


async def test_a_turn_that_keeps_failing_is_retried_then_the_person_is_told(harness: Harness,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def failing(incoming: Any) -> Any:
        calls.append(incoming.event_id)
        raise RuntimeError("a bug")

    monkeypatch.setattr(harness.app.pipeline, "handle", failing)
    channel = harness.mount.channel
    channel.inbox.max_attempts = 2
    channel.inbox_poll_seconds = 0.05
    await harness.event(message_im("hello"))
    await channel.drain()
    [row] = await _rows(harness, InboxRow)
    assert row.status == "pending" and "a bug" in (row.last_error or "")
    assert harness.posts(ALICE_DM) == []  # not yet: it is tried again
    async with harness.app.sessions() as session, session.begin():
        again = await session.get(InboxRow, row.id)
        assert again is not None
        again.locked_until = None  # the back-off has passed
    channel.start_inbox()
    for _ in range(200):
        if (await _rows(harness, InboxRow))[0].status != "pending":
            break
        await asyncio.sleep(0.05)
    await channel.drain()
    assert len(calls) == 2
    assert (await _rows(harness, InboxRow))[0].status == "failed"
    [said] = harness.posts(ALICE_DM)
    assert "something went wrong" in json.dumps(said)


async def test_a_requeued_turn_that_fails_again_does_not_say_sorry_twice(harness: Harness,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def failing(incoming: Any) -> Any:
        calls.append(incoming.event_id)
        raise RuntimeError("a bug")

    monkeypatch.setattr(harness.app.pipeline, "handle", failing)
    channel = harness.mount.channel
    channel.inbox.max_attempts = 1
    channel.inbox_poll_seconds = 0.05
    await harness.event(message_im("hello"))
    await channel.drain()
    [row] = await _rows(harness, InboxRow)
    assert row.status == "failed" and row.told_at is not None
    await harness.settle()
    assert len(harness.posts(ALICE_DM)) == 1  # told once

    # The help desk re-queues it (`helpdesk inbox retry`); it fails again: no second apology.
    assert await channel.inbox.requeue([row.id]) == [row.id]  # type: ignore[attr-defined]
    channel.start_inbox()
    for _ in range(200):
        if (await _rows(harness, InboxRow))[0].status != "pending":
            break
        await asyncio.sleep(0.05)
    await channel.drain()
    await harness.settle()
    assert len(calls) == 2 and (await _rows(harness, InboxRow))[0].status == "failed"
    assert len(harness.posts(ALICE_DM)) == 1

    # Once the cause is gone, a retry runs the turn and the person gets the answer.
    monkeypatch.undo()
    assert await channel.inbox.requeue(None) == [row.id]  # type: ignore[attr-defined]
    for _ in range(200):
        if (await _rows(harness, InboxRow))[0].status != "pending":
            break
        await asyncio.sleep(0.05)
    await channel.drain()
    await harness.settle()
    assert (await _rows(harness, InboxRow))[0].status == "done"
    assert len(harness.posts(ALICE_DM)) == 2


async def test_when_the_inbox_cannot_record_the_apology_the_person_is_still_told(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(incoming: Any) -> Any:
        raise RuntimeError("a bug")

    async def unreachable(row_id: int) -> bool:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(harness.app.pipeline, "handle", failing)
    channel = harness.mount.channel
    monkeypatch.setattr(channel.inbox, "tell_once", unreachable)
    channel.inbox.max_attempts = 1
    await harness.event(message_im("hello"))
    await channel.drain()
    await harness.settle()
    [said] = harness.posts(ALICE_DM)  # twice is better than never
    assert "something went wrong" in json.dumps(said)
