"""The tickets' periodic job: SLA reminders and breaches, releasing unworked claims, auto-closing
resolved tickets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.core.models import Address, Button, Outbound, Reply
from bot.store.repos import UnitOfWork
from bot.store.tables import TicketRow
from bot.tickets.desk import TicketDesk
from bot.tickets.model import B_CLAIM, CLAIMED, CLOSED, NEW, OPEN_STATUSES, REOPENED, RESOLVED, aware


async def tick(desk: TicketDesk, now: datetime | None = None) -> list[dict[str, Any]]:
    if desk.sessions is None:
        return []
    now = now or desk.clock()
    async with desk.sessions() as session, session.begin():
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
                await _auto_close(desk, uow, row)
                continue
            await _sla(desk, uow, row)
            await _release(desk, uow, row)
    if desk.event_sink is not None:
        desk.event_sink.extend(uow.events)
    return uow.events

async def _sla(desk: TicketDesk, uow: UnitOfWork, row: TicketRow) -> None:
    if row.paused_since is not None:
        return
    if desk.mirror is not None and desk.settings.itsm.sla == "itsm":
        return  # the ticket system's own SLA clock governs (itsm.sla)
    target = desk.cfg.target(row.priority)
    elapsed = desk.elapsed(row, uow.now)
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
            for address in desk.queue_targets(row.category):
                mention = desk.cfg.oncall_mention.get(address.platform.value, "")
                await _alert(desk, uow, row, address, "breach", name, minutes, mention)
        elif elapsed >= minutes * desk.cfg.reminder_fraction and getattr(row, reminded) is None:
            setattr(row, reminded, uow.now)
            uow.emit("sla_reminder", subject=row.ref, id=row.ref, target=name, priority=row.priority,
                     minutes=minutes, elapsed=round(elapsed), at=uow.now.isoformat())
            if row.assignee_email:
                address = await desk.direct(uow, row.assignee_email)
                await _alert(desk, uow, row, address, "reminder", name, minutes, "")
            else:
                for address in desk.queue_targets(row.category):
                    await _alert(desk, uow, row, address, "reminder", name, minutes, "")

async def _alert(desk: TicketDesk, uow: UnitOfWork, row: TicketRow, address: Address, kind: str,
                 target: str, minutes: int, mention: str) -> None:
    from markupsafe import Markup

    calendar = desk.calendar_for(row.priority)
    remaining = max(minutes - desk.elapsed(row, uow.now), 0)
    due = calendar.add_minutes(uow.now, remaining).astimezone(desk.calendar.timezone)
    context = {"kind": kind, "ticket_id": row.ref, "target": target.replace("_", " "), "priority": row.priority,
               "summary": row.summary, "requester_name": row.requester_name,
               "assignee_name": await desk.name_of(row.assignee_email) if row.assignee_email else "",
               "due": due.strftime("%a %d %b, %H:%M"),
               "mention": Markup(mention)}  # noqa: S704 - configured by an admin, not typed by a user
    text = desk.render(address.platform, "ticket_notice", context)
    buttons = (Button("Claim", B_CLAIM + row.ref, "primary"),) if row.assignee_email is None else ()
    uow.enqueue(Outbound(address, Reply(text=text, buttons=buttons, template="ticket_notice")),
                idempotency_key=f"ticket:{row.ref}:sla:{target}:{kind}:{address.platform.value}:"
                                f"{address.conversation_id}:r{row.reopen_count}",
                group_key=f"ticket:{row.ref}")

async def _release(desk: TicketDesk, uow: UnitOfWork, row: TicketRow) -> None:
    if row.assignee_email is None or row.status not in (CLAIMED, REOPENED):
        return
    # "Unworked": nothing done since the claim (a reply, a note, an assignment would count).
    claimed, worked = aware(row.claimed_at) or uow.now, aware(row.worked_at)
    if worked is not None and worked >= claimed:
        return
    idle = desk.calendar.minutes_between(claimed, uow.now)
    if idle < desk.cfg.claim_release_minutes:
        return
    holder = row.assignee_email
    row.assignee_email = None
    row.status = REOPENED if row.reopen_count else NEW
    desk.touch(uow, row)
    uow.emit("ticket_released", subject=row.ref, id=row.ref, previous=holder, idle_minutes=int(idle))
    await desk.update_cards(uow, row)
    await desk.to_person(uow, holder, None, "ticket_notice",
                         {"kind": "released_you", "ticket_id": row.ref, "summary": row.summary,
                          "minutes": desk.cfg.claim_release_minutes},
                         f"ticket:{row.ref}:released:v{row.version}")
    await desk.to_thread(uow, row, "ticket_notice",
                         {"kind": "released", "holder": await desk.name_of(holder), "summary": row.summary,
                          "minutes": desk.cfg.claim_release_minutes},
                         f"released:v{row.version}", buttons=(Button("Claim", B_CLAIM + row.ref, "primary"),))

async def _auto_close(desk: TicketDesk, uow: UnitOfWork, row: TicketRow) -> None:
    resolved = aware(row.resolved_at)
    if resolved is None or uow.now - resolved < timedelta(days=desk.cfg.auto_close_days):
        return
    row.status, row.closed_at = CLOSED, uow.now
    desk.touch(uow, row)
    uow.emit("ticket_closed", subject=row.ref, id=row.ref, after_days=desk.cfg.auto_close_days)
    await desk.update_cards(uow, row)
