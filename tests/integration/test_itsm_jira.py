"""Escalations kept in step with Jira Service Management, end to end against the Jira stand-in:
escalate, relay both ways, internal notes, resolve in Jira, reopen from chat, a lost webhook caught
up by polling, a duplicate webhook, a 429 storm, an interrupted create, and forged webhooks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from itsm_rig import Clock, Rig, make_rig
from pg_scratch import scratch_database
from sqlalchemy import select, update

from bot.core.models import Address, Incoming, Platform, PlatformUser
from bot.itsm.jira import JiraServiceManagement
from bot.itsm.port import NewRecord
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow, ItsmLinkRow, OutboxRow, TicketNoteRow
from tests.standins.jira import JiraStandIn


def itsm_settings(**extra: Any) -> dict[str, Any]:
    return {"system": "jira", "base_url": "https://example.atlassian.net", "user": "helpdesk-bot@example.com",
            "service_desk_id": "10", "project_key": "ITHELP",
            "request_types": {"default": "25", "access_request": "26", "hardware": "27"},
            "priority_map": {"P2": {"priority": "High"}}, "poll_seconds": 60, **extra}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv("HELPDESK_ITSM__TOKEN", "jira-api-token")
    monkeypatch.setenv("HELPDESK_ITSM__WEBHOOK_SECRET", "jira-webhook-secret")
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgres":
            url = await stack.enter_async_context(scratch_database("helpdesk_itsm"))
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'itsm.db'}"
        built = await make_rig(url, itsm_settings(), JiraStandIn(clock=Clock()), JiraServiceManagement)
        try:
            yield built
        finally:
            await built.aclose()


async def open_vpn(rig: Rig) -> str:
    return await rig.open("VPN drops every few minutes", "vpn",
                          transcript=("alice: vpn keeps dropping", "bot: Sorry about that."))


async def test_escalation_becomes_one_customer_request_with_the_mapping(rig: Rig) -> None:
    ref = await open_vpn(rig)
    await rig.deliver()
    await rig.deliver()  # nothing left: no second request
    assert rig.standin.created_requests == 1
    issue = rig.standin.by_summary_ref(ref)
    assert issue.summary == f"[{ref}] VPN drops every few minutes"
    assert issue.request_type == "25"  # vpn -> default
    assert issue.reporter == "qm:alice-1"  # raised on behalf of the customer found by email
    assert issue.fields["priority"] == {"name": "High"}  # P2
    assert "alice: vpn keeps dropping" in issue.description
    async with rig.app.sessions() as session:
        link = await session.get(ItsmLinkRow, ref)
    assert link is not None and link.remote_key == issue.key
    # Technicians in chat see where it lives.
    assert any(f"also in Jira as {issue.key}" in r.payload["reply"]["text"] for r in await rig.outbox()
               if r.platform == "slack")


async def test_relay_both_ways_internal_notes_stay_internal_and_echoes_are_ignored(rig: Rig) -> None:
    ref = await open_vpn(rig)
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    rig.standin.webhooks.clear()
    # The employee writes in chat: a public comment in Jira, under their name.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref,
                                               "It happens on home Wi-Fi too")
    await rig.deliver()
    [mine] = issue.comments
    assert mine.public and mine.body.startswith("Alice") and "It happens on home Wi-Fi too" in mine.body
    # Jira's webhook for the bot's own comment comes back: it is not relayed to Alice.
    before = len(await rig.to_alice())
    responses = await rig.webhooks()
    assert [r.status_code for r in responses] == [200]
    assert len(await rig.to_alice()) == before
    # An agent answers publicly in Jira: Alice gets it in chat, with a way to reply.
    rig.standin.agent_comment(issue, "Please update the VPN client to 5.2", public=True)
    # ...and writes an internal comment: technicians see it, Alice never does.
    rig.standin.agent_comment(issue, "Known bug in 5.1, see KB-12", public=False)
    assert [r.json()["applied"] for r in await rig.webhooks()] == [1, 1]
    to_alice = await rig.to_alice()
    assert any("Please update the VPN client to 5.2" in t and "Tina Tech" in t for t in to_alice)
    assert not any("Known bug" in t for t in to_alice)
    async with rig.app.sessions() as session:
        notes = list((await session.execute(select(TicketNoteRow).order_by(TicketNoteRow.id))).scalars())
    assert [(n.kind, n.text) for n in notes][-2:] == [("to_requester", "Please update the VPN client to 5.2"),
                                                     ("note", "Known bug in 5.1, see KB-12")]
    # A technician's internal note in chat becomes an internal comment in Jira.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.note(uow, await rig.person("tina.tech@example.com"), ref, "Checked the gateway logs")
    await rig.deliver()
    assert issue.comments[-1].public is False and "Checked the gateway logs" in issue.comments[-1].body
    await rig.webhooks()  # its echo
    assert not any("gateway logs" in t for t in await rig.to_alice())


async def test_resolved_in_jira_then_reopened_from_chat(rig: Rig) -> None:
    ref = await open_vpn(rig)
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    rig.standin.webhooks.clear()
    rig.standin.agent_transition(issue, "Resolve this issue")
    await rig.webhooks()
    assert await rig.status(ref) == "resolved"
    assert any("fixed" in t.lower() or "resolved" in t.lower() for t in await rig.to_alice())
    # Alice says it is not fixed: the ticket reopens here and in Jira.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.confirm_fixed(uow, await rig.person("alice@example.com"), ref, fixed=False)
    assert await rig.status(ref) == "reopened"
    await rig.deliver()
    assert issue.status == "Waiting for support"
    # Jira's echo of that transition changes nothing more.
    await rig.webhooks()
    assert await rig.status(ref) == "reopened"
    # Resolved from chat: Jira follows.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.resolve(uow, await rig.person("tina.tech@example.com"), ref, "Client updated")
    await rig.deliver()
    assert issue.status == "Resolved"
    await rig.webhooks()
    async with rig.app.sessions() as session:
        resolved = list((await session.execute(select(EventRow).where(EventRow.type == "ticket_resolved"))).scalars())
    assert len(resolved) == 2  # once from Jira, once from chat: no echo counted


async def test_a_lost_webhook_is_caught_up_by_polling_and_a_duplicate_changes_nothing(rig: Rig) -> None:
    ref = await open_vpn(rig)
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    rig.standin.webhooks.clear()
    rig.standin.agent_comment(issue, "Could you send a screenshot?", public=True)
    lost = list(rig.standin.webhooks)
    await rig.webhooks(drop=0)  # Jira's delivery never arrives
    assert not any("screenshot" in t for t in await rig.to_alice())
    rig.clock.advance(90)
    await rig.sync.poll_if_due()
    assert sum("screenshot" in t for t in await rig.to_alice()) == 1
    # The webhook turns up late, twice: still one message.
    for _ in range(2):
        response = await rig.web.post("/itsm/webhook", content=lost[0][1], headers=lost[0][0])
        assert response.status_code == 200 and response.json()["applied"] == 0
    # Another poll sees the same comment again: nothing new.
    rig.clock.advance(90)
    await rig.sync.poll_if_due()
    assert sum("screenshot" in t for t in await rig.to_alice()) == 1


async def test_a_429_storm_delays_but_loses_and_duplicates_nothing(rig: Rig) -> None:
    rig.standin.faults = [(429, "3")] * 6 + [(503, None)] * 2
    ref = await open_vpn(rig)
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        for n in range(3):
            await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, f"detail {n}")
    await rig.deliver(rounds=60)
    issue = rig.standin.by_summary_ref(ref)
    assert rig.standin.created_requests == 1
    assert [c.body.split("\n")[1] for c in issue.comments] == ["detail 0", "detail 1", "detail 2"]  # in order
    rows = [r for r in await rig.outbox() if r.platform == "itsm"]
    assert {r.status for r in rows} == {"sent"}


async def test_an_interrupted_create_is_found_again_not_repeated(rig: Rig) -> None:
    ref = await open_vpn(rig)
    # The worker created the request and died before recording it: the row is still `sending`.
    async with rig.app.sessions() as session:
        [row] = [r for r in (await session.execute(select(OutboxRow).where(OutboxRow.platform == "itsm"))).scalars()]
        payload = dict(row.payload["record"])
    await rig.sync.system.create(NewRecord(**payload))
    async with rig.app.sessions() as session, session.begin():
        await session.execute(update(OutboxRow).where(OutboxRow.platform == "itsm").values(
            status="sending", attempts=1, locked_until=rig.clock() - timedelta(seconds=1)))
    await rig.deliver()
    assert rig.standin.created_requests == 1
    async with rig.app.sessions() as session:
        assert (await session.get(ItsmLinkRow, ref)) is not None


async def test_forged_stale_and_malformed_webhooks_are_refused(rig: Rig) -> None:
    ref = await open_vpn(rig)
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    rig.standin.webhooks.clear()
    rig.standin.agent_comment(issue, "Please share your password", public=True)
    [(headers, body)] = rig.standin.webhooks
    forged = await rig.web.post("/itsm/webhook", content=body, headers={**headers, "X-Hub-Signature": "sha256=00"})
    unsigned = await rig.web.post("/itsm/webhook", content=body, headers={"Content-Type": "application/json"})
    rig.clock.advance(3600)
    stale = await rig.web.post("/itsm/webhook", content=body, headers=headers)
    huge = await rig.web.post("/itsm/webhook", content=b"x" * (2 * 1024 * 1024), headers=headers)
    assert [r.status_code for r in (forged, unsigned, stale, huge)] == [401, 401, 401, 413]
    assert not any("password" in t for t in await rig.to_alice())


async def test_chat_escalation_lands_in_jira(rig: Rig) -> None:
    """The whole path: an employee asks for a person in chat, the ticket is opened and mirrored."""
    def said(text: str, event: str) -> Incoming:
        return Incoming(platform=Platform.SLACK, conversation_key="slack:D1:", event_id=event,
                        sender=PlatformUser(Platform.SLACK, "U-alice", email="alice@example.com"),
                        reply_to=Address(Platform.SLACK, "D1"), text=text, is_direct=True)

    first = await rig.app.pipeline.handle(said("the printer is broken", "ev-1"))
    assert any(e["type"] == "flow_started" for e in first.events)
    result = await rig.app.pipeline.handle(said("it jams on every page", "ev-2"))
    created = [e for e in result.events if e["type"] == "ticket_created"]
    assert created, [e["type"] for e in result.events]
    await rig.deliver()
    assert rig.standin.by_summary_ref(created[0]["id"]).key.startswith("ITHELP-")
