"""Data-subject requests when tickets also live in the help desk's ticket system (Jira stand-in):
the export names the remote records, forget keeps the links (keys only) but says which remote records
still hold the person's data, cancels mirroring still waiting with their text, and ignores what later
comes back for their tickets, so nothing about them is re-created here."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from itsm_rig import Clock, Rig, make_rig
from pg_scratch import scratch_database
from sqlalchemy import select

from bot.itsm.jira import JiraServiceManagement
from bot.store.repos import UnitOfWork
from bot.store.retention import export_person, forget_person, pseudonym
from bot.store.tables import EventRow, ItsmLinkRow, OutboxRow, TicketNoteRow
from tests.standins.jira import JiraStandIn

ALICE = "alice@example.com"
SAID = "my badge number is 40-1177 zebra"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv("HELPDESK_ITSM__TOKEN", "jira-api-token")
    monkeypatch.setenv("HELPDESK_ITSM__WEBHOOK_SECRET", "jira-webhook-secret")
    settings = {"system": "jira", "base_url": "https://example.atlassian.net", "user": "helpdesk-bot@example.com",
                "service_desk_id": "10", "project_key": "ITHELP", "request_types": {"default": "25"},
                "poll_seconds": 60}
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgres":
            url = await stack.enter_async_context(scratch_database("helpdesk_itsm_privacy"))
        else:
            url = f"sqlite+aiosqlite:///{tmp_path / 'itsm.db'}"
        built = await make_rig(url, settings, JiraStandIn(clock=Clock()), JiraServiceManagement)
        try:
            yield built
        finally:
            await built.aclose()


async def reply(rig: Rig, ref: str, text: str) -> None:
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reply_from_requester(uow, await rig.person(ALICE), ref, text)


async def test_export_names_the_remote_record(rig: Rig) -> None:
    ref = await rig.open("VPN drops", "vpn")
    assert (await export_person(rig.app.sessions, ALICE))["itsm_records"] == []  # not in Jira yet
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    exported = await export_person(rig.app.sessions, ALICE)
    url = f"https://example.atlassian.net/servicedesk/customer/portal/1/{issue.key}"  # the customer portal's
    assert exported["itsm_records"] == [{"ticket_ref": ref, "system": "jira", "remote_key": issue.key,
                                         "url": url, "remote_status": "open"}]
    json.dumps(exported)  # plain data


async def test_forget_names_remote_records_cancels_waiting_mirroring_and_ignores_what_comes_back(rig: Rig) -> None:
    ref = await rig.open("VPN drops", "vpn")
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    await reply(rig, ref, SAID)  # waiting in the outbox for Jira, with what she wrote
    rig.standin.webhooks.clear()

    result = await forget_person(rig.app.sessions, ALICE, now=rig.clock(), actor="dpo@example.com")

    url = f"https://example.atlassian.net/servicedesk/customer/portal/1/{issue.key}"
    assert result.remote == [{"ticket_ref": ref, "system": "jira", "remote_key": issue.key, "url": url}]
    assert result.counts["tickets"] == 1
    async with rig.app.sessions() as session:
        link = await session.get(ItsmLinkRow, ref)
        assert link is not None and link.remote_key == issue.key  # kept: ids and keys only
        record = (await session.execute(select(EventRow).where(EventRow.type == "person_forgotten"))).scalar_one()
        assert record.data["remote"] == [{"ticket": ref, "system": "jira", "key": issue.key}]
        assert ALICE not in json.dumps(record.data) and record.subject == pseudonym(ALICE)
        itsm = list((await session.execute(select(OutboxRow).where(OutboxRow.platform == "itsm"))).scalars())
    waiting = [r for r in itsm if ":comment:" in r.idempotency_key]
    assert [r.status for r in waiting] == ["cancelled"]
    for row in itsm:  # neither the waiting comment nor the delivered create keeps her text or address
        assert "zebra" not in json.dumps(row.payload) and ALICE not in json.dumps(row.payload).lower()
        assert "VPN drops" not in json.dumps(row.payload)
    await rig.deliver()
    assert not any("zebra" in c.body for c in issue.comments)  # never sent afterwards

    # Further changes to her ticket are not mirrored (the record there is to be erased)...
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.note(uow, await rig.person("tina.tech@example.com"), ref, "Checked the gateway")
    await rig.deliver()
    assert issue.comments == []
    # ...and what an agent writes there later is not taken in: no note, no message, nothing linked.
    notes_before = await count_notes(rig)
    chat_before = len(await rig.outbox())
    rig.standin.agent_comment(issue, "Alice, your badge 40-1177 is reissued", public=True)
    assert [r.json()["applied"] for r in await rig.webhooks()] == [0]
    rig.clock.advance(90)
    await rig.sync.poll_if_due()
    assert await count_notes(rig) == notes_before and len(await rig.outbox()) == chat_before
    after = await export_person(rig.app.sessions, ALICE)
    assert all(after[k] == [] for k in after if k != "email")


async def count_notes(rig: Rig) -> int:
    async with rig.app.sessions() as session:
        return len(list((await session.execute(select(TicketNoteRow.id))).scalars()))


async def test_forget_before_the_create_went_out_sends_nothing(rig: Rig) -> None:
    await rig.open("VPN drops", "vpn")  # the create waits in the outbox
    result = await forget_person(rig.app.sessions, ALICE, now=rig.clock(), actor="dpo@example.com")
    assert result.remote == []  # nothing there to erase...
    await rig.deliver()
    assert rig.standin.created_requests == 0  # ...and nothing goes there


async def test_forgetting_a_technician_cancels_their_waiting_comment_and_mirroring_goes_on(rig: Rig) -> None:
    ref = await rig.open("VPN drops", "vpn")
    await rig.deliver()
    issue = rig.standin.by_summary_ref(ref)
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.note(uow, await rig.person("tina.tech@example.com"), ref, "Tina here, walrus-5")
    result = await forget_person(rig.app.sessions, "tina.tech@example.com", now=rig.clock(), actor="dpo@example.com")
    assert result.remote == []  # not her ticket: the record holds nothing of hers yet
    await reply(rig, ref, "still broken")  # Alice's ticket is still mirrored
    await rig.deliver()
    assert len(issue.comments) == 1 and "still broken" in issue.comments[0].body
    itsm = [r for r in await rig.outbox() if r.platform == "itsm"]
    assert [r.status for r in itsm if ":comment:" in r.idempotency_key] == ["cancelled", "sent"]
    assert not any("walrus-5" in json.dumps(r.payload) for r in itsm)


async def test_purge_scrubs_delivered_calls_to_the_ticket_system(rig: Rig) -> None:
    from datetime import timedelta

    from bot.store.retention import PURGED, purge

    ref = await rig.open("VPN drops", "vpn")
    await rig.deliver()
    await reply(rig, ref, SAID)
    await rig.deliver()
    await purge(rig.app.sessions, now=rig.clock() + timedelta(days=100), days=90)
    itsm = [r for r in await rig.outbox() if r.platform == "itsm"]
    assert {r.payload["op"] for r in itsm} == {"create", "comment"}
    for row in itsm:
        text = json.dumps(row.payload)
        assert "zebra" not in text and "VPN drops" not in text and ALICE not in text and PURGED in text


async def test_a_create_in_flight_while_forgetting_is_still_named(rig: Rig) -> None:
    from sqlalchemy import update

    ref = await rig.open("VPN drops", "vpn")
    async with rig.app.sessions() as session, session.begin():  # a worker is sending the create right now
        await session.execute(update(OutboxRow).where(OutboxRow.platform == "itsm").values(status="sending"))
    result = await forget_person(rig.app.sessions, ALICE, now=rig.clock(), actor="dpo@example.com")
    assert result.remote == [{"ticket_ref": ref, "system": "jira", "remote_key": "", "url": ""}]
