"""Outgoing side: retries, unreachable people, outage notices updated in place, pacing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from bot.channels.teams.connector import SlidingWindows, backoff
from bot.channels.teams.sender import TeamsSender
from bot.core.models import Address, Outbound, Platform, Reply
from bot.outbox.worker import Delivery, RetryLater, Undeliverable
from bot.store.repos import UnitOfWork, reply_to_json
from bot.store.tables import OutboxRow
from tests.channels.conftest import TeamsBot
from tests.channels.teams_support import ALICE_CHAT, CHANNEL, payload, personal_message

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)


async def test_connector_429_is_retried_with_retry_after(bot: TeamsBot) -> None:
    bot.standin.fail(429, times=1, retry_after="0", method="POST", activity_type="message")
    await bot.post(personal_message(bot.standin.url, "hello"))
    statuses = [c.status for c in bot.standin.calls if c.body and c.body.get("type") == "message"]
    assert statuses[:2] == [429, 200]
    assert len(bot.standin.posts(ALICE_CHAT)) == 1


def _delivery(address: Address, reply: Reply, *, key: str = "k1", kind: str = "post",
              update_ref: str | None = None, attempts: int = 1) -> Delivery:
    return Delivery(1, key, "teams", address.to_json(),
                    {"kind": kind, "reply": reply_to_json(reply), "update_ref": update_ref, "_interrupted": False},
                    attempts, "lane", None)


@pytest.mark.parametrize("status", [429, 412, 502, 504])
async def test_outbox_transient_failures_retry_later(bot: TeamsBot, status: int) -> None:
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    sender = bot.worker.senders["teams"]
    bot.standin.fail(status, times=1, retry_after="2" if status == 429 else None)
    with pytest.raises(RetryLater) as raised:
        await sender.send(_delivery(Address(Platform.TEAMS, CHANNEL), Reply(text="notice")))
    if status == 429:
        assert raised.value.retry_after is not None and 2.0 <= raised.value.retry_after <= 3.0
    else:
        assert raised.value.retry_after is None  # the worker's exponential backoff with jitter


async def test_person_without_the_app_is_not_reachable_never_retried(bot: TeamsBot) -> None:
    """tom has never talked to the bot on Teams and has not installed it: the connector says 403."""
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    async with bot.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=bot.app.clock())
        from bot.core.models import PlatformUser
        from tests.channels.teams_support import PEOPLE, TOM_AAD

        await uow.remember_person(PEOPLE[TOM_AAD], PlatformUser(Platform.CONSOLE, "tom.tech@example.com"), None)
        uow.enqueue(Outbound(Address(Platform.TEAMS, "email:tom.tech@example.com"), Reply(text="escalation")),
                    idempotency_key="notify-tom")
    await bot.worker.drain()
    async with bot.app.sessions() as session:
        row = (await session.execute(select(OutboxRow).where(OutboxRow.idempotency_key == "notify-tom"))).scalar_one()
    assert row.status == "failed" and row.attempts == 1
    assert "not reachable" in (row.last_error or "") and "not installed" in (row.last_error or "")


async def test_person_with_the_app_installed_gets_a_new_personal_chat(bot: TeamsBot) -> None:
    from tests.channels.teams_support import PEOPLE, TOM_AAD

    bot.standin.installed.add(PEOPLE[TOM_AAD].directory_id)
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    sender = bot.worker.senders["teams"]
    async with bot.app.sessions() as session, session.begin():
        from bot.core.models import PlatformUser

        await UnitOfWork(session, now=bot.app.clock()).remember_person(
            PEOPLE[TOM_AAD], PlatformUser(Platform.CONSOLE, "tom"), None)
    ref = await sender.send(_delivery(Address(Platform.TEAMS, "email:tom.tech@example.com"), Reply(text="hi")))
    assert ref and bot.standin.posts("a:standin-personal-")


async def test_find_delivered_closes_the_duplicate_window(bot: TeamsBot) -> None:
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    sender = bot.worker.senders["teams"]
    assert isinstance(sender, TeamsSender)
    delivery = _delivery(Address(Platform.TEAMS, CHANNEL), Reply(text="once"), key="once-key")
    sent = await sender.send(delivery)
    assert await sender.find_delivered(delivery) == sent


async def test_update_of_a_deleted_message_is_undeliverable(bot: TeamsBot) -> None:
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    sender = bot.worker.senders["teams"]
    sent = await sender.send(_delivery(Address(Platform.TEAMS, CHANNEL), Reply(text="x"), key="x"))
    assert sent
    await sender.send(_delivery(Address(Platform.TEAMS, CHANNEL), Reply(text=""), kind="delete", update_ref="x"))
    with pytest.raises(Undeliverable):
        await sender.send(_delivery(Address(Platform.TEAMS, CHANNEL), Reply(text="y"), kind="update", update_ref=sent))


async def test_pacing_windows() -> None:
    now = [0.0]
    windows = SlidingWindows([(2, 1.0)], clock=lambda: now[0])
    await windows.acquire("c")
    await windows.acquire("c")
    third = asyncio.create_task(windows.acquire("c"))
    await asyncio.sleep(0.05)
    assert not third.done()  # waits for the window
    now[0] = 1.01
    await asyncio.wait_for(third, 6)
    await windows.acquire("other")  # another conversation is not held up


def test_backoff_honours_retry_after_and_jitters() -> None:
    assert backoff(0, 3.0) >= 3.0
    assert len({round(backoff(5), 6) for _ in range(20)}) > 1


async def test_personal_chat_opened_once_is_reused_by_email(bot: TeamsBot) -> None:
    """A chat the connector opened for someone (a notice) is found again by their directory id:
    the next message to them does not open another one."""
    from tests.channels.teams_support import PEOPLE, TOM_AAD

    bot.standin.installed.add(TOM_AAD)
    await bot.post(payload("teams_16_conversationUpdate_bot_added_to_team.json", bot.standin.url))
    sender = bot.worker.senders["teams"]
    async with bot.app.sessions() as session, session.begin():
        from bot.core.models import PlatformUser

        await UnitOfWork(session, now=bot.app.clock()).remember_person(
            PEOPLE[TOM_AAD], PlatformUser(Platform.CONSOLE, "tom"), None)
    for n in range(2):
        await sender.send(_delivery(Address(Platform.TEAMS, "email:tom.tech@example.com"), Reply(text=f"hi {n}"),
                                    key=f"hi-{n}"))
    opened = [c for c in bot.standin.sent("POST") if c.path.rstrip("/") == "/v3/conversations"]
    assert len(opened) == 1
    assert len(bot.standin.posts(opened[0].conversation_id)) == 2
