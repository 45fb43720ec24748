"""What every ticket operation stands on: people and roles, a ticket's SLA clock, where its messages
go and how they are rendered (through the outbox), loading rows and their bookkeeping."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.models import (
    Address,
    Button,
    Form,
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
from bot.store.repos import UnitOfWork
from bot.store.tables import TicketNoteRow, TicketRow
from bot.tickets.model import (
    B_ASSIGN,
    B_CLAIM,
    B_NOTE,
    B_REOPEN,
    B_RESOLVE,
    CLAIMABLE,
    CLOSED,
    CONSOLE_FANOUT,
    OPEN_STATUSES,
    QUEUE_POST,
    RESOLVED,
    STATUS_LABELS,
    Forbidden,
    NotFound,
    TicketMirror,
    aware,
)
from bot.tickets.sla import BusinessCalendar, Holidays, describe_minutes, elapsed_minutes


class TicketDesk:
    """The shared machinery of `TicketService` (bot/tickets/service.py), its queries and its periodic job."""

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

    def add_note(self, uow: UnitOfWork, row: TicketRow, author: str, kind: str, text: str,
                  data: Mapping[str, Any] | None = None) -> TicketNoteRow:
        note = TicketNoteRow(ticket_id=row.id, at=uow.now, author=author, kind=kind, text=text[:8000],
                             data=dict(data or {}))
        uow.session.add(note)
        return note

    def touch(self, uow: UnitOfWork, row: TicketRow) -> None:
        row.version = (row.version or 0) + 1
        row.updated_at = uow.now

    def pause(self, uow: UnitOfWork, row: TicketRow) -> None:
        if row.paused_since is None:
            row.paused_since = uow.now

    def resume(self, uow: UnitOfWork, row: TicketRow) -> None:
        since = aware(row.paused_since)
        if since is not None:
            row.paused_minutes = round((row.paused_minutes or 0) +
                                           self.calendar_for(row.priority).minutes_between(since, uow.now))
            row.paused_since = None

    def elapsed(self, row: TicketRow, now: datetime) -> float:
        created = aware(row.created_at) or now
        return elapsed_minutes(self.calendar_for(row.priority), created, now, row.paused_minutes or 0,
                               aware(row.paused_since))

    def mark_first_response(self, uow: UnitOfWork, row: TicketRow) -> None:
        if row.first_response_at is None:
            row.first_response_at = uow.now
            row.first_response_minutes = round(self.elapsed(row, uow.now))

    # -- the SLA clock of a ticket --

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

    def now(self) -> datetime:
        """The injected clock's time (the one clock every row and every check is written with)."""
        return self.clock()
