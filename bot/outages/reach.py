"""The admin's live delivery report of a notice: how many copies went out, are waiting or failed
(and why), who said they were affected, linked tickets; kept current while copies go out."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Address, Outbound, Platform, Reply
from bot.outages.model import DeliveryReport, group_key
from bot.outbox.worker import OUTBOX_REF
from bot.render.renderer import Renderer
from bot.store.repos import UnitOfWork
from bot.store.tables import IncidentPersonRow, IncidentRow, IncidentTicketRow, OutboxRow


async def delivery_report(session: AsyncSession, incident: IncidentRow) -> DeliveryReport:
    incident_id = incident.id
    prefix = f"outage:{incident_id}:post:"
    posts = (OutboxRow.group_key == group_key(incident_id)) & OutboxRow.idempotency_key.startswith(prefix)
    counts = {str(s): int(c) for s, c in (await session.execute(
        select(OutboxRow.status, func.count()).where(posts).group_by(OutboxRow.status))).all()}
    reasons = tuple((str(e or "unknown"), int(c)) for e, c in (await session.execute(
        select(OutboxRow.last_error, func.count()).where(posts, OutboxRow.status == "failed")
        .group_by(OutboxRow.last_error).order_by(func.count().desc()).limit(5))).all())
    unreachable = await session.scalar(
        select(func.count()).select_from(OutboxRow)
        .where(posts, OutboxRow.status == "failed", OutboxRow.last_error.startswith("not reachable")))
    people = (await session.execute(
        select(func.count(IncidentPersonRow.affected_at), func.count(IncidentPersonRow.acknowledged_at))
        .where(IncidentPersonRow.incident_id == incident_id))).one()
    tickets = await session.scalar(select(func.count()).select_from(IncidentTicketRow)
                                   .where(IncidentTicketRow.incident_id == incident_id))
    return DeliveryReport(
        incident_id=incident_id, service=incident.service, status=incident.status,
        total=sum(counts.values()), sent=counts.get("sent", 0),
        pending=counts.get("pending", 0) + counts.get("sending", 0), failed=counts.get("failed", 0),
        cancelled=counts.get("cancelled", 0), reasons=reasons, affected=int(people[0] or 0),
        acknowledged=int(people[1] or 0), tickets=int(tickets or 0), unreachable=int(unreachable or 0))


def report_text(renderer: Renderer, report: DeliveryReport, platform: Platform) -> str:
    context = report.to_json()
    return renderer.text(platform, template="outage_report", context=context)


async def refresh_reports(uow: UnitOfWork, renderer: Renderer, every_seconds: float) -> None:
    """Keep each admin's delivery report message current while copies are going out."""
    session = uow.session
    incidents = list((await session.execute(
        select(IncidentRow).where(IncidentRow.report_key.is_not(None),
                                  or_(IncidentRow.status.in_(("active", "scheduled")),
                                      IncidentRow.updated_at >= uow.now - timedelta(hours=6))))).scalars())
    for incident in incidents:
        report_key = incident.report_key
        if report_key is None:
            continue
        shown = incident.report_shown or {}
        last = shown.get("_at")
        if last and (uow.now - datetime.fromisoformat(last)).total_seconds() < every_seconds:
            continue
        current = await delivery_report(session, incident)
        report = current.to_json()
        if {k: v for k, v in shown.items() if k != "_at"} == report:
            continue
        original = (await session.execute(select(OutboxRow).where(
            OutboxRow.idempotency_key == incident.report_key))).scalar_one_or_none()
        if original is None:
            continue
        address = Address.from_json(original.address)
        incident.report_version += 1
        await session.execute(
            update(OutboxRow).where(OutboxRow.group_key == f"outage:{incident.id}:report",
                                    OutboxRow.status == "pending",
                                    OutboxRow.idempotency_key != incident.report_key)
            .values(status="cancelled", last_error="superseded").execution_options(synchronize_session=False))
        text = report_text(renderer, current, address.platform)
        uow.enqueue(Outbound(address, Reply(text=text, template="outage_report"),
                             update_ref=OUTBOX_REF + report_key),
                    idempotency_key=f"{report_key}:v{incident.report_version}",
                    group_key=f"outage:{incident.id}:report", kind="update")
        incident.report_shown = {**report, "_at": uow.now.isoformat()}
