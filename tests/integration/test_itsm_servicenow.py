"""Escalations kept in step with ServiceNow (Table API on incident) against the ServiceNow stand-in,
plus the generic signed webhook, `helpdesk itsm check`, and the claim race and SLA clock with a
connector on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsm_rig import Clock, Rig, make_rig
from sqlalchemy import select
from typer.testing import CliRunner

from bot.itsm.servicenow import ServiceNow
from bot.itsm.webhook import SignedWebhook
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow
from bot.tickets.model import HeldByOther
from tests.standins.servicenow import ServiceNowStandIn

SNOW = {"system": "servicenow", "base_url": "https://example.service-now.com", "user": "svc.helpdesk",
        "assignment_groups": {"default": "g-service-desk", "network": "g-network"},
        "priority_map": {"P1": {"urgency": "1", "impact": "1"}, "P2": {"urgency": "1", "impact": "2"}},
        "custom_fields": {"contact_type": "virtual_agent"}}


async def make_snow_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **itsm: Any) -> Rig:
    monkeypatch.setenv("HELPDESK_ITSM__TOKEN", "snow-password")
    monkeypatch.setenv("HELPDESK_ITSM__WEBHOOK_SECRET", "snow-webhook-secret")
    return await make_rig(f"sqlite+aiosqlite:///{tmp_path / 'snow.db'}", {**SNOW, **itsm},
                          ServiceNowStandIn(clock=Clock()), ServiceNow)


async def open_network(rig: Rig) -> str:
    return await rig.open("No network in room 4B", "network", impact="high", urgency="high")


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    built = await make_snow_rig(tmp_path, monkeypatch)
    yield built
    await built.aclose()


async def test_escalation_becomes_one_incident_with_caller_group_and_priority(rig: Rig) -> None:
    ref = await open_network(rig)
    await rig.deliver()
    await rig.deliver()
    [incident] = rig.standin.tables["incident"]
    assert incident["correlation_id"] == ref and incident["short_description"] == f"[{ref}] No network in room 4B"
    assert incident["caller_id"] == "u-alice" and incident["assignment_group"] == "g-network"
    assert (incident["urgency"], incident["impact"]) == ("1", "1")  # high/high is P1
    assert incident["contact_type"] == "virtual_agent" and incident["category"] == "network"


async def test_comments_work_notes_resolve_and_reopen_both_ways(rig: Rig) -> None:
    ref = await open_network(rig)
    await rig.deliver()
    incident = rig.standin.incident_for(ref)
    rig.standin.webhooks.clear()
    # Chat -> ServiceNow: the requester's message is an additional comment, a technician's note a work note.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, "Room 4B, desk 12")
        await rig.tickets.note(uow, await rig.person("tina.tech@example.com"), ref, "Switch port 12 is down")
    await rig.deliver()
    journal = [(e["element"], e["value"].split("\n")[1]) for e in rig.standin.tables["sys_journal_field"]]
    assert journal == [("comments", "Room 4B, desk 12"), ("work_notes", "Switch port 12 is down")]
    await rig.webhooks()  # the echoes of the bot's own entries
    assert not any("Switch port" in t or "desk 12" in t for t in await rig.to_alice())
    # ServiceNow -> chat: an agent's additional comment reaches Alice; a work note does not.
    rig.standin.agent_comment(incident, "A technician is on the way", public=True)
    rig.standin.agent_comment(incident, "Replacing the patch cable", public=False)
    assert [r.json()["applied"] for r in await rig.webhooks()] == [1, 1]
    alice = await rig.to_alice()
    assert any("A technician is on the way" in t and "Tina Tech" in t for t in alice)
    assert not any("patch cable" in t for t in alice)
    # Resolved in ServiceNow -> resolved here; reopened from chat -> In Progress there.
    rig.standin.agent_state(incident, "6", notes="Cable replaced")
    await rig.webhooks()
    assert await rig.status(ref) == "resolved"
    assert any("Cable replaced" in t for t in await rig.to_alice())
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reopen(uow, await rig.person("alice@example.com"), ref, "Still no network")
    await rig.deliver()
    assert incident["state"] == "2"
    await rig.webhooks()
    assert await rig.status(ref) == "reopened"
    # Resolved from chat: ServiceNow gets state 6 with a close code and notes.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.resolve(uow, await rig.person("tina.tech@example.com"), ref, "New cable")
    await rig.deliver()
    assert incident["state"] == "6" and incident["close_code"] == "Solution provided"
    assert incident["close_notes"].startswith("New cable")


async def test_lost_webhook_caught_up_by_polling_duplicates_and_forgeries_ignored(rig: Rig) -> None:
    ref = await open_network(rig)
    await rig.deliver()
    incident = rig.standin.incident_for(ref)
    rig.standin.webhooks.clear()
    rig.standin.agent_comment(incident, "Is the cable plugged in?", public=True)
    [(headers, body)] = rig.standin.webhooks
    await rig.webhooks(drop=0)
    rig.clock.advance(150)
    await rig.sync.poll_if_due()
    assert sum("cable plugged" in t for t in await rig.to_alice()) == 1
    late = [await rig.web.post("/itsm/webhook", content=body, headers=headers) for _ in range(2)]
    assert [r.json()["applied"] for r in late] == [0, 0]
    forged = await rig.web.post("/itsm/webhook", content=body.replace(b"plugged", b"unplugged"), headers=headers)
    assert forged.status_code == 401
    assert sum("cable plugged" in t for t in await rig.to_alice()) == 1


async def test_rate_limits_and_outages_delay_but_lose_nothing(rig: Rig) -> None:
    rig.standin.faults = [(429, "2")] * 5 + [(503, None)] * 3
    ref = await open_network(rig)
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, "one")
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, "two")
    await rig.deliver(rounds=80)
    assert len(rig.standin.tables["incident"]) == 1
    assert [e["value"].split("\n")[1] for e in rig.standin.tables["sys_journal_field"]] == ["one", "two"]


async def test_the_caller_is_never_created_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = await make_snow_rig(tmp_path, monkeypatch)
    try:
        rig.standin.tables["sys_user"] = [u for u in rig.standin.tables["sys_user"] if u["user_name"] != "alice"]
        await open_network(rig)
        await rig.deliver()
        [incident] = rig.standin.tables["incident"]
        assert "caller_id" not in incident and "Requested by Alice" in incident["description"]
        assert all(u["email"] != "alice@example.com" for u in rig.standin.tables["sys_user"])
    finally:
        await rig.aclose()


async def test_claim_race_still_has_one_winner_with_a_connector_on(rig: Rig) -> None:
    ref = await open_network(rig)
    await rig.deliver()

    async def claim(email: str) -> str:
        try:
            async with rig.app.sessions() as session, session.begin():
                uow = UnitOfWork(session, now=rig.clock())
                await rig.tickets.claim(uow, await rig.person(email), ref)
            return "won"
        except HeldByOther:
            return "held"

    results = await asyncio.gather(claim("tina.tech@example.com"), claim("tom.tech@example.com"))
    assert sorted(results) == ["held", "won"]


@pytest.mark.parametrize(("sla", "breaches"), [("bot", 1), ("itsm", 0)])
async def test_sla_clock_runs_here_or_defers_to_the_itsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         sla: str, breaches: int) -> None:
    rig = await make_snow_rig(tmp_path, monkeypatch, sla=sla)
    try:
        await open_network(rig)
        rig.clock.advance(3 * 24 * 3600)
        await rig.tickets.tick(rig.clock())
        async with rig.app.sessions() as session:
            found = list((await session.execute(select(EventRow).where(EventRow.type == "sla_breached"))).scalars())
        assert len({e.subject for e in found}) == breaches
    finally:
        await rig.aclose()


async def test_generic_webhook_is_signed_and_carries_a_stable_delivery_id(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[httpx.Request] = []
    status = iter([503, 200, 200, 200])

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(next(status))

    rig = await make_snow_rig(tmp_path, monkeypatch)
    try:
        cfg = rig.app.settings.itsm.model_copy(update={"system": "webhook", "base_url": "https://hooks.example.com/hd"})
        rig.sync.system = SignedWebhook(cfg, transport=httpx.MockTransport(receiver), clock=lambda: 1795000000)
        ref = await open_network(rig)
        await rig.deliver()
        assert len(received) == 2  # a 503, then the retry
        first, retry = received
        assert first.headers["X-Helpdesk-Delivery"] == retry.headers["X-Helpdesk-Delivery"]  # same delivery
        body = retry.content
        stamp = retry.headers["X-Helpdesk-Timestamp"]
        expected = hmac.new(b"snow-webhook-secret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert retry.headers["X-Helpdesk-Signature"] == f"sha256={expected}"
        event = json.loads(body)
        assert event["event"] == "ticket.created" and event["ticket"]["id"] == ref
        assert "snow-webhook-secret" not in body.decode()
    finally:
        await rig.aclose()


async def test_itsm_check_reports_in_plain_words(rig: Rig) -> None:
    rig.standin.acl_denied.add("sys_journal_field")
    lines = await rig.sync.system.check()
    text = {line.what: (line.ok, line.detail) for line in lines}
    assert text["sign in"][0] and text["read incidents"][0]
    assert text["read comments"] == (False, text["read comments"][1])
    assert "sys_journal_field" in text["read comments"][1]
    assert text["assignment group for network"] == (True, "Network")


def test_itsm_check_without_a_configured_system_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import app as cli

    result = CliRunner().invoke(cli, ["itsm", "check"])
    assert result.exit_code == 2
    assert "itsm.system" in result.output
    monkeypatch.setenv("HELPDESK_ITSM__SYSTEM", "jira")
    result = CliRunner().invoke(cli, ["itsm", "check"])
    assert result.exit_code == 2 and "itsm.base_url is not set" in result.output


def test_servicenow_base64_signature_as_generatemac_makes_it() -> None:
    from bot.itsm.http import signature_matches

    body = b'{"event_id": "1"}'
    mac = base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()
    assert signature_matches("k", body, mac)
    assert signature_matches("k", body, "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest())
    assert not signature_matches("k", body, mac[:-2] + "AA")
