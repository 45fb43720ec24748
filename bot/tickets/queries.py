"""Reading tickets: the queue and a person's tickets, the console's filtered search, a ticket's
history and detail, and the lookups the chat needs (a duplicate, a relay target, a thread's ticket)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.core.models import Person
from bot.store.repos import UnitOfWork
from bot.store.tables import EventRow, OutboxRow, TicketRow
from bot.tickets.desk import TicketDesk
from bot.tickets.model import OPEN_STATUSES, QUEUE_POST, Forbidden, TicketView, aware, view_of


async def list_tickets(desk: TicketDesk, uow: UnitOfWork, actor: Person, scope: str = "queue",
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
        dues = {r.id: desk.due(r, uow.now) for r in rows}

        def left(row: TicketRow) -> float:
            due = dues[row.id]
            return due[2] if due is not None else float("inf")

        rows.sort(key=lambda r: (r.priority, left(r), r.id))
        return [with_due(view_of(r), dues[r.id]) for r in rows]
    rows = list((await uow.session.execute(query.order_by(TicketRow.id.desc()).limit(limit))).scalars())
    return [with_due(view_of(r), desk.due(r, uow.now)) for r in rows]


def with_due(view: TicketView, due: tuple[str, datetime, float] | None) -> TicketView:
    if due is None:
        return view
    return replace(view, due_target=due[0], due_at=due[1], overdue=due[2] < 0)

async def search(desk: TicketDesk, uow: UnitOfWork, actor: Person, *, status: str = "open",
                 category: str = "", priority: str = "", assignee: str = "", limit: int = 200) -> list[TicketView]:
    """Technicians' filtered queue (the web console): status is open | unclaimed | breaching | all
    or one status; assignee is an email, "me" or "nobody". Highest priority first, then oldest."""
    desk.require_technician(actor)
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

async def history(desk: TicketDesk, uow: UnitOfWork, actor: Person, ref: str,
                  limit: int = 200) -> list[dict[str, Any]]:
    """The ticket's audit trail (events whose subject is the ticket), oldest first (technicians)."""
    desk.require_technician(actor, ref)
    row = await desk.get(uow, ref)
    rows = (await uow.session.execute(
        select(EventRow).where(EventRow.subject == row.ref).order_by(EventRow.id).limit(limit))).scalars()
    return [{"at": aware(e.at), "type": e.type, "actor": e.actor or "", "result": e.result or "",
             "data": dict(e.data or {})} for e in rows]

async def show(desk: TicketDesk, uow: UnitOfWork, actor: Person, ref: str) -> TicketView:
    row = await desk.get(uow, ref)
    if not actor.is_technician and row.requester_email != actor.email.lower():
        raise Forbidden(row.ref, "not your ticket")
    return view_of(row, await desk.notes(uow, row, internal=actor.is_technician))


async def open_duplicate_of(desk: TicketDesk, uow: UnitOfWork, requester: Person,
                            category: str) -> TicketRow | None:
    """The person's most recent open ticket in this category, if any."""
    query = (select(TicketRow).where(TicketRow.requester_email == requester.email.lower(),
                                     TicketRow.category == category, TicketRow.status.in_(OPEN_STATUSES))
             .order_by(TicketRow.id.desc()).limit(1))
    return (await uow.session.execute(query)).scalar_one_or_none()


async def relay_target(desk: TicketDesk, uow: UnitOfWork, requester: Person) -> TicketRow | None:
    """The ticket an employee's free chat goes to: their open ticket a technician most recently
    wrote to them about, within `relay_window_hours` (docs/tickets.md, "Relay")."""
    since = uow.now - timedelta(hours=desk.cfg.relay_window_hours)
    query = (select(TicketRow).where(TicketRow.requester_email == requester.email.lower(),
                                     TicketRow.status.in_(OPEN_STATUSES), TicketRow.tech_message_at >= since)
             .order_by(TicketRow.tech_message_at.desc()).limit(1))
    return (await uow.session.execute(query)).scalar_one_or_none()


async def find_by_thread(uow: UnitOfWork, platform: str, conversation_id: str, thread_id: str) -> str | None:
    """The ticket whose queue post started this thread (its outbox row holds the platform's id)."""
    query = (select(OutboxRow.idempotency_key)
             .where(OutboxRow.message_ref == thread_id,
                    OutboxRow.idempotency_key.like(f"ticket:%:{QUEUE_POST}:{platform}:{conversation_id}"))
             .limit(1))
    key = (await uow.session.execute(query)).scalar_one_or_none()
    return key.split(":")[1] if key else None
