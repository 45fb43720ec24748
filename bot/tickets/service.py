"""Tickets: every operation that changes a ticket (open, claim, assign, relay, resolve, reopen, rate,
and the changes made in the help desk's ticket system), plus the service's entry points for reading
(bot/tickets/queries.py) and for the periodic job (bot/tickets/watch.py).

Each operation runs inside a caller's `UnitOfWork` (a chat turn, a CLI command, the periodic job),
so the ticket change, its audit event and every message it causes (queue posts, card updates,
relays, reminders) commit together or not at all. Messages go through the outbox with stable
idempotency keys; nothing is sent directly from here.

Concurrency: a claim is one conditional UPDATE (`... WHERE status IN ('new','reopened') AND
assignee_email IS NULL`), so on any number of replicas exactly one claimant's UPDATE matches and
only that transaction writes the `ticket_claimed` event; everyone else re-reads the row and is
told who holds it. Other changes lock the ticket row (`SELECT ... FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite) before reading and writing it.

Roles are checked here, server-side, on every operation, whatever a button payload says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update

from bot.core.models import Button, Person
from bot.store.repos import UnitOfWork, insert_ignore
from bot.store.tables import TicketCounterRow, TicketNoteRow, TicketRow
from bot.tickets import queries, watch
from bot.tickets.desk import TicketDesk
from bot.tickets.model import (
    B_FIXED,
    B_REPLY,
    CLAIMABLE,
    CLAIMED,
    CLOSED,
    NEW,
    OPEN_STATUSES,
    REOPENED,
    RESOLVED,
    STATUS_LABELS,
    WAITING,
    Forbidden,
    HeldByOther,
    InvalidState,
    Outcome,
    TicketView,
    view_of,
)

log = logging.getLogger("bot.tickets")


class TicketService(TicketDesk):
    # -- opening --

    async def _next_number(self, uow: UnitOfWork) -> int:
        await insert_ignore(uow.session, TicketCounterRow, {"name": "ticket", "value": self.cfg.first_number - 1},
                            ["name"])
        result = await uow.session.execute(
            update(TicketCounterRow).where(TicketCounterRow.name == "ticket")
            .values(value=TicketCounterRow.value + 1).returning(TicketCounterRow.value)
        )
        return int(result.scalar_one())

    async def open(self, uow: UnitOfWork, requester: Person, *, category: str, summary: str,
                   impact: str = "low", urgency: str = "low", channel: str = "console",
                   details: Mapping[str, Any] | None = None, tried_articles: Sequence[str] = (),
                   tried_actions: Sequence[str] = (), transcript: Sequence[str] = (),
                   conversation_key: str | None = None, flow_id: str | None = None,
                   opened_by: Person | None = None) -> TicketRow:
        impact = impact if impact in self.cfg.priority_matrix else "low"
        urgency = urgency.strip().lower() or "low"
        priority = self.cfg.priority(impact, urgency)
        ref = f"{self.cfg.id_prefix}{await self._next_number(uow)}"
        row = TicketRow(
            ref=ref, requester_email=requester.email.lower(), requester_name=requester.display_name,
            opened_by=(opened_by or requester).email.lower(), channel=channel, conversation_key=conversation_key,
            flow_id=flow_id, category=category, impact=impact, urgency=urgency, priority=priority, status=NEW,
            summary=summary.strip()[:2000] or "(no summary)", details=dict(details or {}),
            tried_articles=list(tried_articles), tried_actions=list(tried_actions), transcript=list(transcript),
            created_at=uow.now, updated_at=uow.now, paused_minutes=0, reopen_count=0, queue_posts=[], version=1,
        )
        uow.session.add(row)
        await uow.session.flush()
        # The summary lets other desks relate the ticket (an outage whose service it names links it).
        uow.emit("ticket_created", subject=ref, id=ref, category=category, priority=priority,
                 summary=row.summary[:300])
        await self.post_to_queue(uow, row)
        if self.mirror is not None:
            self.mirror.created(uow, row)
        if opened_by is not None and opened_by.email.lower() != requester.email.lower():
            await self.to_person(uow, requester.email, channel, "ticket_requester_notice",
                                 {"kind": "opened_for_you", "ticket_id": ref, "summary": row.summary,
                                  "tech": opened_by.display_name,
                                  "first_response": self.first_response_text(priority, uow.now)},
                                 f"ticket:{ref}:opened-for")
        return row

    async def add_update(self, uow: UnitOfWork, requester: Person, ref: str, summary: str,
                         details: Mapping[str, Any]) -> tuple[TicketRow, TicketNoteRow]:
        """More about a problem that already has an open ticket (a second conversation about it)."""
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        note = self.add_note(uow, row, requester.email, "update", summary,
                             {"summary": summary, "details": dict(details)})
        await uow.session.flush()
        if row.status == WAITING:
            self.resume(uow, row)
            row.status = CLAIMED if row.assignee_email else NEW
        self.touch(uow, row)
        uow.emit("ticket_updated", subject=row.ref, id=row.ref, by="requester")
        if self.mirror is not None:
            self.mirror.comment(uow, row, note.id, row.requester_name, summary, public=True)
        await self.to_thread(uow, row, "ticket_relay_to_queue",
                             {"kind": "update", "name": row.requester_name, "text": summary}, f"update:{note.id}")
        return row, note

    async def split(self, uow: UnitOfWork, requester: Person, ref: str, note_id: int) -> TicketRow:
        """The person says the details added to `ref` are a different problem: a ticket of their own."""
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        note = await uow.session.get(TicketNoteRow, note_id, with_for_update=True)
        if note is None or note.ticket_id != row.id or note.kind != "update":
            raise InvalidState(row.ref, "nothing to split")
        if note.data.get("split_to"):
            raise InvalidState(row.ref, f"already opened as {note.data['split_to']}")
        new = await self.open(uow, requester, category=row.category, summary=str(note.data.get("summary") or note.text),
                              impact=row.impact, urgency=row.urgency, channel=row.channel,
                              details=dict(note.data.get("details") or {}), conversation_key=uow.conversation_key)
        note.data = {**note.data, "split_to": new.ref}
        return new

    # -- technician operations --

    async def claim(self, uow: UnitOfWork, actor: Person, ref: str) -> Outcome:
        self.require_technician(actor, ref)
        row = await self.get(uow, ref)
        result: Any = await uow.session.execute(
            update(TicketRow)
            .where(TicketRow.id == row.id, TicketRow.assignee_email.is_(None), TicketRow.status.in_(CLAIMABLE))
            .values(assignee_email=actor.email.lower(), status=CLAIMED, claimed_at=uow.now, worked_at=None,
                    updated_at=uow.now, version=TicketRow.version + 1)
            .execution_options(synchronize_session=False)
        )
        row = await self.get(uow, ref)
        if result.rowcount != 1:
            if row.assignee_email == actor.email.lower():
                return Outcome(view_of(row), "already_yours")
            if row.assignee_email:
                raise HeldByOther(row.ref, row.assignee_email, await self.name_of(row.assignee_email))
            raise InvalidState(row.ref, f"it is {STATUS_LABELS.get(row.status, row.status).lower()}")
        uow.emit("ticket_claimed", subject=row.ref, id=row.ref, by=actor.email.lower())
        await self.update_cards(uow, row)
        await self.to_person(uow, row.requester_email, row.channel, "ticket_requester_notice",
                             {"kind": "claimed", "ticket_id": row.ref, "tech": actor.display_name},
                             f"ticket:{row.ref}:claimed:v{row.version}")
        return Outcome(view_of(row), "claimed")

    async def _held_check(self, row: TicketRow, actor: Person) -> None:
        if row.assignee_email and row.assignee_email != actor.email.lower() and not actor.is_admin:
            raise HeldByOther(row.ref, row.assignee_email, await self.name_of(row.assignee_email))

    async def assign(self, uow: UnitOfWork, actor: Person, ref: str, to_email: str) -> Outcome:
        self.require_technician(actor, ref)
        target = await self.person(to_email)
        if target is None or not target.is_technician:
            raise InvalidState(ref.upper(), f"{to_email} is not a technician")
        row = await self.get(uow, ref, lock=True)
        if row.status not in OPEN_STATUSES:
            raise InvalidState(row.ref, f"it is {STATUS_LABELS.get(row.status, row.status).lower()}")
        await self._held_check(row, actor)
        previous = row.assignee_email
        row.assignee_email = target.email.lower()
        if row.status in CLAIMABLE:
            row.status = CLAIMED
        row.claimed_at, row.worked_at = uow.now, None  # the new holder's claim clock starts now
        self.touch(uow, row)
        uow.emit("ticket_assigned", subject=row.ref, id=row.ref, to=target.email.lower(), by=actor.email.lower(),
                 previous=previous)
        await self.update_cards(uow, row)
        if target.email.lower() != actor.email.lower():
            await self.to_person(uow, target.email, None, "ticket_notice",
                                 {"kind": "assigned", "ticket_id": row.ref, "by": actor.display_name,
                                  "summary": row.summary, "requester_name": row.requester_name},
                                 f"ticket:{row.ref}:assigned:v{row.version}",
                                 buttons=self.card_buttons(row)[1:] if row.status != CLAIMED else ())
        return Outcome(view_of(row), "assigned", {"to": target.email, "to_name": target.display_name})

    async def resolve(self, uow: UnitOfWork, actor: Person, ref: str, note: str = "") -> Outcome:
        self.require_technician(actor, ref)
        row = await self.get(uow, ref, lock=True)
        if row.status not in OPEN_STATUSES:
            raise InvalidState(row.ref, f"it is already {STATUS_LABELS.get(row.status, row.status).lower()}")
        await self._held_check(row, actor)
        self.mark_first_response(uow, row)
        row.resolution_minutes = round(self.elapsed(row, uow.now))
        row.assignee_email = row.assignee_email or actor.email.lower()
        row.status, row.resolved_at, row.worked_at, row.fixed = RESOLVED, uow.now, uow.now, None
        self.pause(uow, row)
        self.touch(uow, row)
        if note.strip():
            self.add_note(uow, row, actor.email, "to_requester", note.strip(), {"resolution": True})
        uow.emit("ticket_resolved", subject=row.ref, id=row.ref, by=actor.email.lower())
        if self.mirror is not None:
            self.mirror.status(uow, row, "resolved", note.strip())
        await self.update_cards(uow, row)
        await self.to_person(
            uow, row.requester_email, row.channel, "ticket_resolved_requester",
            {"ticket_id": row.ref, "tech": actor.display_name, "note": note.strip(), "summary": row.summary},
            f"ticket:{row.ref}:resolved:v{row.version}",
            buttons=(Button("Yes, it's fixed", f"{B_FIXED}{row.ref}:yes", "primary"),
                     Button("No, still broken", f"{B_FIXED}{row.ref}:no")))
        return Outcome(view_of(row), "resolved")

    async def reopen(self, uow: UnitOfWork, actor: Person, ref: str, reason: str = "") -> Outcome:
        row = await self.get(uow, ref, lock=True)
        is_requester = row.requester_email == actor.email.lower()
        if not (actor.is_technician or is_requester):
            raise Forbidden(row.ref, "not your ticket")
        if row.status == CLOSED and not actor.is_technician:
            raise InvalidState(row.ref, "it is closed; tell me about the problem and I'll open a new ticket")
        if row.status not in (RESOLVED, CLOSED):
            raise InvalidState(row.ref, f"it is {STATUS_LABELS.get(row.status, row.status).lower()}, not resolved")
        self.resume(uow, row)
        row.status, row.resolved_at, row.closed_at, row.resolution_minutes = REOPENED, None, None, None
        row.reopen_count = (row.reopen_count or 0) + 1
        row.claimed_at, row.worked_at = uow.now, None  # the holder must pick it up again, or it is released
        self.touch(uow, row)
        if reason.strip():
            self.add_note(uow, row, actor.email, "from_requester" if is_requester else "note", reason.strip())
        uow.emit("ticket_reopened", subject=row.ref, id=row.ref, by=actor.email.lower(),
                 requester=is_requester)
        if self.mirror is not None:
            self.mirror.status(uow, row, "open", reason.strip())
        await self.update_cards(uow, row)
        await self.to_thread(uow, row, "ticket_notice",
                             {"kind": "reopened", "by": actor.display_name, "reason": reason.strip(),
                              "summary": row.summary, "requester_name": row.requester_name},
                             f"reopened:v{row.version}")
        if not is_requester:
            await self.to_person(uow, row.requester_email, row.channel, "ticket_requester_notice",
                                 {"kind": "reopened", "ticket_id": row.ref, "tech": actor.display_name},
                                 f"ticket:{row.ref}:reopened:v{row.version}")
        return Outcome(view_of(row), "reopened")

    async def note(self, uow: UnitOfWork, actor: Person, ref: str, text: str) -> Outcome:
        """An internal note: stored and shown to technicians, never relayed to the requester."""
        self.require_technician(actor, ref)
        if not text.strip():
            raise InvalidState(ref.upper(), "the note is empty")
        row = await self.get(uow, ref, lock=True)
        note = self.add_note(uow, row, actor.email, "note", text.strip())
        if row.assignee_email == actor.email.lower():
            row.worked_at = uow.now
        self.touch(uow, row)
        await uow.session.flush()
        uow.emit("ticket_note", subject=row.ref, id=row.ref, by=actor.email.lower(), length=len(text.strip()))
        if self.mirror is not None:
            self.mirror.comment(uow, row, note.id, actor.display_name, text.strip(), public=False)
        others = [e for e in ([row.assignee_email] if row.assignee_email else []) if e != actor.email.lower()]
        await self.to_thread(uow, row, "ticket_notice",
                             {"kind": "note", "by": actor.display_name, "text": text.strip()},
                             f"note:{note.id}", console_to=others)
        return Outcome(view_of(row), "noted", {"note_id": note.id})

    async def send_note_to_requester(self, uow: UnitOfWork, actor: Person, ref: str, note_id: int) -> Outcome:
        """A message kept as an internal note because it looked like one, relayed after all on the
        technician's explicit say-so (once)."""
        self.require_technician(actor, ref)
        row = await self.get(uow, ref, lock=True)
        note = await uow.session.get(TicketNoteRow, note_id)
        if note is None or note.ticket_id != row.id or note.kind != "note":
            raise InvalidState(row.ref, "that note is not on this ticket")
        if note.author.lower() != actor.email.lower():
            raise Forbidden(row.ref, "only its author can send a note to the requester")
        if (note.data or {}).get("sent_as"):
            raise InvalidState(row.ref, "that note was already sent to the requester")
        outcome = await self.reply_to_requester(uow, actor, ref, note.text)
        note.data = {**dict(note.data or {}), "sent_as": "to_requester"}
        return outcome

    async def reply_to_requester(self, uow: UnitOfWork, actor: Person, ref: str, text: str) -> Outcome:
        """Relay a technician's message to the requester's direct conversation with the bot."""
        self.require_technician(actor, ref)
        if not text.strip():
            raise InvalidState(ref.upper(), "the message is empty")
        row = await self.get(uow, ref, lock=True)
        if row.status == CLOSED:
            raise InvalidState(row.ref, "it is closed")
        if row.assignee_email is None and row.status in CLAIMABLE:
            await self.claim(uow, actor, ref)  # replying to an unclaimed ticket takes it
            row = await self.get(uow, ref, lock=True)
        await self._held_check(row, actor)
        note = self.add_note(uow, row, actor.email, "to_requester", text.strip())
        await uow.session.flush()
        self.mark_first_response(uow, row)
        row.tech_message_at = row.worked_at = uow.now
        changed = row.status in (CLAIMED, REOPENED)
        if changed:
            row.status = WAITING
            self.pause(uow, row)
        self.touch(uow, row)
        uow.emit("ticket_relayed", subject=row.ref, id=row.ref, direction="to_requester", by=actor.email.lower(),
                 length=len(text.strip()))
        if self.mirror is not None:
            self.mirror.comment(uow, row, note.id, actor.display_name, text.strip(), public=True)
        await self.to_person(uow, row.requester_email, row.channel, "ticket_relay_to_requester",
                             {"ticket_id": row.ref, "tech": actor.display_name, "text": text.strip()},
                             f"ticket:{row.ref}:relay:{note.id}",
                             buttons=(Button(f"Reply to {row.ref}", B_REPLY + row.ref),))
        if changed:
            await self.update_cards(uow, row)
        return Outcome(view_of(row), "relayed", {"to_name": row.requester_name})

    # -- requester operations --

    async def reply_from_requester(self, uow: UnitOfWork, requester: Person, ref: str, text: str) -> Outcome:
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        if row.status == CLOSED:
            raise InvalidState(row.ref, "it is closed")
        note = self.add_note(uow, row, requester.email, "from_requester", text.strip())
        await uow.session.flush()
        changed = row.status == WAITING
        if changed:
            self.resume(uow, row)
            row.status = CLAIMED if row.assignee_email else NEW
        self.touch(uow, row)
        uow.emit("ticket_relayed", subject=row.ref, id=row.ref, direction="to_technicians",
                 length=len(text.strip()))
        if self.mirror is not None:
            self.mirror.comment(uow, row, note.id, row.requester_name, text.strip(), public=True)
        await self.to_thread(uow, row, "ticket_relay_to_queue",
                             {"kind": "reply", "name": row.requester_name, "text": text.strip()},
                             f"reply:{note.id}", buttons=(Button(f"Reply to {row.requester_name}",
                                                                 B_REPLY + row.ref),))
        if changed:
            await self.update_cards(uow, row)
        return Outcome(view_of(row), "relayed", {"to_name": await self.name_of(row.assignee_email)
                                                  if row.assignee_email else "the technicians"})

    async def confirm_fixed(self, uow: UnitOfWork, requester: Person, ref: str, fixed: bool) -> Outcome:
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        if row.status != RESOLVED:
            raise InvalidState(row.ref, f"it is {STATUS_LABELS.get(row.status, row.status).lower()}")
        if fixed:
            row.fixed = True
            self.touch(uow, row)
            uow.emit("ticket_confirmed", subject=row.ref, id=row.ref, fixed=True)
            return Outcome(view_of(row), "confirmed")
        row.fixed = False
        uow.emit("ticket_confirmed", subject=row.ref, id=row.ref, fixed=False)
        outcome = await self.reopen(uow, requester, ref, "The requester says it is not fixed.")
        return Outcome(outcome.ticket, "reopened")

    async def rate(self, uow: UnitOfWork, requester: Person, ref: str, rating: int) -> Outcome:
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        if not 1 <= rating <= 5:
            raise InvalidState(row.ref, "a rating is 1 to 5")
        if row.status not in (RESOLVED, CLOSED):
            raise InvalidState(row.ref, "it is not resolved")
        row.rating = rating
        self.touch(uow, row)
        uow.emit("satisfaction", subject=row.ref, id=row.ref, rating=rating, category=row.category,
                 assignee=row.assignee_email)
        return Outcome(view_of(row), "rated", {"rating": rating})

    # -- changes made in the help desk's ticket system (bot/itsm): applied here, never mirrored back --

    async def relay_from_system(self, uow: UnitOfWork, ref: str, author: str, text: str, system: str) -> Outcome:
        """A public comment an agent wrote in the ticket system: the requester gets it like a
        technician's reply (with a Reply button), and the chat queue thread sees it too."""
        row = await self.get(uow, ref, lock=True)
        if row.status == CLOSED:
            raise InvalidState(row.ref, "it is closed")
        note = self.add_note(uow, row, f"{system}:{author}", "to_requester", text.strip(), {"via": system})
        await uow.session.flush()
        self.mark_first_response(uow, row)
        row.tech_message_at = row.worked_at = uow.now
        changed = row.status in (NEW, CLAIMED, REOPENED)
        if changed:
            row.status = WAITING
            self.pause(uow, row)
        self.touch(uow, row)
        uow.emit("ticket_relayed", subject=row.ref, id=row.ref, direction="to_requester", by=f"{system}:{author}",
                 length=len(text.strip()), via=system)
        await self.to_person(uow, row.requester_email, row.channel, "ticket_relay_to_requester",
                             {"ticket_id": row.ref, "tech": author, "text": text.strip()},
                             f"ticket:{row.ref}:relay:{note.id}",
                             buttons=(Button(f"Reply to {row.ref}", B_REPLY + row.ref),))
        await self.to_thread(uow, row, "ticket_notice",
                             {"kind": "itsm_reply", "by": author, "system": system, "text": text.strip()},
                             f"itsm-reply:{note.id}")
        if changed:
            await self.update_cards(uow, row)
        return Outcome(view_of(row), "relayed", {"to_name": row.requester_name})

    async def note_from_system(self, uow: UnitOfWork, ref: str, author: str, text: str, system: str) -> Outcome:
        """An internal comment in the ticket system: an internal note here, never to the requester."""
        row = await self.get(uow, ref, lock=True)
        note = self.add_note(uow, row, f"{system}:{author}", "note", text.strip(), {"via": system})
        self.touch(uow, row)
        await uow.session.flush()
        uow.emit("ticket_note", subject=row.ref, id=row.ref, by=f"{system}:{author}", length=len(text.strip()),
                 via=system)
        await self.to_thread(uow, row, "ticket_notice",
                             {"kind": "note", "by": f"{author} ({system})", "text": text.strip()},
                             f"note:{note.id}", console_to=[row.assignee_email] if row.assignee_email else [])
        return Outcome(view_of(row), "noted")

    async def resolve_from_system(self, uow: UnitOfWork, ref: str, author: str, note: str, system: str) -> Outcome:
        row = await self.get(uow, ref, lock=True)
        if row.status not in OPEN_STATUSES:
            return Outcome(view_of(row), "unchanged")
        self.mark_first_response(uow, row)
        row.resolution_minutes = round(self.elapsed(row, uow.now))
        row.status, row.resolved_at, row.worked_at, row.fixed = RESOLVED, uow.now, uow.now, None
        self.pause(uow, row)
        self.touch(uow, row)
        if note.strip():
            self.add_note(uow, row, f"{system}:{author}", "to_requester", note.strip(), {"resolution": True})
        uow.emit("ticket_resolved", subject=row.ref, id=row.ref, by=f"{system}:{author or 'agent'}", via=system)
        await self.update_cards(uow, row)
        await self.to_person(
            uow, row.requester_email, row.channel, "ticket_resolved_requester",
            {"ticket_id": row.ref, "tech": author or "The help desk", "note": note.strip(), "summary": row.summary},
            f"ticket:{row.ref}:resolved:v{row.version}",
            buttons=(Button("Yes, it's fixed", f"{B_FIXED}{row.ref}:yes", "primary"),
                     Button("No, still broken", f"{B_FIXED}{row.ref}:no")))
        return Outcome(view_of(row), "resolved")

    async def reopen_from_system(self, uow: UnitOfWork, ref: str, author: str, system: str) -> Outcome:
        row = await self.get(uow, ref, lock=True)
        if row.status not in (RESOLVED, CLOSED):
            return Outcome(view_of(row), "unchanged")
        self.resume(uow, row)
        row.status, row.resolved_at, row.closed_at, row.resolution_minutes = REOPENED, None, None, None
        row.reopen_count = (row.reopen_count or 0) + 1
        row.claimed_at, row.worked_at = uow.now, None
        self.touch(uow, row)
        uow.emit("ticket_reopened", subject=row.ref, id=row.ref, by=f"{system}:{author or 'agent'}",
                 requester=False, via=system)
        await self.update_cards(uow, row)
        await self.to_person(uow, row.requester_email, row.channel, "ticket_requester_notice",
                             {"kind": "reopened", "ticket_id": row.ref, "tech": author or "The help desk"},
                             f"ticket:{row.ref}:reopened:v{row.version}")
        return Outcome(view_of(row), "reopened")

    # -- reading (bot/tickets/queries.py) --

    async def list_tickets(self, uow: UnitOfWork, actor: Person, scope: str = "queue",
                           limit: int = 50) -> list[TicketView]:
        return await queries.list_tickets(self, uow, actor, scope, limit)

    async def search(self, uow: UnitOfWork, actor: Person, *, status: str = "open", category: str = "",
                     priority: str = "", assignee: str = "", limit: int = 200) -> list[TicketView]:
        return await queries.search(self, uow, actor, status=status, category=category, priority=priority,
                                    assignee=assignee, limit=limit)

    async def history(self, uow: UnitOfWork, actor: Person, ref: str, limit: int = 200) -> list[dict[str, Any]]:
        return await queries.history(self, uow, actor, ref, limit)

    async def show(self, uow: UnitOfWork, actor: Person, ref: str) -> TicketView:
        return await queries.show(self, uow, actor, ref)

    async def open_duplicate_of(self, uow: UnitOfWork, requester: Person, category: str) -> TicketRow | None:
        return await queries.open_duplicate_of(self, uow, requester, category)

    async def relay_target(self, uow: UnitOfWork, requester: Person) -> TicketRow | None:
        return await queries.relay_target(self, uow, requester)

    # -- periodic job (bot/tickets/watch.py): SLA reminders and breaches, claim release, auto-close --

    async def tick(self, now: datetime | None = None) -> list[dict[str, Any]]:
        return await watch.tick(self, now)
