"""The ticket service and handler on SQLite: roles, visibility, thread relay (Slack-shaped), report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app import App, build_app
from bot.core.models import Action, Address, Incoming, Platform, PlatformUser
from bot.settings import load_settings
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow, OutboxRow
from bot.tickets.model import Forbidden, HeldByOther
from bot.tickets.report import build_report, format_report, parse_since
from bot.tickets.service import TicketService

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

FLOWS = Path(__file__).resolve().parents[1] / "conversations" / "flows"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}"
    await upgrade(url)
    settings = load_settings(flows={"dir": str(FLOWS)}, slack={"enabled": True},
                             tickets={"queues": {"default": {"slack": "CQUEUE"}}})
    built = await build_app(settings, clock=Clock(), database_url=url)
    yield built
    await built.aclose()


def service(app: App) -> TicketService:
    svc = app.services["tickets"]
    assert isinstance(svc, TicketService)
    return svc


async def person(app: App, email: str) -> Any:
    found = await service(app).person(email)
    assert found is not None
    return found


async def open_ticket(app: App) -> str:
    async with app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=NOW, actor="tom.tech@example.com")
        row = await service(app).open(uow, await person(app, "alice@example.com"), category="vpn",
                                      summary="VPN down", channel="slack",
                                      opened_by=await person(app, "tom.tech@example.com"))
        ref = row.ref
    # The queue post was delivered: Slack gave it ts 1700.0001 (the thread of the ticket).
    async with app.sessions() as session, session.begin():
        await session.execute(update(OutboxRow).where(OutboxRow.idempotency_key.like("ticket:%:queue-post:%"))
                              .values(status="sent", message_ref="1700.0001"))
    return ref


def slack_incoming(email: str, text: str, *, thread: str | None, event: str, direct: bool = False) -> Incoming:
    channel = "D1" if direct else "CQUEUE"
    return Incoming(platform=Platform.SLACK, conversation_key=f"slack:{channel}:{thread or ''}",
                    sender=PlatformUser(Platform.SLACK, f"U-{email}", email=email), event_id=event,
                    reply_to=Address(Platform.SLACK, channel, thread_id=thread), text=text, is_direct=direct)


async def outbox(app: App) -> list[OutboxRow]:
    async with app.sessions() as session:
        return list((await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars())


async def test_roles_are_checked_whatever_the_payload(app: App) -> None:
    ref = await open_ticket(app)
    svc = service(app)
    async with app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=NOW)
        with pytest.raises(Forbidden) as denied:
            await svc.claim(uow, await person(app, "bob@example.com"), ref)
        assert denied.value.code == 4
        with pytest.raises(Forbidden):
            await svc.show(uow, await person(app, "bob@example.com"), ref)
        assert await svc.list_tickets(uow, await person(app, "bob@example.com"), "open") == []
        mine = await svc.list_tickets(uow, await person(app, "alice@example.com"), "queue")
        assert [t.ref for t in mine] == [ref]  # employees get their own, whatever scope they ask for
        await svc.claim(uow, await person(app, "tina.tech@example.com"), ref)
        with pytest.raises(HeldByOther) as held:
            await svc.resolve(uow, await person(app, "tom.tech@example.com"), ref)
        assert held.value.code == 3 and held.value.holder == "tina.tech@example.com"
        # An admin may take over.
        await svc.assign(uow, await person(app, "ada.admin@example.com"), ref, "theo.tech@example.com")
    # A button click by an employee is refused too.
    click = replace(slack_incoming("bob@example.com", "", thread=None, event="e0", direct=True),
                    text=None, action=Action(value=f"ticket:claim:{ref}"))
    result = await app.pipeline.handle(click)
    assert any(e["type"] == "ticket_refused" and e["reason"] == "forbidden" for e in result.events)


async def test_thread_relay_both_ways_and_notes_stay_internal(app: App) -> None:
    ref = await open_ticket(app)
    # A technician writes in the ticket's thread: relayed to the requester's direct conversation.
    result = await app.pipeline.handle(slack_incoming("tina.tech@example.com", "Can you restart the client?",
                                                      thread="1700.0001", event="e1"))
    assert [e["type"] for e in result.events if e["type"].startswith("ticket_")] == ["ticket_claimed",
                                                                                     "ticket_relayed"]
    assert result.replies == []  # nothing echoed into the thread
    rows = await outbox(app)
    relay = [r for r in rows if ":relay:" in r.idempotency_key]
    assert len(relay) == 1 and relay[0].address["conversation_id"] == "email:alice@example.com"
    assert "Can you restart the client?" in relay[0].payload["reply"]["text"]
    # An internal note in the thread is never relayed.
    result = await app.pipeline.handle(slack_incoming("tina.tech@example.com", "note: user is on an old build",
                                                      thread="1700.0001", event="e2"))
    assert any(e["type"] == "ticket_note" for e in result.events)
    assert not any("old build" in r.payload["reply"]["text"] for r in await outbox(app)
                   if r.address["conversation_id"].endswith("alice@example.com"))
    # The employee answers in their DM (within the relay window): it goes to the ticket's thread.
    result = await app.pipeline.handle(slack_incoming("alice@example.com", "restarted, still broken",
                                                      thread=None, event="e3", direct=True))
    assert any(e["type"] == "ticket_relayed" and e["direction"] == "to_technicians" for e in result.events)
    back = [r for r in await outbox(app) if "restarted, still broken" in r.payload["reply"]["text"]]
    assert back[0].address == {"platform": "slack", "conversation_id": "CQUEUE",
                               "thread_id": f"outbox:ticket:{ref}:queue-post:slack:CQUEUE", "user_id": None}
    # An employee writing in the queue thread is refused, and nothing is relayed.
    result = await app.pipeline.handle(slack_incoming("bob@example.com", "me too", thread="1700.0001", event="e4"))
    assert any(e["type"] == "ticket_refused" for e in result.events)
    assert result.replies[0].reply.private
    # Card updates edit the post in place through the symbolic reference.
    updates = [r for r in await outbox(app) if r.payload["kind"] == "update"]
    assert updates and all(r.payload["update_ref"] == f"outbox:ticket:{ref}:queue-post:slack:CQUEUE"
                           for r in updates)


@pytest.mark.parametrize("text", [
    "Internal note: she is on the old VPN build, secret-note-2",
    "INTERNAL - secret-note-2, waiting on the vendor",
    "[internal] secret-note-2",
    "Tech only: secret-note-2",
    "Note to self: secret-note-2",
    "Notes - secret-note-2",
    "not for the user: secret-note-2",
])
async def test_note_looking_thread_message_is_kept_as_a_note_with_a_confirmation(app: App, text: str) -> None:
    """Issue 20: only `note:` was recognised; "Internal note: ..." reached the employee."""
    await open_ticket(app)
    result = await app.pipeline.handle(slack_incoming("tina.tech@example.com", text, thread="1700.0001", event="n1"))
    assert [e["type"] for e in result.events if e["type"].startswith("ticket_")] == ["ticket_note"]
    assert not [r for r in await outbox(app) if "secret-note-2" in r.payload["reply"]["text"]
                and r.address["conversation_id"].endswith("alice@example.com")]
    confirm = result.replies[-1].reply
    assert confirm.private and "not" in confirm.text and "Alice Employee" in confirm.text
    assert [b.label for b in confirm.buttons] == ["Send it to Alice"]
    # The technician says it was meant for Alice after all: relayed once, on that explicit click.
    click = replace(slack_incoming("tina.tech@example.com", "", thread="1700.0001", event="n2"),
                    text=None, action=Action(value=confirm.buttons[0].value))
    result = await app.pipeline.handle(click)
    assert any(e["type"] == "ticket_relayed" and e["direction"] == "to_requester" for e in result.events)
    sent = [r for r in await outbox(app) if "secret-note-2" in r.payload["reply"]["text"]
            and r.address["conversation_id"].endswith("alice@example.com")]
    assert len(sent) == 1
    again = await app.pipeline.handle(replace(click, event_id="n3"))
    assert any(e["type"] == "ticket_refused" for e in again.events)
    # Only the note's author may send it; an employee cannot at all.
    bob = replace(click, event_id="n4", sender=PlatformUser(Platform.SLACK, "U-bob", email="bob@example.com"))
    assert any(e["type"] == "ticket_refused" for e in (await app.pipeline.handle(bob)).events)


@pytest.mark.parametrize("text", ["Note that the new client needs a restart", "Internet looks fine from here",
                                  "Could you try the other printer?"])
async def test_ordinary_thread_messages_are_still_relayed(app: App, text: str) -> None:
    await open_ticket(app)
    result = await app.pipeline.handle(slack_incoming("tina.tech@example.com", text, thread="1700.0001", event="o1"))
    assert any(e["type"] == "ticket_relayed" for e in result.events)


async def test_relay_window_closes(app: App) -> None:
    await open_ticket(app)
    await app.pipeline.handle(slack_incoming("tina.tech@example.com", "Any news?", thread="1700.0001", event="e1"))
    app.clock.now = NOW + timedelta(hours=25)  # type: ignore[attr-defined]
    result = await app.pipeline.handle(slack_incoming("alice@example.com", "the printer is broken", thread=None,
                                                      event="e2", direct=True))
    assert not any(e["type"] == "ticket_relayed" for e in result.events)
    assert any(e["type"] == "flow_started" for e in result.events)


async def test_report_figures(app: App) -> None:
    ref = await open_ticket(app)
    svc = service(app)
    tina = await person(app, "tina.tech@example.com")
    async with app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=NOW + timedelta(minutes=30))
        await svc.reply_to_requester(uow, tina, ref, "On it")
        uow.now = NOW + timedelta(hours=2)
        await svc.resolve(uow, tina, ref, "fixed")
        await svc.rate(uow, await person(app, "alice@example.com"), ref, 5)
        # A deflected conversation: KB solved it, no ticket.
        for kind, data in (("flow_started", {"flow": "email"}), ("kb_solved", {"articles": ["a"]}),
                           ("flow_ended", {"flow": "email", "outcome": "deflected"})):
            session.add(EventRow(at=NOW, type=kind, conversation_key="slack:D2", actor="bob@example.com", data=data))
    data = await build_report(app.sessions, app.settings, since=parse_since("30d"), now=NOW + timedelta(days=1))
    assert data["volume"]["tickets"] == 1
    assert data["deflection"]["deflected"] == 1 and data["deflection"]["rate"] == 1.0
    p4 = data["response_times"]["P4"]
    assert p4["first_response_minutes"]["median"] == 30
    assert data["sla_compliance"]["P4"]["first_response"]["compliance"] == 1.0
    assert data["satisfaction"]["average"] == 5
    assert data["technicians"]["tina.tech@example.com"]["resolved"] == 1
    assert "section,metric,value" in format_report(data, "csv")
    assert '"deflection"' in format_report(data, "json")
