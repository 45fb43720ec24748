"""Data retention and data-subject requests on SQLite and PostgreSQL: `purge` scrubs old message
text while audit events stay; `export_person` returns what is held; `forget_person` leaves no trace
of the address except the pseudonymised record of the request itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from bot.app import App, build_app
from bot.core.models import Address, Incoming, Platform, PlatformUser
from bot.settings import load_settings
from bot.store.repos import UnitOfWork
from bot.store.retention import PURGED, export_person, forget_person, pseudonym, purge
from bot.store.tables import Base, ConversationRow, EventRow, OutboxRow, TicketNoteRow, TicketRow

FLOWS = Path(__file__).resolve().parents[1] / "conversations" / "flows"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ALICE = "alice@example.com"
BOB = "bob@example.com"
SAID = "my vpn won't connect from the hotel zebra-17"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def dm(email: str, words: str, event: str) -> Incoming:
    channel = f"D-{email}"
    return Incoming(platform=Platform.SLACK, conversation_key=f"slack:{channel}:",
                    sender=PlatformUser(Platform.SLACK, f"U-{email}", email=email), event_id=event,
                    reply_to=Address(Platform.SLACK, channel), text=words, is_direct=True)


@pytest.fixture
async def app(migrated: str) -> AsyncIterator[App]:
    settings = load_settings(flows={"dir": str(FLOWS)}, slack={"enabled": True},
                             tickets={"queues": {"default": {"slack": "CQUEUE"}}})
    built = await build_app(settings, clock=Clock(), database_url=migrated)
    yield built
    await built.aclose()


async def seed(app: App, *, waiting: bool = False) -> str:
    """Alice talks and gets a ticket (closed on day 0); Bob talks on day 80."""
    await app.pipeline.handle(dm(ALICE, SAID, "e1"))
    tickets = app.services["tickets"]
    async with app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=NOW, actor="tom.tech@example.com")
        row = await tickets.open(uow, await tickets.person(ALICE), category="vpn", summary=f"VPN: {SAID}",
                                 channel="slack", opened_by=await tickets.person("tom.tech@example.com"))
        ref = row.ref
        session.add(TicketNoteRow(ticket_id=row.id, at=NOW, author="tom.tech@example.com", kind="note",
                                  text=f"called her about {SAID}", data={}))
    async with app.sessions() as session, session.begin():
        await session.execute(update(TicketRow).values(status="closed", closed_at=NOW))
        await session.execute(update(OutboxRow).values(status="sent", sent_at=NOW))
        if waiting:  # one message to her still waiting to go out
            session.add(OutboxRow(idempotency_key=f"notify:x:{ALICE}:0", platform="slack",
                                  address={"platform": "slack", "conversation_id": f"email:{ALICE}"},
                                  payload={"kind": "post", "reply": {"text": "about zebra-17"}},
                                  lane=f"slack:email:{ALICE}",
                                  status="pending", attempts=0, next_attempt_at=NOW, created_at=NOW))
    app.clock.now = NOW + timedelta(days=80)  # type: ignore[attr-defined]
    await app.pipeline.handle(dm(BOB, "printer jammed on floor 3 walrus-9", "e2"))
    return ref


async def dump(app: App) -> str:
    """Every row of every table, as text."""
    parts = []
    async with app.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts.append(json.dumps([str(v) for v in row]))
    return "\n".join(parts)


async def test_purge_scrubs_old_text_and_keeps_the_audit_trail(app: App) -> None:
    await seed(app)
    async with app.sessions() as session:
        events_before = (await session.execute(select(func.count()).select_from(EventRow))).scalar_one()
    assert "zebra-17" in await dump(app)

    counts = await purge(app.sessions, now=NOW + timedelta(days=100), days=90)

    assert counts["events"] > 0 and counts["tickets"] == 1 and counts["conversations"] == 1
    everything = await dump(app)
    assert "zebra-17" not in everything  # day 0 text: gone from events, tickets, notes, outbox, conversations
    assert "walrus-9" in everything  # day 80 text: kept
    async with app.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(EventRow))).scalar_one() == events_before
        types = set((await session.execute(select(EventRow.type))).scalars())
        assert {"reply", "ticket_created"} <= types
        ticket = (await session.execute(select(TicketRow))).scalar_one()
        assert ticket.summary == PURGED and ticket.transcript == [] and ticket.category == "vpn"
        keys = set((await session.execute(select(ConversationRow.key))).scalars())
        assert keys == {f"slack:D-{BOB}:"}
    again = await purge(app.sessions, now=NOW + timedelta(days=100), days=90)
    assert again["events"] == 0 and again["tickets"] == 0 and again["outbox"] == 0


async def test_purge_with_zero_days_keeps_everything(app: App) -> None:
    await seed(app)
    counts = await purge(app.sessions, now=NOW + timedelta(days=1000), days=0)
    assert set(counts.values()) == {0}
    assert "zebra-17" in await dump(app)


async def test_export_then_forget_a_person(app: App) -> None:
    ref = await seed(app, waiting=True)
    exported = await export_person(app.sessions, "Alice@Example.com ")
    assert exported["people"][0]["email"] == ALICE
    assert exported["platform_accounts"] and exported["conversations"]
    assert [t["ref"] for t in exported["tickets"]] == [ref]
    assert {"reply", "ticket_created"} <= {e["type"] for e in exported["events"]}
    assert "zebra-17" in json.dumps(exported)  # plain data, with what she said

    done = await forget_person(app.sessions, ALICE, now=NOW + timedelta(days=81), actor="dpo@example.com")

    counts = done.counts
    assert done.remote == []  # no ticket system here
    assert counts["people"] == 1 and counts["tickets"] == 1
    everything = await dump(app)
    assert ALICE not in everything.lower() and "zebra-17" not in everything
    assert "walrus-9" in everything and BOB in everything  # nobody else is touched
    after = await export_person(app.sessions, ALICE)
    assert all(after[k] == [] for k in after if k != "email")
    async with app.sessions() as session:
        record = (await session.execute(select(EventRow).where(EventRow.type == "person_forgotten"))).scalar_one()
        assert record.subject == pseudonym(ALICE) and record.actor == "dpo@example.com"
        waiting = (await session.execute(select(OutboxRow).where(OutboxRow.idempotency_key.like("notify:x:%"))))
        assert waiting.scalar_one().status == "cancelled"
        ticket = (await session.execute(select(TicketRow))).scalar_one()
        assert ticket.ref == ref and ticket.requester_email == pseudonym(ALICE) and ticket.category == "vpn"
        # A later purge does not undo or trip over it.
        await session.execute(text("SELECT 1"))
    await purge(app.sessions, now=NOW + timedelta(days=200), days=90)
