"""Tickets: the technician queue's model and every operation on it.

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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.models import (
    Address,
    Button,
    Form,
    FormField,
    Outbound,
    Person,
    Platform,
    PlatformUser,
    Reply,
    person_address,
)
from bot.core.ports import PersonResolver
from bot.render.renderer import Renderer
from bot.settings import Settings
from bot.store.db import utcnow
from bot.store.repos import UnitOfWork, insert_ignore
from bot.store.tables import OutboxRow, TicketCounterRow, TicketNoteRow, TicketRow
from bot.tickets.sla import BusinessCalendar, Holidays, describe_minutes, elapsed_minutes

log = logging.getLogger("bot.tickets")

NEW, CLAIMED, WAITING, RESOLVED, CLOSED, REOPENED = (
    "new", "claimed", "waiting_on_requester", "resolved", "closed", "reopened")
OPEN_STATUSES = (NEW, CLAIMED, WAITING, REOPENED)
CLAIMABLE = (NEW, REOPENED)
STATUS_LABELS = {NEW: "New", CLAIMED: "Claimed", WAITING: "Waiting on requester", RESOLVED: "Resolved",
                 CLOSED: "Closed", REOPENED: "Reopened"}
QUEUE_POST = "queue-post"
CONSOLE_FANOUT = "technicians"

# Button values (the handler parses them; the service checks roles whatever they say).
B_CLAIM, B_ASSIGN, B_ASSIGN_TO, B_RESOLVE, B_REOPEN, B_NOTE, B_REPLY = (
    "ticket:claim:", "ticket:assign:", "ticket:assign_to:", "ticket:resolve:", "ticket:reopen:", "ticket:note:",
    "ticket:reply:")
B_FIXED, B_RATE, B_SPLIT = "ticket:fixed:", "ticket:rate:", "ticket:split:"
# "Send it to the requester after all": a thread message that looked like a note was kept as one.
B_SEND_NOTE = "ticket:send_note:"
FORM_NOTE, FORM_REPLY, FORM_RESOLVE = "ticket_note:", "ticket_reply:", "ticket_resolve:"


# What the person said about how many people are hit: a ticket's impact is never lower than their
# words ("No, nobody can print" is not a P4).
LEVELS = ("low", "medium", "high")
IMPACT_WORDS = re.compile(
    r"\b(?:nobody|no one|noone|none of us|everyone|everybody|all of us|all users|whole (?:team|office|floor|"
    r"department|company|building)|entire (?:team|office|floor|department|company|building)|"
    r"(?:the )?(?:whole|entire) \w+ (?:team|office|floor)|company[- ]wide|all (?:staff|employees|printers))\b",
    re.IGNORECASE)
def raised_level(current: str, said: str, words: re.Pattern[str], to: str = "high") -> str:
    """`current`, raised to `to` when the person's words say so."""
    current = current if current in LEVELS else "low"
    return to if words.search(said) and LEVELS.index(to) > LEVELS.index(current) else current


# ----- errors -----------------------------------------------------------------------------------


class TicketError(Exception):
    """An operation that cannot be done. `code` is the CLI exit code; `kind` picks the message."""

    code = 1
    kind = "error"

    def __init__(self, ref: str, detail: str = "") -> None:
        super().__init__(f"{ref}: {detail}" if detail else ref)
        self.ref = ref
        self.detail = detail


class NotFound(TicketError):
    kind = "not_found"


class Forbidden(TicketError):
    code = 4
    kind = "forbidden"


class HeldByOther(TicketError):
    code = 3
    kind = "held"

    def __init__(self, ref: str, holder: str, holder_name: str) -> None:
        super().__init__(ref, f"held by {holder_name} <{holder}>")
        self.holder = holder
        self.holder_name = holder_name


class InvalidState(TicketError):
    kind = "invalid"


# ----- plain views ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteView:
    at: datetime
    author: str
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket as plain data, for replies, the CLI and reports."""

    ref: str
    requester_email: str
    requester_name: str
    category: str
    priority: str
    status: str
    assignee_email: str | None
    summary: str
    created_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)
    tried_articles: tuple[str, ...] = ()
    tried_actions: tuple[str, ...] = ()
    transcript: tuple[str, ...] = ()
    notes: tuple[NoteView, ...] = ()
    channel: str = "console"
    # The next SLA target of an open ticket (first response, then resolution), for the queue.
    due_at: datetime | None = None
    due_target: str = ""
    overdue: bool = False
    # An SLA target (first response or resolution) has been missed.
    breached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.ref, "requester": self.requester_email, "requester_name": self.requester_name,
            "category": self.category, "priority": self.priority, "status": self.status,
            "assignee": self.assignee_email, "summary": self.summary, "created_at": self.created_at.isoformat(),
            "channel": self.channel, "details": dict(self.details), "tried_articles": list(self.tried_articles),
            "tried_actions": list(self.tried_actions), "transcript": list(self.transcript),
            "notes": [{"at": n.at.isoformat(), "author": n.author, "kind": n.kind, "text": n.text}
                      for n in self.notes],
        }


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def view_of(row: TicketRow, notes: Sequence[TicketNoteRow] = ()) -> TicketView:
    return TicketView(
        ref=row.ref, requester_email=row.requester_email, requester_name=row.requester_name,
        category=row.category, priority=row.priority, status=row.status, assignee_email=row.assignee_email,
        summary=row.summary, created_at=_aware(row.created_at) or row.created_at, details=dict(row.details or {}),
        tried_articles=tuple(row.tried_articles or ()), tried_actions=tuple(row.tried_actions or ()),
        transcript=tuple(str(t) for t in (row.transcript or ())),
        notes=tuple(NoteView(_aware(n.at) or n.at, n.author, n.kind, n.text) for n in notes), channel=row.channel,
        breached=bool(row.fr_breached_at or row.res_breached_at),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation did, for the caller's reply."""

    ticket: TicketView
    action: str  # claimed | already_yours | assigned | resolved | reopened | noted | relayed | ...
    extra: Mapping[str, Any] = field(default_factory=dict)


# ----- the help desk's own ticket system -----------------------------------------------------------


class TicketMirror(Protocol):
    """Keeps each ticket in step with the help desk's ticket system (bot/itsm). Called inside the
    ticket change's unit of work, so what it queues commits (or not) with the change."""

    def created(self, uow: UnitOfWork, row: TicketRow) -> None: ...

    def comment(self, uow: UnitOfWork, row: TicketRow, note_id: int, author: str, text: str, *,
                public: bool) -> None: ...

    def status(self, uow: UnitOfWork, row: TicketRow, status: str, note: str) -> None: ...


# ----- the service ------------------------------------------------------------------------------


class TicketService:
    def __init__(self, settings: Settings, renderer: Renderer, resolver: PersonResolver, *,
                 sessions: async_sessionmaker[AsyncSession] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.cfg = settings.tickets
        self.renderer = renderer
        self.resolver = resolver
        self.sessions = sessions
        self.clock = clock or utcnow
        bh = self.cfg.business_hours
        days_off = Holidays(self.cfg.holidays, self.cfg.holiday_country, self.cfg.holiday_subdivision)
        self.calendar = BusinessCalendar.build(settings.app.timezone, bh.days, bh.start, bh.end, days_off)
        self._names: dict[str, str] = {}
        # Events of periodic jobs, collected when a caller (simulate) asks for them.
        self.event_sink: list[dict[str, Any]] | None = None
        # The help desk's ticket system, when a connector is configured (bot/itsm, wired in bot/app.py).
        self.mirror: TicketMirror | None = None

    # -- people and roles --

    async def person(self, email: str) -> Person | None:
        email = email.strip().lower()
        return await self.resolver.resolve(PlatformUser(Platform.CONSOLE, email, email=email))

    async def name_of(self, email: str | None) -> str:
        if not email:
            return "nobody"
        if email not in self._names:
            person = await self.person(email)
            self._names[email] = person.display_name if person else email
        return self._names[email]

    def technician_emails(self) -> list[str]:
        seen: dict[str, None] = {}
        for email in [*self.settings.roles.technicians, *self.settings.roles.admins]:
            seen.setdefault(email.lower(), None)
        return list(seen)

    @staticmethod
    def require_technician(actor: Person, ref: str = "") -> None:
        if not actor.is_technician:
            raise Forbidden(ref or "tickets", "technicians only")

    def calendar_for(self, priority: str) -> BusinessCalendar:
        target = self.cfg.target(priority)
        return self.calendar.round_the_clock() if target.calendar == "always" else self.calendar

    def first_response_text(self, priority: str, now: datetime) -> str:
        target = self.cfg.target(priority)
        calendar = self.calendar_for(priority)
        due = calendar.add_minutes(now, target.first_response_minutes).astimezone(self.calendar.timezone)
        when = due.strftime("%a %d %b, %H:%M")
        return f"{describe_minutes(target.first_response_minutes, target.calendar == 'business')} (by {when} " \
               f"{self.settings.app.timezone})"

    # -- platforms and addresses --

    def active_platforms(self) -> list[Platform]:
        enabled = [p for p, on in ((Platform.SLACK, self.settings.slack.enabled),
                                   (Platform.TEAMS, self.settings.teams.enabled)) if on]
        return enabled or [Platform.CONSOLE]

    def queue_targets(self, category: str) -> list[Address]:
        route = self.cfg.queues.get(category) or self.cfg.queues.get("default") or {}
        targets: list[Address] = []
        for platform in self.active_platforms():
            target = route.get(platform.value, "")
            if platform is Platform.SLACK and not target:
                target = self.settings.slack.queue_channel
            if platform is Platform.TEAMS and not target:
                target = self.settings.teams.queue_channel  # HELPDESK_TEAMS__QUEUE_CHANNEL (docs/teams.md)
            if not target:
                continue
            if platform is Platform.CONSOLE and target == CONSOLE_FANOUT:
                targets.extend(Address(Platform.CONSOLE, email) for email in self.technician_emails())
            else:
                targets.append(Address(platform, target))
        return targets

    async def direct(self, uow: UnitOfWork, email: str, platform: str | None = None) -> Address:
        found = await uow.direct_address(email, platform) if platform else None
        found = found or await uow.direct_address(email)
        if found is not None:
            return found
        chosen = Platform(platform) if platform else self.active_platforms()[0]
        return person_address(chosen, email)

    # -- rendering --

    def render(self, platform: Platform, template: str, context: Mapping[str, Any]) -> str:
        return self.renderer.text(platform, template=template, context=dict(context))

    async def card_context(self, row: TicketRow) -> dict[str, Any]:
        details = [(str(k), str(v)) for k, v in (row.details or {}).items()
                   if not isinstance(v, dict | list) and str(v).strip()]
        return {
            "ticket_id": row.ref, "priority": row.priority, "category": row.category, "status": row.status,
            "status_label": STATUS_LABELS.get(row.status, row.status), "summary": row.summary,
            "requester_name": row.requester_name, "requester_email": row.requester_email,
            "assignee_name": await self.name_of(row.assignee_email) if row.assignee_email else "",
            "details": details[:20], "tried_articles": list(row.tried_articles or ()),
            "tried_actions": list(row.tried_actions or ()), "transcript": list(row.transcript or ())[-8:],
            "channel": row.channel, "reopen_count": row.reopen_count,
        }

    def card_buttons(self, row: TicketRow) -> tuple[Button, ...]:
        ref = row.ref
        if row.status in (RESOLVED,):
            return (Button("Reopen", B_REOPEN + ref),)
        if row.status == CLOSED:
            return ()
        buttons: list[Button] = []
        if row.assignee_email is None and row.status in CLAIMABLE:
            buttons.append(Button("Claim", B_CLAIM + ref, "primary"))
        buttons += [Button("Assign to...", B_ASSIGN + ref), Button("Resolve", B_RESOLVE + ref),
                    Button("Internal note", B_NOTE + ref)]
        return tuple(buttons)

    async def card(self, platform: Platform, row: TicketRow) -> Reply:
        text = self.render(platform, "ticket_card", await self.card_context(row))
        return Reply(text=text, buttons=self.card_buttons(row), template="ticket_card")

    # -- outbox helpers --

    async def post_to_queue(self, uow: UnitOfWork, row: TicketRow) -> None:
        posts: list[dict[str, Any]] = []
        for address in self.queue_targets(row.category):
            key = f"ticket:{row.ref}:{QUEUE_POST}:{address.platform.value}:{address.conversation_id}"
            uow.enqueue(Outbound(address, await self.card(address.platform, row)), idempotency_key=key,
                        group_key=f"ticket:{row.ref}")
            posts.append({"key": key, "address": address.to_json()})
        row.queue_posts = posts

    async def update_cards(self, uow: UnitOfWork, row: TicketRow) -> None:
        """Edit every queue post in place (the worker resolves `outbox:<key>` to the posted message)."""
        for number, post in enumerate(row.queue_posts or ()):
            address = Address.from_json(post["address"])
            outbound = Outbound(address, await self.card(address.platform, row), update_ref=f"outbox:{post['key']}")
            uow.enqueue(outbound, idempotency_key=f"ticket:{row.ref}:card:v{row.version}:{number}",
                        group_key=f"ticket:{row.ref}", kind="update")

    async def to_thread(self, uow: UnitOfWork, row: TicketRow, template: str, context: Mapping[str, Any],
                        tag: str, *, console_to: Sequence[str] | None = None,
                        buttons: Sequence[Button] = ()) -> None:
        """Post into the ticket's queue threads. On the console (no threads) the assignee gets it
        directly, or every technician while nobody holds the ticket."""
        for number, post in enumerate(row.queue_posts or ()):
            address = Address.from_json(post["address"])
            if address.platform is Platform.CONSOLE:
                continue
            threaded = Address(address.platform, address.conversation_id, thread_id=f"outbox:{post['key']}")
            text = self.render(address.platform, template, {"ticket_id": row.ref, **context})
            uow.enqueue(Outbound(threaded, Reply(text=text, buttons=tuple(buttons), template=template)),
                        idempotency_key=f"ticket:{row.ref}:thread:{tag}:{number}", group_key=f"ticket:{row.ref}")
        if any(Address.from_json(p["address"]).platform is Platform.CONSOLE for p in row.queue_posts or ()):
            people = list(console_to) if console_to is not None else (
                [row.assignee_email] if row.assignee_email else self.technician_emails())
            for email in people:
                address = Address(Platform.CONSOLE, email)
                text = self.render(Platform.CONSOLE, template, {"ticket_id": row.ref, **context})
                uow.enqueue(Outbound(address, Reply(text=text, buttons=tuple(buttons), template=template)),
                            idempotency_key=f"ticket:{row.ref}:thread:{tag}:console:{email}",
                            group_key=f"ticket:{row.ref}")

    async def to_person(self, uow: UnitOfWork, email: str, platform: str | None, template: str,
                        context: Mapping[str, Any], key: str, *, buttons: Sequence[Button] = (),
                        form: Form | None = None) -> None:
        address = await self.direct(uow, email, platform)
        text = self.render(address.platform, template, context)
        uow.enqueue(Outbound(address, Reply(text=text, buttons=tuple(buttons), form=form, template=template)),
                    idempotency_key=key)

    # -- loading --

    async def get(self, uow: UnitOfWork, ref: str, *, lock: bool = False) -> TicketRow:
        query = select(TicketRow).where(TicketRow.ref == ref.strip().upper()).execution_options(
            populate_existing=True)
        if lock:
            query = query.with_for_update()
        row = (await uow.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound(ref.strip().upper(), "no such ticket")
        return row

    async def notes(self, uow: UnitOfWork, row: TicketRow, *, internal: bool) -> list[TicketNoteRow]:
        query = select(TicketNoteRow).where(TicketNoteRow.ticket_id == row.id).order_by(TicketNoteRow.id)
        notes = list((await uow.session.execute(query)).scalars())
        return notes if internal else [n for n in notes if n.kind != "note"]

    def _add_note(self, uow: UnitOfWork, row: TicketRow, author: str, kind: str, text: str,
                  data: Mapping[str, Any] | None = None) -> TicketNoteRow:
        note = TicketNoteRow(ticket_id=row.id, at=uow.now, author=author, kind=kind, text=text[:8000],
                             data=dict(data or {}))
        uow.session.add(note)
        return note

    def _touch(self, uow: UnitOfWork, row: TicketRow) -> None:
        row.version = (row.version or 0) + 1
        row.updated_at = uow.now

    def _pause(self, uow: UnitOfWork, row: TicketRow) -> None:
        if row.paused_since is None:
            row.paused_since = uow.now

    def _resume(self, uow: UnitOfWork, row: TicketRow) -> None:
        since = _aware(row.paused_since)
        if since is not None:
            row.paused_minutes = round((row.paused_minutes or 0) +
                                           self.calendar_for(row.priority).minutes_between(since, uow.now))
            row.paused_since = None

    def elapsed(self, row: TicketRow, now: datetime) -> float:
        created = _aware(row.created_at) or now
        return elapsed_minutes(self.calendar_for(row.priority), created, now, row.paused_minutes or 0,
                               _aware(row.paused_since))

    def _first_response(self, uow: UnitOfWork, row: TicketRow) -> None:
        if row.first_response_at is None:
            row.first_response_at = uow.now
            row.first_response_minutes = round(self.elapsed(row, uow.now))

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

    async def open_duplicate_of(self, uow: UnitOfWork, requester: Person, category: str) -> TicketRow | None:
        """The person's most recent open ticket in this category, if any."""
        query = (select(TicketRow).where(TicketRow.requester_email == requester.email.lower(),
                                         TicketRow.category == category, TicketRow.status.in_(OPEN_STATUSES))
                 .order_by(TicketRow.id.desc()).limit(1))
        return (await uow.session.execute(query)).scalar_one_or_none()

    async def add_update(self, uow: UnitOfWork, requester: Person, ref: str, summary: str,
                         details: Mapping[str, Any]) -> tuple[TicketRow, TicketNoteRow]:
        """More about a problem that already has an open ticket (a second conversation about it)."""
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        note = self._add_note(uow, row, requester.email, "update", summary,
                              {"summary": summary, "details": dict(details)})
        await uow.session.flush()
        if row.status == WAITING:
            self._resume(uow, row)
            row.status = CLAIMED if row.assignee_email else NEW
        self._touch(uow, row)
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
        self._touch(uow, row)
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
        self._first_response(uow, row)
        row.resolution_minutes = round(self.elapsed(row, uow.now))
        row.assignee_email = row.assignee_email or actor.email.lower()
        row.status, row.resolved_at, row.worked_at, row.fixed = RESOLVED, uow.now, uow.now, None
        self._pause(uow, row)
        self._touch(uow, row)
        if note.strip():
            self._add_note(uow, row, actor.email, "to_requester", note.strip(), {"resolution": True})
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
        self._resume(uow, row)
        row.status, row.resolved_at, row.closed_at, row.resolution_minutes = REOPENED, None, None, None
        row.reopen_count = (row.reopen_count or 0) + 1
        row.claimed_at, row.worked_at = uow.now, None  # the holder must pick it up again, or it is released
        self._touch(uow, row)
        if reason.strip():
            self._add_note(uow, row, actor.email, "from_requester" if is_requester else "note", reason.strip())
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
        note = self._add_note(uow, row, actor.email, "note", text.strip())
        if row.assignee_email == actor.email.lower():
            row.worked_at = uow.now
        self._touch(uow, row)
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
        note = self._add_note(uow, row, actor.email, "to_requester", text.strip())
        await uow.session.flush()
        self._first_response(uow, row)
        row.tech_message_at = row.worked_at = uow.now
        changed = row.status in (CLAIMED, REOPENED)
        if changed:
            row.status = WAITING
            self._pause(uow, row)
        self._touch(uow, row)
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
        note = self._add_note(uow, row, requester.email, "from_requester", text.strip())
        await uow.session.flush()
        changed = row.status == WAITING
        if changed:
            self._resume(uow, row)
            row.status = CLAIMED if row.assignee_email else NEW
        self._touch(uow, row)
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

    async def relay_target(self, uow: UnitOfWork, requester: Person) -> TicketRow | None:
        """The ticket an employee's free chat goes to: their open ticket a technician most recently
        wrote to them about, within `relay_window_hours` (docs/tickets.md, "Relay")."""
        since = uow.now - timedelta(hours=self.cfg.relay_window_hours)
        query = (select(TicketRow).where(TicketRow.requester_email == requester.email.lower(),
                                         TicketRow.status.in_(OPEN_STATUSES), TicketRow.tech_message_at >= since)
                 .order_by(TicketRow.tech_message_at.desc()).limit(1))
        return (await uow.session.execute(query)).scalar_one_or_none()

    async def confirm_fixed(self, uow: UnitOfWork, requester: Person, ref: str, fixed: bool) -> Outcome:
        row = await self.get(uow, ref, lock=True)
        if row.requester_email != requester.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        if row.status != RESOLVED:
            raise InvalidState(row.ref, f"it is {STATUS_LABELS.get(row.status, row.status).lower()}")
        if fixed:
            row.fixed = True
            self._touch(uow, row)
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
        self._touch(uow, row)
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
        note = self._add_note(uow, row, f"{system}:{author}", "to_requester", text.strip(), {"via": system})
        await uow.session.flush()
        self._first_response(uow, row)
        row.tech_message_at = row.worked_at = uow.now
        changed = row.status in (NEW, CLAIMED, REOPENED)
        if changed:
            row.status = WAITING
            self._pause(uow, row)
        self._touch(uow, row)
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
        note = self._add_note(uow, row, f"{system}:{author}", "note", text.strip(), {"via": system})
        self._touch(uow, row)
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
        self._first_response(uow, row)
        row.resolution_minutes = round(self.elapsed(row, uow.now))
        row.status, row.resolved_at, row.worked_at, row.fixed = RESOLVED, uow.now, uow.now, None
        self._pause(uow, row)
        self._touch(uow, row)
        if note.strip():
            self._add_note(uow, row, f"{system}:{author}", "to_requester", note.strip(), {"resolution": True})
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
        self._resume(uow, row)
        row.status, row.resolved_at, row.closed_at, row.resolution_minutes = REOPENED, None, None, None
        row.reopen_count = (row.reopen_count or 0) + 1
        row.claimed_at, row.worked_at = uow.now, None
        self._touch(uow, row)
        uow.emit("ticket_reopened", subject=row.ref, id=row.ref, by=f"{system}:{author or 'agent'}",
                 requester=False, via=system)
        await self.update_cards(uow, row)
        await self.to_person(uow, row.requester_email, row.channel, "ticket_requester_notice",
                             {"kind": "reopened", "ticket_id": row.ref, "tech": author or "The help desk"},
                             f"ticket:{row.ref}:reopened:v{row.version}")
        return Outcome(view_of(row), "reopened")

    # -- reading --

    async def list_tickets(self, uow: UnitOfWork, actor: Person, scope: str = "queue",
                           limit: int = 50) -> list[TicketView]:
        """queue: open tickets nobody holds; mine: held by me (technicians) or requested by me;
        open / all: every open / every ticket (technicians). Employees only ever see their own."""
        query = select(TicketRow)
        if not actor.is_technician or scope == "requested":
            query = query.where(TicketRow.requester_email == actor.email.lower())
            if scope == "open":
                query = query.where(TicketRow.status.in_(OPEN_STATUSES))
        elif scope == "queue":
            query = query.where(TicketRow.status.in_(OPEN_STATUSES), TicketRow.assignee_email.is_(None))
        elif scope == "mine":
            query = query.where(TicketRow.assignee_email == actor.email.lower(),
                                TicketRow.status.in_(OPEN_STATUSES))
        elif scope == "open":
            query = query.where(TicketRow.status.in_(OPEN_STATUSES))
        if actor.is_technician and scope != "requested":
            # The queue is worked in order: most urgent priority first, then the nearest SLA target.
            rows = list((await uow.session.execute(
                query.order_by(TicketRow.priority, TicketRow.id).limit(limit))).scalars())
            dues = {r.id: self.due(r, uow.now) for r in rows}

            def left(row: TicketRow) -> float:
                due = dues[row.id]
                return due[2] if due is not None else float("inf")

            rows.sort(key=lambda r: (r.priority, left(r), r.id))
            return [self._with_due(view_of(r), dues[r.id]) for r in rows]
        rows = list((await uow.session.execute(query.order_by(TicketRow.id.desc()).limit(limit))).scalars())
        return [self._with_due(view_of(r), self.due(r, uow.now)) for r in rows]

    def due(self, row: TicketRow, now: datetime) -> tuple[str, datetime, float] | None:
        """(target, when, minutes left) of an open ticket's next SLA target; minutes left < 0: overdue.
        The clock is the priority's calendar, paused while the ticket waits on the requester."""
        if row.status not in OPEN_STATUSES:
            return None
        target = self.cfg.target(row.priority)
        name, minutes = (("first response", target.first_response_minutes) if row.first_response_at is None
                         else ("resolution", target.resolution_minutes))
        left = minutes - self.elapsed(row, now)
        return name, self.calendar_for(row.priority).add_minutes(now, max(0.0, left)), left

    @staticmethod
    def _with_due(view: TicketView, due: tuple[str, datetime, float] | None) -> TicketView:
        if due is None:
            return view
        return replace(view, due_target=due[0], due_at=due[1], overdue=due[2] < 0)

    async def search(self, uow: UnitOfWork, actor: Person, *, status: str = "open", category: str = "",
                     priority: str = "", assignee: str = "", limit: int = 200) -> list[TicketView]:
        """Technicians' filtered queue (the web console): status is open | unclaimed | breaching | all
        or one status; assignee is an email, "me" or "nobody". Highest priority first, then oldest."""
        self.require_technician(actor)
        query = select(TicketRow)
        if status == "open":
            query = query.where(TicketRow.status.in_(OPEN_STATUSES))
        elif status == "unclaimed":
            query = query.where(TicketRow.status.in_(OPEN_STATUSES), TicketRow.assignee_email.is_(None))
        elif status == "breaching":
            query = query.where(TicketRow.status.in_(OPEN_STATUSES),
                                (TicketRow.fr_breached_at.is_not(None)) | (TicketRow.res_breached_at.is_not(None)))
        elif status != "all":
            query = query.where(TicketRow.status == status)
        if category:
            query = query.where(TicketRow.category == category)
        if priority:
            query = query.where(TicketRow.priority == priority)
        if assignee == "nobody":
            query = query.where(TicketRow.assignee_email.is_(None))
        elif assignee:
            query = query.where(TicketRow.assignee_email == (actor.email if assignee == "me" else assignee).lower())
        query = query.order_by(TicketRow.priority, TicketRow.created_at, TicketRow.id).limit(limit)
        return [view_of(r) for r in (await uow.session.execute(query)).scalars()]

    async def history(self, uow: UnitOfWork, actor: Person, ref: str, limit: int = 200) -> list[dict[str, Any]]:
        """The ticket's audit trail (events whose subject is the ticket), oldest first (technicians)."""
        from bot.store.tables import EventRow

        self.require_technician(actor, ref)
        row = await self.get(uow, ref)
        rows = (await uow.session.execute(
            select(EventRow).where(EventRow.subject == row.ref).order_by(EventRow.id).limit(limit))).scalars()
        return [{"at": _aware(e.at), "type": e.type, "actor": e.actor or "", "result": e.result or "",
                 "data": dict(e.data or {})} for e in rows]

    async def show(self, uow: UnitOfWork, actor: Person, ref: str) -> TicketView:
        row = await self.get(uow, ref)
        if not actor.is_technician and row.requester_email != actor.email.lower():
            raise Forbidden(row.ref, "not your ticket")
        return view_of(row, await self.notes(uow, row, internal=actor.is_technician))

    def now(self) -> datetime:
        """The injected clock's time (the one clock every row and every check is written with)."""
        return self.clock()

    # -- periodic job: SLA reminders and breaches, claim release, auto-close --

    async def tick(self, now: datetime | None = None) -> list[dict[str, Any]]:
        if self.sessions is None:
            return []
        now = now or self.clock()
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=now, actor="system")
            ids = list((await session.execute(
                select(TicketRow.id).where(TicketRow.status.in_((*OPEN_STATUSES, RESOLVED))).order_by(TicketRow.id)
            )).scalars())
            for ticket_id in ids:
                row = (await session.execute(select(TicketRow).where(TicketRow.id == ticket_id)
                                             .with_for_update(skip_locked=True)
                                             .execution_options(populate_existing=True))).scalar_one_or_none()
                if row is None:
                    continue
                if row.status == RESOLVED:
                    await self._auto_close(uow, row)
                    continue
                await self._sla(uow, row)
                await self._release(uow, row)
        if self.event_sink is not None:
            self.event_sink.extend(uow.events)
        return uow.events

    async def _sla(self, uow: UnitOfWork, row: TicketRow) -> None:
        if row.paused_since is not None:
            return
        if self.mirror is not None and self.settings.itsm.sla == "itsm":
            return  # the ticket system's own SLA clock governs (itsm.sla)
        target = self.cfg.target(row.priority)
        elapsed = self.elapsed(row, uow.now)
        checks = []
        if row.first_response_at is None:
            checks.append(("first_response", target.first_response_minutes, "fr_reminded_at", "fr_breached_at"))
        checks.append(("resolution", target.resolution_minutes, "res_reminded_at", "res_breached_at"))
        for name, minutes, reminded, breached in checks:
            if elapsed >= minutes and getattr(row, breached) is None:
                setattr(row, breached, uow.now)
                if getattr(row, reminded) is None:
                    setattr(row, reminded, uow.now)
                uow.emit("sla_breached", subject=row.ref, id=row.ref, target=name, priority=row.priority,
                         minutes=minutes, elapsed=round(elapsed), at=uow.now.isoformat())
                for address in self.queue_targets(row.category):
                    mention = self.cfg.oncall_mention.get(address.platform.value, "")
                    await self._alert(uow, row, address, "breach", name, minutes, mention)
            elif elapsed >= minutes * self.cfg.reminder_fraction and getattr(row, reminded) is None:
                setattr(row, reminded, uow.now)
                uow.emit("sla_reminder", subject=row.ref, id=row.ref, target=name, priority=row.priority,
                         minutes=minutes, elapsed=round(elapsed), at=uow.now.isoformat())
                if row.assignee_email:
                    address = await self.direct(uow, row.assignee_email)
                    await self._alert(uow, row, address, "reminder", name, minutes, "")
                else:
                    for address in self.queue_targets(row.category):
                        await self._alert(uow, row, address, "reminder", name, minutes, "")

    async def _alert(self, uow: UnitOfWork, row: TicketRow, address: Address, kind: str, target: str,
                     minutes: int, mention: str) -> None:
        from markupsafe import Markup

        calendar = self.calendar_for(row.priority)
        remaining = max(minutes - self.elapsed(row, uow.now), 0)
        due = calendar.add_minutes(uow.now, remaining).astimezone(self.calendar.timezone)
        context = {"kind": kind, "ticket_id": row.ref, "target": target.replace("_", " "), "priority": row.priority,
                   "summary": row.summary, "requester_name": row.requester_name,
                   "assignee_name": await self.name_of(row.assignee_email) if row.assignee_email else "",
                   "due": due.strftime("%a %d %b, %H:%M"),
                   "mention": Markup(mention)}  # noqa: S704 - configured by an admin, not typed by a user
        text = self.render(address.platform, "ticket_notice", context)
        buttons = (Button("Claim", B_CLAIM + row.ref, "primary"),) if row.assignee_email is None else ()
        uow.enqueue(Outbound(address, Reply(text=text, buttons=buttons, template="ticket_notice")),
                    idempotency_key=f"ticket:{row.ref}:sla:{target}:{kind}:{address.platform.value}:"
                                    f"{address.conversation_id}:r{row.reopen_count}",
                    group_key=f"ticket:{row.ref}")

    async def _release(self, uow: UnitOfWork, row: TicketRow) -> None:
        if row.assignee_email is None or row.status not in (CLAIMED, REOPENED):
            return
        # "Unworked": nothing done since the claim (a reply, a note, an assignment would count).
        claimed, worked = _aware(row.claimed_at) or uow.now, _aware(row.worked_at)
        if worked is not None and worked >= claimed:
            return
        idle = self.calendar.minutes_between(claimed, uow.now)
        if idle < self.cfg.claim_release_minutes:
            return
        holder = row.assignee_email
        row.assignee_email = None
        row.status = REOPENED if row.reopen_count else NEW
        self._touch(uow, row)
        uow.emit("ticket_released", subject=row.ref, id=row.ref, previous=holder, idle_minutes=int(idle))
        await self.update_cards(uow, row)
        await self.to_person(uow, holder, None, "ticket_notice",
                             {"kind": "released_you", "ticket_id": row.ref, "summary": row.summary,
                              "minutes": self.cfg.claim_release_minutes},
                             f"ticket:{row.ref}:released:v{row.version}")
        await self.to_thread(uow, row, "ticket_notice",
                             {"kind": "released", "holder": await self.name_of(holder), "summary": row.summary,
                              "minutes": self.cfg.claim_release_minutes},
                             f"released:v{row.version}", buttons=(Button("Claim", B_CLAIM + row.ref, "primary"),))

    async def _auto_close(self, uow: UnitOfWork, row: TicketRow) -> None:
        resolved = _aware(row.resolved_at)
        if resolved is None or uow.now - resolved < timedelta(days=self.cfg.auto_close_days):
            return
        row.status, row.closed_at = CLOSED, uow.now
        self._touch(uow, row)
        uow.emit("ticket_closed", subject=row.ref, id=row.ref, after_days=self.cfg.auto_close_days)
        await self.update_cards(uow, row)


async def find_by_thread(uow: UnitOfWork, platform: str, conversation_id: str, thread_id: str) -> str | None:
    """The ticket whose queue post started this thread (its outbox row holds the platform's id)."""
    query = (select(OutboxRow.idempotency_key)
             .where(OutboxRow.message_ref == thread_id,
                    OutboxRow.idempotency_key.like(f"ticket:%:{QUEUE_POST}:{platform}:{conversation_id}"))
             .limit(1))
    key = (await uow.session.execute(query)).scalar_one_or_none()
    return key.split(":")[1] if key else None


def note_form(ref: str) -> Form:
    return Form(form_id=FORM_NOTE + ref, title=f"Internal note on {ref}",
                fields=(FormField("note", "Note (technicians only)", kind="multiline"),), submit_label="Save note")


def reply_form(ref: str) -> Form:
    return Form(form_id=FORM_REPLY + ref, title=f"Reply on {ref}",
                fields=(FormField("message", "Your message", kind="multiline"),), submit_label="Send")


def resolve_form(ref: str) -> Form:
    return Form(form_id=FORM_RESOLVE + ref, title=f"Resolve {ref}",
                fields=(FormField("note", "What fixed it (sent to the requester)", kind="multiline",
                                  required=False),), submit_label="Resolve")
