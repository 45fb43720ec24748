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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from typer.testing import CliRunner

from bot.app import App, build_app
from bot.itsm.servicenow import ServiceNow
from bot.itsm.sync import ItsmSync
from bot.itsm.webhook import SignedWebhook
from bot.itsm.wiring import webhook_route
from bot.outbox.worker import OutboxWorker
from bot.settings import load_settings
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow, OutboxRow, TicketRow
from bot.tickets.service import HeldByOther, TicketService
from tests.standins.servicenow import ServiceNowStandIn

FLOWS = Path(__file__).resolve().parents[1] / "conversations" / "flows"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    app: App
    snow: ServiceNowStandIn
    sync: ItsmSync
    clock: Clock
    web: httpx.AsyncClient

    @property
    def tickets(self) -> TicketService:
        svc = self.app.services["tickets"]
        assert isinstance(svc, TicketService)
        return svc

    async def person(self, email: str) -> Any:
        found = await self.tickets.person(email)
        assert found is not None
        return found

    async def deliver(self, rounds: int = 30) -> None:
        worker = OutboxWorker(self.app.sessions, {"itsm": self.sync}, clock=self.clock)
        for _ in range(rounds):
            if not await worker.run_once():
                async with self.app.sessions() as session:
                    waiting = (await session.execute(select(OutboxRow.id).where(
                        OutboxRow.platform == "itsm", OutboxRow.status.in_(("pending", "sending"))))).first()
                if waiting is None:
                    return
                self.clock.advance(10)

    async def webhooks(self, *, drop: int | None = None) -> list[httpx.Response]:
        sent = []
        queued, self.snow.webhooks = self.snow.webhooks, []
        for number, (headers, body) in enumerate(queued):
            if number != drop:
                sent.append(await self.web.post("/itsm/webhook", content=body, headers=headers))
        return sent

    async def to_alice(self) -> list[str]:
        async with self.app.sessions() as session:
            rows = list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())
        return [r.payload["reply"]["text"] for r in rows
                if r.platform == "slack" and r.address["conversation_id"].endswith("alice@example.com")]

    async def status(self, ref: str) -> str:
        async with self.app.sessions() as session:
            return str((await session.execute(select(TicketRow.status).where(TicketRow.ref == ref))).scalar_one())

    async def open(self, category: str = "network") -> str:
        async with self.app.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=self.clock(), actor="alice@example.com")
            row = await self.tickets.open(uow, await self.person("alice@example.com"), category=category,
                                          summary="No network in room 4B", channel="slack", impact="high",
                                          urgency="high")
            ref = row.ref
        async with self.app.sessions() as session, session.begin():
            await session.execute(update(OutboxRow).where(OutboxRow.idempotency_key.like("ticket:%:queue-post:%"))
                                  .values(status="sent", message_ref="1700.0001"))
        return ref


async def make_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **itsm: Any) -> Rig:
    monkeypatch.setenv("HELPDESK_ITSM__TOKEN", "snow-password")
    monkeypatch.setenv("HELPDESK_ITSM__WEBHOOK_SECRET", "snow-webhook-secret")
    url = f"sqlite+aiosqlite:///{tmp_path / 'snow.db'}"
    await upgrade(url)
    cfg = {"system": "servicenow", "base_url": "https://example.service-now.com", "user": "svc.helpdesk",
           "assignment_groups": {"default": "g-service-desk", "network": "g-network"},
           "priority_map": {"P1": {"urgency": "1", "impact": "1"}, "P2": {"urgency": "1", "impact": "2"}},
           "custom_fields": {"contact_type": "virtual_agent"}, **itsm}
    settings = load_settings(flows={"dir": str(FLOWS)}, slack={"enabled": True},
                             tickets={"queues": {"default": {"slack": "CQUEUE"}}}, itsm=cfg)
    clock = Clock()
    app = await build_app(settings, clock=clock, database_url=url)
    snow = ServiceNowStandIn(clock=clock)
    sync = app.services["itsm"]
    assert isinstance(sync, ItsmSync)
    await sync.system.aclose()
    sync.system = ServiceNow(settings.itsm, transport=snow.transport())
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette(routes=[webhook_route(sync)])),
                            base_url="https://bot.example.com")
    return Rig(app, snow, sync, clock, web)


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    built = await make_rig(tmp_path, monkeypatch)
    yield built
    await built.web.aclose()
    await built.app.aclose()


async def test_escalation_becomes_one_incident_with_caller_group_and_priority(rig: Rig) -> None:
    ref = await rig.open()
    await rig.deliver()
    await rig.deliver()
    [incident] = rig.snow.tables["incident"]
    assert incident["correlation_id"] == ref and incident["short_description"] == f"[{ref}] No network in room 4B"
    assert incident["caller_id"] == "u-alice" and incident["assignment_group"] == "g-network"
    assert (incident["urgency"], incident["impact"]) == ("1", "1")  # high/high is P1
    assert incident["contact_type"] == "virtual_agent" and incident["category"] == "network"


async def test_comments_work_notes_resolve_and_reopen_both_ways(rig: Rig) -> None:
    ref = await rig.open()
    await rig.deliver()
    incident = rig.snow.incident_for(ref)
    rig.snow.webhooks.clear()
    # Chat -> ServiceNow: the requester's message is an additional comment, a technician's note a work note.
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, "Room 4B, desk 12")
        await rig.tickets.note(uow, await rig.person("tina.tech@example.com"), ref, "Switch port 12 is down")
    await rig.deliver()
    journal = [(e["element"], e["value"].split("\n")[1]) for e in rig.snow.tables["sys_journal_field"]]
    assert journal == [("comments", "Room 4B, desk 12"), ("work_notes", "Switch port 12 is down")]
    await rig.webhooks()  # the echoes of the bot's own entries
    assert not any("Switch port" in t or "desk 12" in t for t in await rig.to_alice())
    # ServiceNow -> chat: an agent's additional comment reaches Alice; a work note does not.
    rig.snow.agent_comment(incident, "A technician is on the way", public=True)
    rig.snow.agent_comment(incident, "Replacing the patch cable", public=False)
    assert [r.json()["applied"] for r in await rig.webhooks()] == [1, 1]
    alice = await rig.to_alice()
    assert any("A technician is on the way" in t and "Tina Tech" in t for t in alice)
    assert not any("patch cable" in t for t in alice)
    # Resolved in ServiceNow -> resolved here; reopened from chat -> In Progress there.
    rig.snow.agent_state(incident, "6", notes="Cable replaced")
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
    ref = await rig.open()
    await rig.deliver()
    incident = rig.snow.incident_for(ref)
    rig.snow.webhooks.clear()
    rig.snow.agent_comment(incident, "Is the cable plugged in?", public=True)
    [(headers, body)] = rig.snow.webhooks
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
    rig.snow.faults = [(429, "2")] * 5 + [(503, None)] * 3
    ref = await rig.open()
    async with rig.app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=rig.clock())
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, "one")
        await rig.tickets.reply_from_requester(uow, await rig.person("alice@example.com"), ref, "two")
    await rig.deliver(rounds=80)
    assert len(rig.snow.tables["incident"]) == 1
    assert [e["value"].split("\n")[1] for e in rig.snow.tables["sys_journal_field"]] == ["one", "two"]


async def test_the_caller_is_never_created_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = await make_rig(tmp_path, monkeypatch)
    try:
        rig.snow.tables["sys_user"] = [u for u in rig.snow.tables["sys_user"] if u["user_name"] != "alice"]
        await rig.open()
        await rig.deliver()
        [incident] = rig.snow.tables["incident"]
        assert "caller_id" not in incident and "Requested by Alice" in incident["description"]
        assert all(u["email"] != "alice@example.com" for u in rig.snow.tables["sys_user"])
    finally:
        await rig.web.aclose()
        await rig.app.aclose()


async def test_claim_race_still_has_one_winner_with_a_connector_on(rig: Rig) -> None:
    ref = await rig.open()
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
    rig = await make_rig(tmp_path, monkeypatch, sla=sla)
    try:
        await rig.open()
        rig.clock.advance(3 * 24 * 3600)
        await rig.tickets.tick(rig.clock())
        async with rig.app.sessions() as session:
            found = list((await session.execute(select(EventRow).where(EventRow.type == "sla_breached"))).scalars())
        assert len({e.subject for e in found}) == breaches
    finally:
        await rig.web.aclose()
        await rig.app.aclose()


async def test_generic_webhook_is_signed_and_carries_a_stable_delivery_id(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[httpx.Request] = []
    status = iter([503, 200, 200, 200])

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(next(status))

    rig = await make_rig(tmp_path, monkeypatch)
    try:
        cfg = rig.app.settings.itsm.model_copy(update={"system": "webhook", "base_url": "https://hooks.example.com/hd"})
        rig.sync.system = SignedWebhook(cfg, transport=httpx.MockTransport(receiver), clock=lambda: 1795000000)
        ref = await rig.open()
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
        await rig.web.aclose()
        await rig.app.aclose()


async def test_itsm_check_reports_in_plain_words(rig: Rig) -> None:
    rig.snow.acl_denied.add("sys_journal_field")
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
