"""What the desk's own events say about outages: new tickets about an active incident's service get
linked to it, and a spike of similar conversations or tickets alerts the technicians."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Address, Button, Outbound, Platform, Reply
from bot.outages.matching import best_match
from bot.outages.model import V_DECLARE, V_DISMISS, NoticeDraft, aware, terms
from bot.outages.recipients import dm_address
from bot.render.renderer import Renderer
from bot.settings import OutageSettings
from bot.store.repos import UnitOfWork, insert_ignore
from bot.store.tables import EventRow, IncidentRow, IncidentTicketRow


async def link_tickets(uow: UnitOfWork, active: Sequence[IncidentRow], match_threshold: float) -> None:
    """Tickets opened about an active incident's service (category, or summary naming it) get linked.
    Reads `ticket_created` events, the contract every ticket desk keeps."""
    session = uow.session
    if not active:
        return
    since = min(aware(i.starts_at or i.created_at) or uow.now for i in active)
    events = (await session.execute(
        select(EventRow).where(EventRow.type == "ticket_created", EventRow.at >= since)
        .order_by(EventRow.id))).scalars()
    for event in events:
        data = event.data or {}
        ticket_id = str(data.get("id") or "")
        if not ticket_id:
            continue
        at = aware(event.at) or uow.now
        for incident in active:
            if at < (aware(incident.starts_at or incident.created_at) or at):
                continue
            summary = str(data.get("summary") or "")
            related = (incident.category is not None and data.get("category") == incident.category) or (
                summary and best_match(summary, [(incident.id, terms(incident))],
                                       match_threshold) is not None)
            if related and await insert_ignore(session, IncidentTicketRow, {
                    "incident_id": incident.id, "ticket_id": ticket_id, "requester": event.actor,
                    "linked_at": uow.now}, ["incident_id", "ticket_id"]):
                uow.emit("outage_ticket_linked", subject=ticket_id, incident=incident.id, ticket=ticket_id)


async def detect_spikes(uow: UnitOfWork, settings: OutageSettings,
                        current: Callable[[AsyncSession], Awaitable[list[IncidentRow]]],
                        alert: Callable[[UnitOfWork, str, int], Awaitable[None]]) -> None:
    """Similar new conversations or tickets passing the configured count within the window alert
    the technicians once per window and label (`alert`), unless an incident for that label is active
    (among `current`)."""
    session = uow.session
    window = timedelta(minutes=settings.spike_window_minutes)
    since = uow.now - window
    events = (await session.execute(
        select(EventRow.type, EventRow.data, EventRow.actor, EventRow.conversation_key)
        .where(EventRow.type.in_(("triaged", "ticket_created")), EventRow.at >= since))).all()
    who: dict[str, set[str]] = {}
    for kind, data, actor, conversation in events:
        label = str((data or {}).get("intent" if kind == "triaged" else "category") or "")
        if not label or label in settings.spike_ignore:
            continue
        who.setdefault(label, set()).add(str(actor or conversation or ""))
    if not who:
        return
    covered = {i.category for i in await current(session) if i.category}
    for label, people in sorted(who.items()):
        if len(people) < settings.spike_count or label in covered:
            continue
        recent = await session.scalar(select(func.count()).select_from(EventRow).where(
            EventRow.type.in_(("outage_spike_alert", "outage_spike_dismissed")),
            EventRow.subject == f"spike:{label}", EventRow.at > since))
        if recent:
            continue
        await alert(uow, label, len(people))


def spike_draft(label: str) -> NoticeDraft:
    """The notice a spike alert offers to declare."""
    service = label.replace("_", " ").capitalize()
    summary = f"Several people are reporting problems with {service.lower()}. We're investigating."
    return NoticeDraft(service=service, category=label, severity="major", summary=summary)

async def alert_spike(uow: UnitOfWork, label: str, count: int, *, settings: OutageSettings, renderer: Renderer,
                      technicians: Sequence[str], admins: Sequence[str], dm_platform: str) -> None:
    draft = spike_draft(label)
    # (address, may this audience declare?): a channel is offered the button (admins read it too,
    # and the click is checked); in direct messages only admins are offered what only they may do.
    targets: list[tuple[Address, bool]] = [
        (Address(Platform(p), c), True) for p, c in settings.alert_channels.items() if c]
    if not targets:
        for email in dict.fromkeys([*technicians, *admins]):
            targets.append((await dm_address(uow, email, dm_platform), email in admins))
    dismiss = Button("Not an outage", f"{V_DISMISS}{label}")
    stamp = uow.now.strftime("%Y%m%dT%H%M")
    for address, can_declare in targets:
        buttons = (Button("Declare an outage", f"{V_DECLARE}{label}", "primary"), dismiss) if can_declare \
            else (dismiss,)
        text = renderer.text(address.platform, template="outage_spike_alert", context={
            "count": count, "label": label, "minutes": settings.spike_window_minutes,
            "service": draft.service, "summary": draft.summary, "can_declare": can_declare})
        uow.enqueue(Outbound(address, Reply(text=text, buttons=buttons, template="outage_spike_alert")),
                    idempotency_key=f"outage:spike:{label}:{stamp}:{address.platform.value}:"
                                    f"{address.conversation_id}", group_key=f"outage:spike:{label}")
    uow.emit("outage_spike_alert", subject=f"spike:{label}", label=label, count=count, alerted=len(targets))
