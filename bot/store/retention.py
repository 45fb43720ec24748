"""Data retention and data-subject requests: purge old message text, export or forget one person.

What is purged after `retention.message_days` (the audit trail itself stays, so reports keep their
counts and the record of who did what survives):
- audit events: the text fields of their data (what people wrote, what the bot replied, KB queries);
- conversations untouched since the cutoff (flow answers) are deleted;
- closed tickets: summary, details, transcript and note text;
- delivered / failed / cancelled outbox messages: the message body (the row and its key stay, so a
  platform retry still finds it and sends nothing twice);
- processed platform event ids and expired shared state.

`forget_person` replaces the person's email in what stays with a pseudonym (`forgotten:<sha256
prefix>`, the same for the same address, so an auditor can check a request was carried out), scrubs
their text, deletes their conversations and identities, and records a `person_forgotten` event.
Tickets mirrored into the help desk's ticket system (bot/itsm) keep their link (ids and keys only);
forget cancels mirroring still waiting for their tickets, stops further mirroring both ways, and
returns the remote records that still hold their data: the help desk erases those there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.tables import (
    ConversationRow,
    EventRow,
    InboxRow,
    IncidentPersonRow,
    IncidentRecipientRow,
    IncidentTicketRow,
    ItsmLinkRow,
    OutboxRow,
    PersonIdentityRow,
    PersonRow,
    ProcessedEventRow,
    SharedStateRow,
    TicketNoteRow,
    TicketRow,
)

PURGED = "[purged]"
FORGOTTEN = "[forgotten]"
# Keys of an event's data that hold what someone wrote or was told.
TEXT_KEYS = frozenset({
    "text", "query", "example", "message", "summary", "details", "error", "buttons", "note", "answer",
    "slots", "values", "transcript", "first_message", "comment", "description",
})
WATERMARK_KEY = "retention:events_scrubbed_through"
BATCH = 500


FORGOTTEN_PREFIX = "forgotten:"


def pseudonym(email: str) -> str:
    return FORGOTTEN_PREFIX + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def scrub(data: dict[str, Any] | None, marker: str = PURGED) -> dict[str, Any]:
    """The event data with every text field replaced by `marker` (ids, codes and counts stay)."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        out[key] = marker if key in TEXT_KEYS and value not in (None, "", [], {}) else value
    return out


def is_forgotten(email: str | None) -> bool:
    """The address is a pseudonym: its person was forgotten."""
    return bool(email) and str(email).startswith(FORGOTTEN_PREFIX)


def _scrub_payload(payload: dict[str, Any] | None, marker: str = PURGED) -> dict[str, Any]:
    payload = dict(payload or {})
    reply = dict(payload.get("reply") or {})
    if reply:
        reply.update(text=marker, buttons=[], form=None, rich={})
        payload["reply"] = reply
    # A call to the ticket system (bot/itsm/sync.py): the record's text and requester, a comment, a note.
    record = dict(payload.get("record") or {})
    if record:
        record.update({k: marker for k in ("summary", "description", "requester_email", "requester_name")
                       if k in record})
        payload["record"] = record
    for key in ("text", "note"):
        if payload.get(key):
            payload[key] = marker
    payload["purged"] = True
    return payload


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


async def purge(sessions: async_sessionmaker[AsyncSession], *, now: datetime, days: int) -> dict[str, int]:
    """Purge message text older than `days` (0: nothing). Safe to run on several replicas at once
    and repeatedly: every step is idempotent. Returns counts per kind."""
    counts = {"events": 0, "conversations": 0, "tickets": 0, "outbox": 0, "inbox": 0, "processed_events": 0,
              "shared_state": 0}
    if days <= 0:
        return counts
    cutoff = now - timedelta(days=days)
    async with sessions() as session, session.begin():
        mark = (await session.execute(
            select(SharedStateRow.value).where(SharedStateRow.key == WATERMARK_KEY)
        )).scalar_one_or_none()
        since = datetime.fromisoformat(mark["through"]) if mark else None
    counts["events"] = await _scrub_events(sessions, since, cutoff)
    async with sessions() as session, session.begin():
        result: Any = await session.execute(delete(ConversationRow).where(ConversationRow.updated_at < cutoff))
        counts["conversations"] = int(result.rowcount or 0)
        old_tickets = (await session.execute(
            select(TicketRow).where(TicketRow.status == "closed", TicketRow.closed_at < cutoff,
                                    TicketRow.summary != PURGED)
        )).scalars().all()
        for ticket in old_tickets:
            ticket.summary, ticket.details, ticket.transcript = PURGED, {}, []
            await session.execute(update(TicketNoteRow).where(TicketNoteRow.ticket_id == ticket.id)
                                  .values(text=PURGED, data={}))
        counts["tickets"] = len(old_tickets)
        done = (await session.execute(
            select(OutboxRow).where(OutboxRow.status.not_in(("pending", "sending")), OutboxRow.created_at < cutoff)
        )).scalars().all()
        for row in done:
            if not (row.payload or {}).get("purged"):
                row.payload = _scrub_payload(row.payload)
                row.last_error = None
                counts["outbox"] += 1
        # Handled platform deliveries (their bodies hold what people wrote).
        result = await session.execute(delete(InboxRow).where(InboxRow.status.in_(("done", "failed")),
                                                               InboxRow.created_at < cutoff))
        counts["inbox"] = int(result.rowcount or 0)
        result = await session.execute(delete(ProcessedEventRow).where(ProcessedEventRow.at < cutoff))
        counts["processed_events"] = int(result.rowcount or 0)
        result = await session.execute(delete(SharedStateRow).where(SharedStateRow.expires <= now.timestamp()))
        counts["shared_state"] = int(result.rowcount or 0)
    return counts


async def _scrub_events(sessions: async_sessionmaker[AsyncSession], since: datetime | None,
                        cutoff: datetime) -> int:
    """Scrub events in [since, cutoff) in batches, then move the watermark to cutoff."""
    scrubbed = 0
    last_id = 0
    while True:
        async with sessions() as session, session.begin():
            query = select(EventRow).where(EventRow.at < cutoff, EventRow.id > last_id)
            if since is not None:
                query = query.where(EventRow.at >= since)
            rows = (await session.execute(query.order_by(EventRow.id).limit(BATCH))).scalars().all()
            for row in rows:
                cleaned = scrub(row.data)
                if cleaned != (row.data or {}):
                    row.data = cleaned
                    scrubbed += 1
            if rows:
                last_id = rows[-1].id
        if len(rows) < BATCH:
            break
    async with sessions() as session, session.begin():
        from bot.store.repos import SqlSharedState

        # Only put() runs here, which reads no clock; `cutoff` (from the caller's `now`) stands in.
        await SqlSharedState(session, clock=cutoff.timestamp).put(
            WATERMARK_KEY, {"through": cutoff.isoformat()}, expires=4102444800.0)
    return scrubbed


# ----- data-subject requests ----------------------------------------------------------------------


def _mentions(column: Any, email: str) -> Any:
    """SQL: the JSON column's text contains the address (any case)."""
    return func.lower(cast(column, Text)).contains(email)


def _replace_email(value: Any, email: str, alias: str) -> Any:
    """Plain data with the address replaced by the pseudonym wherever it occurs."""
    if isinstance(value, str):
        return re.sub(re.escape(email), alias, value, flags=re.IGNORECASE) if email in value.lower() else value
    if isinstance(value, dict):
        return {k: _replace_email(v, email, alias) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_email(v, email, alias) for v in value]
    return value


def _row(obj: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in obj.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(obj, column.key)
        out[column.key] = _aware(value).isoformat() if isinstance(value, datetime) else value  # type: ignore[union-attr]
    return out


async def export_person(sessions: async_sessionmaker[AsyncSession], email: str) -> dict[str, Any]:
    """Everything held about one person (by email), as plain JSON-able data."""
    email = email.strip().lower()
    async with sessions() as session:
        people = (await session.execute(select(PersonRow).where(PersonRow.email == email))).scalars().all()
        person_ids = [p.id for p in people]
        identities = (await session.execute(
            select(PersonIdentityRow).where(PersonIdentityRow.person_id.in_(person_ids))
        )).scalars().all() if person_ids else []
        conversations = (await session.execute(
            select(ConversationRow).where(ConversationRow.person_email == email)
        )).scalars().all()
        tickets = (await session.execute(
            select(TicketRow).where(or_(TicketRow.requester_email == email, TicketRow.opened_by == email,
                                        TicketRow.assignee_email == email)).order_by(TicketRow.id)
        )).scalars().all()
        keys = [c.key for c in conversations]
        refs = [t.ref for t in tickets if t.requester_email == email]
        conditions = [EventRow.actor == email, EventRow.subject == email]
        if keys:
            conditions.append(EventRow.conversation_key.in_(keys))
        if refs:
            conditions.append(EventRow.subject.in_(refs))
        events = (await session.execute(select(EventRow).where(or_(*conditions)).order_by(EventRow.id))).scalars().all()
        ticket_ids = [t.id for t in tickets if t.requester_email == email]
        notes = (await session.execute(
            select(TicketNoteRow).where(or_(TicketNoteRow.author == email, TicketNoteRow.ticket_id.in_(ticket_ids)))
            .order_by(TicketNoteRow.id)
        )).scalars().all()
        incidents = (await session.execute(
            select(IncidentPersonRow).where(IncidentPersonRow.email == email)
        )).scalars().all()
        links = await _links(session, [t.ref for t in tickets])
    return {
        "email": email,
        "people": [_row(p) for p in people],
        "platform_accounts": [_row(i) for i in identities],
        "conversations": [_row(c) for c in conversations],
        "events": [_row(e) for e in events],
        "tickets": [_row(t, skip=("queue_posts", "version")) for t in tickets],
        "ticket_notes": [_row(n) for n in notes],
        "outage_reactions": [_row(r) for r in incidents],
        # Their tickets' records in the help desk's ticket system (Jira, ServiceNow): held there too.
        "itsm_records": [{"ticket_ref": link.ticket_ref, "system": link.system, "remote_key": link.remote_key,
                          "url": link.url, "remote_status": link.remote_status} for link in links],
    }


async def _links(session: AsyncSession, refs: list[str]) -> list[ItsmLinkRow]:
    found: list[ItsmLinkRow] = []
    for start in range(0, len(refs), BATCH):
        found += (await session.execute(select(ItsmLinkRow).where(
            ItsmLinkRow.ticket_ref.in_(refs[start:start + BATCH])))).scalars().all()
    return sorted(found, key=lambda link: link.ticket_ref)


@dataclass
class Forgotten:
    """What `forget_person` did: rows removed or changed per kind, and the records in the help desk's
    ticket system that still hold the person's data (the bot cannot erase them; the help desk must)."""

    counts: dict[str, int] = field(default_factory=dict)
    remote: list[dict[str, str]] = field(default_factory=list)


async def forget_person(sessions: async_sessionmaker[AsyncSession], email: str, *, now: datetime,
                        actor: str) -> Forgotten:
    """Erase one person: identities and conversations deleted, their text scrubbed, their email
    replaced by a pseudonym wherever a record must stay. Records the request as `person_forgotten`.
    Calls to the ticket system still waiting with their text are cancelled; their tickets' remote
    records are returned (and recorded, keys only) for the help desk to erase there."""
    email = email.strip().lower()
    alias = pseudonym(email)
    counts: dict[str, int] = {}
    async with sessions() as session, session.begin():
        person_ids = list((await session.execute(select(PersonRow.id).where(PersonRow.email == email))).scalars())
        directs = {f"email:{email}"}
        accounts: list[str] = []
        if person_ids:
            accounts = list((await session.execute(select(PersonIdentityRow.platform_user_id).where(
                PersonIdentityRow.person_id.in_(person_ids)))).scalars())
            for address in (await session.execute(select(PersonIdentityRow.direct_address).where(
                    PersonIdentityRow.person_id.in_(person_ids)))).scalars():
                if address and address.get("conversation_id"):
                    directs.add(str(address["conversation_id"]))
            result: Any = await session.execute(
                delete(PersonIdentityRow).where(PersonIdentityRow.person_id.in_(person_ids)))
            counts["platform_accounts"] = int(result.rowcount or 0)
            result = await session.execute(delete(PersonRow).where(PersonRow.id.in_(person_ids)))
            counts["people"] = int(result.rowcount or 0)
        keys = list((await session.execute(
            select(ConversationRow.key).where(ConversationRow.person_email == email))).scalars())
        result = await session.execute(delete(ConversationRow).where(ConversationRow.person_email == email))
        counts["conversations"] = int(result.rowcount or 0)
        conditions = [EventRow.actor == email, EventRow.subject == email, _mentions(EventRow.data, email)]
        if keys:
            conditions.append(EventRow.conversation_key.in_(keys))
        # Events about their tickets carry what they wrote (ticket_created's summary), whoever acted.
        refs = list((await session.execute(
            select(TicketRow.ref).where(TicketRow.requester_email == email))).scalars())
        if refs:
            conditions.append(EventRow.subject.in_(refs))
        events = (await session.execute(select(EventRow).where(or_(*conditions)))).scalars().all()
        for event in events:
            event.data = _replace_email(scrub(event.data, FORGOTTEN), email, alias)
            if event.actor == email:
                event.actor = alias
            if event.subject == email:
                event.subject = alias
            if event.conversation_key in keys:
                event.conversation_key = alias
        counts["events"] = len(events)
        tickets = (await session.execute(
            select(TicketRow).where(or_(TicketRow.requester_email == email, TicketRow.opened_by == email,
                                        TicketRow.assignee_email == email))
        )).scalars().all()
        links = await _links(session, [t.ref for t in tickets])
        # Calls to the ticket system still waiting: those for their tickets (the record, what they
        # wrote) and their own comments on others' tickets are cancelled, like messages to them.
        itsm_lanes = {f"itsm:{ref}" for ref in refs}
        waiting_itsm = (await session.execute(select(OutboxRow).where(
            OutboxRow.platform == "itsm", OutboxRow.status == "pending"))).scalars().all()
        note_ids = {int(row.idempotency_key.rsplit(":", 1)[1]): row for row in waiting_itsm
                    if row.lane not in itsm_lanes and re.search(r":comment:\d+$", row.idempotency_key)}
        theirs: set[int] = set()
        if note_ids:
            theirs = set((await session.execute(select(TicketNoteRow.id).where(
                TicketNoteRow.id.in_(list(note_ids)), TicketNoteRow.author == email))).scalars())
        cancel_itsm = {row.id for row in waiting_itsm if row.lane in itsm_lanes} | {note_ids[n].id for n in theirs}
        for ticket in tickets:
            if ticket.requester_email == email:
                ticket.requester_email, ticket.requester_name = alias, FORGOTTEN
                ticket.summary, ticket.details, ticket.transcript = FORGOTTEN, {}, []
                if ticket.conversation_key in keys:
                    ticket.conversation_key = None
                await session.execute(update(TicketNoteRow).where(TicketNoteRow.ticket_id == ticket.id)
                                      .values(text=FORGOTTEN, data={}))
            if ticket.opened_by == email:
                ticket.opened_by = alias
            if ticket.assignee_email == email:
                ticket.assignee_email = alias
        counts["tickets"] = len(tickets)
        result = await session.execute(update(TicketNoteRow).where(TicketNoteRow.author == email)
                                       .values(author=alias, text=FORGOTTEN, data={}))
        counts["ticket_notes"] = int(result.rowcount or 0)
        result = await session.execute(delete(IncidentPersonRow).where(IncidentPersonRow.email == email))
        counts["outage_reactions"] = int(result.rowcount or 0)
        await session.execute(update(IncidentRecipientRow).where(IncidentRecipientRow.email == email)
                              .values(email=alias))
        await session.execute(update(IncidentTicketRow).where(IncidentTicketRow.requester == email)
                              .values(requester=alias))
        # Delivered messages to their direct conversations: bodies scrubbed (pending ones still go out, then age out).
        # and every message naming them (queue cards): bodies scrubbed. Messages still waiting to
        # go to them are cancelled; others still waiting go out with the scrubbed body.
        outbox = (await session.execute(
            select(OutboxRow).where(or_(_mentions(OutboxRow.payload, email), _mentions(OutboxRow.address, email),
                       func.lower(OutboxRow.lane).contains(email),
                       func.lower(OutboxRow.idempotency_key).contains(email),
                       func.lower(OutboxRow.group_key).contains(email),
                       *[OutboxRow.address.cast(Text).contains(d) for d in directs],
                       OutboxRow.lane.in_(sorted(itsm_lanes)), OutboxRow.id.in_(sorted(cancel_itsm))))
        )).scalars().all()
        for row in outbox:
            to_them = str((row.address or {}).get("conversation_id", "")).lower() in {d.lower() for d in directs} \
                or email in str(row.address).lower() or row.id in cancel_itsm
            if to_them and row.status == "pending":
                row.status = "cancelled"
            row.payload = _scrub_payload(row.payload, FORGOTTEN)
            row.address = _replace_email(row.address, email, alias)
            # Keys stay unique and stable (the pseudonym is a function of the address).
            row.lane = _replace_email(row.lane, email, alias)
            row.idempotency_key = _replace_email(row.idempotency_key, email, alias)
            row.group_key = _replace_email(row.group_key, email, alias)
            row.last_error = None
        counts["outbox"] = len(outbox)
        # Handled platform deliveries from or naming them (pending ones are still to be answered).
        result = await session.execute(delete(InboxRow).where(
            InboxRow.status.in_(("done", "failed")),
            or_(_mentions(InboxRow.payload, email),
                *[cast(InboxRow.payload, Text).contains(a) for a in accounts if a])))
        counts["inbox"] = int(result.rowcount or 0)
        result = await session.execute(delete(SharedStateRow).where(SharedStateRow.key.contains(email)))
        counts["shared_state"] = int(result.rowcount or 0)
        # The remote records stay linked (ids and keys); the record of the request names them, keys only.
        remote = [{"ticket_ref": link.ticket_ref, "system": link.system, "remote_key": link.remote_key,
                   "url": link.url} for link in links]
        # A create being sent right now cannot be recalled: its record is named without a key yet.
        linked = {link.ticket_ref for link in links}
        in_flight = (await session.execute(select(OutboxRow).where(
            OutboxRow.lane.in_(sorted(itsm_lanes)), OutboxRow.status == "sending"))).scalars().all()
        for row in in_flight:
            ref = str((row.address or {}).get("ref", ""))
            if ref and ref not in linked:
                linked.add(ref)
                remote.append({"ticket_ref": ref, "system": str((row.address or {}).get("system", "")),
                               "remote_key": "", "url": ""})
        data: dict[str, Any] = {"removed": dict(counts)}
        if remote:
            data["remote"] = [{"ticket": r["ticket_ref"], "system": r["system"], "key": r["remote_key"]}
                              for r in remote]
        session.add(EventRow(at=now, type="person_forgotten", conversation_key=None, actor=actor,
                             subject=alias, result="ok", data=data))
    return Forgotten(counts, remote)
