"""Outage notices: post, update in place, resolve, recall; scheduled maintenance with a reminder;
reactions (affected, acknowledged); the periodic job. Who a notice reaches is bot/outages/recipients.py,
the admin's live delivery report bot/outages/reach.py, ticket links and spike alerts
bot/outages/signals.py.

Delivery is the outbox's: one row per copy (idempotency key `outage:<id>:post:<recipient>`, group
`outage:<id>`), paced by the worker. An edit of a copy is an `update` row whose `update_ref` is
`outbox:<key of the post>`, which the worker swaps for the delivered message id; a copy whose post
has not been picked up yet is rewritten in place instead (the recipient simply gets the latest
version), and an older edit still waiting is cancelled by a newer one. Recall cancels every copy
still waiting and deletes the delivered ones.

Every method that changes something takes the caller's `UnitOfWork`, so a notice, its outbox rows
and its audit events commit together (a chat turn's transaction, or the CLI's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.models import Address, Button, Outbound, Platform, Reply
from bot.outages.audience import AudienceSource
from bot.outages.matching import best_match
from bot.outages.model import (
    CHUNK,
    EDITABLE,
    SEVERITIES,
    V_ACK,
    V_AFFECTED,
    V_BROKEN,
    V_FIXED,
    Audience,
    ChangeResult,
    DeliveryReport,
    NoticeDraft,
    OutageError,
    Recipient,
    aware,
    group_key,
    post_key,
    terms,
)
from bot.outages.reach import delivery_report, refresh_reports, report_text
from bot.outages.recipients import dm_address, expand_audience
from bot.outages.signals import alert_spike, detect_spikes, link_tickets, spike_draft
from bot.outbox.worker import OUTBOX_REF
from bot.render.renderer import Renderer
from bot.settings import OutageSettings
from bot.store.repos import UnitOfWork, insert_ignore, reply_to_json
from bot.store.tables import (
    IncidentPersonRow,
    IncidentRecipientRow,
    IncidentRow,
    IncidentTicketRow,
    OutboxRow,
)

log = logging.getLogger("bot.outages")


class OutageService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], renderer: Renderer, settings: OutageSettings,
                 audience: AudienceSource, dm_platform: str = "console", timezone: str = "UTC",
                 technicians: Sequence[str] = (), admins: Sequence[str] = ()) -> None:
        self.sessions = sessions
        self.renderer = renderer
        self.settings = settings
        self.audience = audience
        self.dm_platform = dm_platform
        self.tz = ZoneInfo(timezone)
        self.technicians = [e.lower() for e in technicians]
        self.admins = [e.lower() for e in admins]

    # ----- rendering ------------------------------------------------------------------------

    def _time(self, value: datetime | None, now: datetime | None = None) -> str:
        value = aware(value)
        if value is None:
            return ""
        local = value.astimezone(self.tz)
        reference = (aware(now) or value).astimezone(self.tz)
        return local.strftime("%H:%M") if local.date() == reference.date() else local.strftime("%a %d %b %H:%M")

    def context(self, incident: IncidentRow, now: datetime | None = None) -> dict[str, Any]:
        return {
            "incident_id": incident.id, "kind": incident.kind, "status": incident.status,
            "service": incident.service, "severity": incident.severity,
            "severity_label": incident.severity.capitalize(), "summary": incident.summary,
            "impact": incident.impact, "workaround": incident.workaround, "expected_fix": incident.expected_fix,
            "next_update": self._time(incident.next_update_at, now),
            "since": self._time(incident.starts_at or incident.created_at, now),
            "updated": self._time(incident.updated_at, now),
            "starts": self._time(incident.starts_at, now), "ends": self._time(incident.ends_at, now),
            "resolved_at": self._time(incident.resolved_at, now), "resolution": incident.resolution,
        }

    def notice_buttons(self, incident: IncidentRow) -> tuple[Button, ...]:
        if incident.status == "active":
            return (Button("I'm affected", f"{V_AFFECTED}{incident.id}", "primary"),
                    Button("Got it", f"{V_ACK}{incident.id}"))
        if incident.status == "scheduled":
            return (Button("Got it", f"{V_ACK}{incident.id}"),)
        return ()

    def notice(self, incident: IncidentRow, platform: str, now: datetime | None = None) -> Reply:
        text = self.renderer.text(Platform(platform), template="outage_notice", context=self.context(incident, now))
        return Reply(text=text, buttons=self.notice_buttons(incident), template="outage_notice",
                     context={"incident_id": incident.id, "version": incident.version})

    def _payloads(self, incident: IncidentRow, kind: str, platforms: set[str], now: datetime,
                  update_ref: str | None = None) -> dict[str, dict[str, Any]]:
        return {p: {"kind": kind, "reply": reply_to_json(self.notice(incident, p, now)), "update_ref": update_ref}
                for p in platforms}

    # ----- audience -------------------------------------------------------------------------

    def default_audience(self) -> Audience:
        mode = self.settings.default_audience
        return Audience(channels=dict(self.settings.announcement_channels) if mode == "channels" else {},
                        everyone=mode == "everyone")

    async def expand(self, session: AsyncSession, audience: Audience) -> list[Recipient]:
        return await expand_audience(session, audience, self.audience, self.dm_platform)

    # ----- reading --------------------------------------------------------------------------

    async def get(self, session: AsyncSession, incident_id: int, *, lock: bool = False) -> IncidentRow:
        query = select(IncidentRow).where(IncidentRow.id == incident_id)
        if lock:
            query = query.with_for_update()
        row = (await session.execute(query)).scalar_one_or_none()
        if row is None:
            raise OutageError("not_found", f"no outage notice #{incident_id}")
        return row

    async def current(self, session: AsyncSession) -> list[IncidentRow]:
        """Active incidents and maintenance that is scheduled or under way, newest first."""
        return list((await session.execute(
            select(IncidentRow).where(IncidentRow.status.in_(("active", "scheduled")))
            .order_by(IncidentRow.created_at.desc())
        )).scalars())

    async def match(self, session: AsyncSession, text: str) -> IncidentRow | None:
        """The active incident (or maintenance under way) a message is about, if any."""
        active = [i for i in await self.current(session) if i.status == "active"]
        if not active:
            return None
        found = best_match(text, [(i.id, terms(i)) for i in active], self.settings.match_threshold)
        return next((i for i in active if found is not None and i.id == found.incident_id), None)

    async def report(self, session: AsyncSession, incident_id: int) -> DeliveryReport:
        return await delivery_report(session, await self.get(session, incident_id))

    def render_report(self, report: DeliveryReport, platform: Platform) -> str:
        return report_text(self.renderer, report, platform)

    # ----- post -----------------------------------------------------------------------------

    async def post(self, uow: UnitOfWork, draft: NoticeDraft, *, actor: str,
                   report_to: Address | None = None) -> ChangeResult:
        if not draft.service.strip():
            raise OutageError("invalid", "a notice needs a service")
        if draft.severity not in SEVERITIES:
            raise OutageError("invalid", f"severity must be one of {', '.join(SEVERITIES)}")
        now = uow.now
        maintenance = draft.kind == "maintenance"
        if maintenance and (draft.starts_at is None or draft.ends_at is None):
            raise OutageError("invalid", "maintenance needs a start and an end time")
        if maintenance and draft.ends_at is not None and draft.starts_at is not None and \
                draft.ends_at <= draft.starts_at:
            raise OutageError("invalid", "maintenance must end after it starts")
        audience = draft.audience or self.default_audience()
        scheduled = maintenance and draft.starts_at is not None and draft.starts_at > now
        incident = IncidentRow(
            kind="maintenance" if maintenance else "incident", status="scheduled" if scheduled else "active",
            service=draft.service.strip()[:200], aliases=list(draft.aliases), keywords=list(draft.keywords),
            category=draft.category, severity=draft.severity, summary=draft.summary, impact=draft.impact,
            workaround=draft.workaround, expected_fix=draft.expected_fix[:200], next_update_at=draft.next_update_at,
            audience=audience.to_json(), starts_at=draft.starts_at if maintenance else now,
            ends_at=draft.ends_at, reminder_minutes=(draft.reminder_minutes if draft.reminder_minutes is not None
                                                     else self.settings.maintenance_reminder_minutes)
            if maintenance else None,
            version=1, resolution="", created_by=actor, created_at=now, updated_at=now, report_shown={},
            report_version=0,
        )
        uow.session.add(incident)
        await uow.session.flush()
        recipients = await self.expand(uow.session, audience)
        await self._insert_copies(uow, incident, recipients, "post")
        if report_to is not None:
            key = f"outage:{incident.id}:report"
            report = DeliveryReport(incident.id, incident.service, incident.status, len(recipients), 0,
                                    len(recipients), 0, 0, (), 0, 0, 0)
            uow.enqueue(Outbound(report_to, Reply(text=self.render_report(report, report_to.platform),
                                                  template="outage_report")),
                        idempotency_key=key, group_key=f"outage:{incident.id}:report")
            incident.report_key = key
            incident.report_shown = report.to_json()
        uow.emit("outage_posted", subject=group_key(incident.id), incident=incident.id, service=incident.service,
                 kind=incident.kind, status=incident.status, recipients=len(recipients))
        return ChangeResult(incident, edits=len(recipients))

    async def _insert_copies(self, uow: UnitOfWork, incident: IncidentRow, recipients: Sequence[Recipient],
                             what: str) -> None:
        """One outbox row per copy (and, for the post, one recipient row), in bulk."""
        now = uow.now
        payloads = self._payloads(incident, "post", {r.platform for r in recipients}, now)
        outbox_rows: list[dict[str, Any]] = []
        recipient_rows: list[dict[str, Any]] = []
        for r in recipients:
            key = post_key(incident.id, r.key) if what == "post" else f"outage:{incident.id}:{what}:{r.key}"
            outbox_rows.append({
                "idempotency_key": key[:512], "platform": r.platform, "address": r.address.to_json(),
                "payload": payloads[r.platform], "lane": f"{r.platform}:{r.address.conversation_id}",
                "group_key": group_key(incident.id), "status": "pending", "attempts": 0,
                "next_attempt_at": now, "created_at": now,
            })
            if what == "post":
                recipient_rows.append({
                    "incident_id": incident.id, "recipient_key": r.key, "kind": r.kind, "platform": r.platform,
                    "email": r.email, "address": r.address.to_json(), "post_key": key[:512], "status": "pending",
                    "created_at": now,
                })
        for start in range(0, len(outbox_rows), CHUNK):
            await uow.session.execute(insert(OutboxRow), outbox_rows[start:start + CHUNK])
        for start in range(0, len(recipient_rows), CHUNK):
            await uow.session.execute(insert(IncidentRecipientRow), recipient_rows[start:start + CHUNK])

    # ----- update / resolve -----------------------------------------------------------------

    async def update(self, uow: UnitOfWork, incident_id: int, changes: Mapping[str, Any], *,
                     actor: str) -> ChangeResult:
        incident = await self.get(uow.session, incident_id, lock=True)
        if incident.status not in ("active", "scheduled"):
            raise OutageError("closed", f"notice #{incident_id} is {incident.status}")
        unknown = set(changes) - EDITABLE
        if unknown:
            raise OutageError("invalid", f"cannot change {', '.join(sorted(unknown))}")
        if "severity" in changes and changes["severity"] not in SEVERITIES:
            raise OutageError("invalid", f"severity must be one of {', '.join(SEVERITIES)}")
        for name, value in changes.items():
            if name in ("aliases", "keywords"):
                value = list(value)
            setattr(incident, name, value)
        edits = await self._edit_copies(uow, incident)
        uow.emit("outage_updated", subject=group_key(incident_id), incident=incident_id,
                 changed=sorted(changes), version=incident.version, edits=edits, actor=actor)
        return ChangeResult(incident, edits=edits)

    async def _edit_copies(self, uow: UnitOfWork, incident: IncidentRow) -> int:
        """Bring every copy to the incident's current content; the number of edits enqueued."""
        now = uow.now
        incident.version += 1
        incident.updated_at = now
        session = uow.session
        gk = group_key(incident.id)
        copy_prefixes = (f"outage:{incident.id}:post:", f"outage:{incident.id}:reminder:")
        is_copy = or_(*(OutboxRow.idempotency_key.startswith(p) for p in copy_prefixes))
        platforms = set((await session.execute(
            select(OutboxRow.platform).where(OutboxRow.group_key == gk, is_copy).distinct())).scalars())
        posts = self._payloads(incident, "post", platforms, now)
        # Copies not picked up yet: the recipient simply gets the latest version as the post.
        waiting = 0
        for platform in platforms:
            result: Any = await session.execute(
                update(OutboxRow)
                .where(OutboxRow.group_key == gk, OutboxRow.status == "pending", OutboxRow.platform == platform,
                       is_copy)
                .values(payload=posts[platform]).execution_options(synchronize_session=False))
            waiting += int(result.rowcount or 0)
        # Edits still waiting are superseded by this one.
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.group_key == gk, OutboxRow.status == "pending",
                   OutboxRow.idempotency_key.startswith(f"outage:{incident.id}:v"))
            .values(status="cancelled", last_error="superseded by a newer version")
            .execution_options(synchronize_session=False))
        # Copies on their way or delivered: edit them in place (the worker finds their message id).
        copies = (await session.execute(
            select(OutboxRow.idempotency_key, OutboxRow.platform, OutboxRow.address, OutboxRow.lane)
            .where(OutboxRow.group_key == gk, OutboxRow.status.in_(("sending", "sent")), is_copy))).all()
        rows = [{
            "idempotency_key": f"outage:{incident.id}:v{incident.version}:{c.idempotency_key}"[:512],
            "platform": c.platform, "address": c.address,
            "payload": {**posts[c.platform], "kind": "update", "update_ref": OUTBOX_REF + c.idempotency_key},
            "lane": c.lane, "group_key": gk, "status": "pending", "attempts": 0, "next_attempt_at": now,
            "created_at": now,
        } for c in copies]
        for start in range(0, len(rows), CHUNK):
            await session.execute(insert(OutboxRow), rows[start:start + CHUNK])
        return len(rows) + waiting

    async def resolve(self, uow: UnitOfWork, incident_id: int, *, actor: str, note: str = "") -> ChangeResult:
        incident = await self.get(uow.session, incident_id, lock=True)
        if incident.status not in ("active", "scheduled"):
            raise OutageError("closed", f"notice #{incident_id} is {incident.status}")
        incident.status = "resolved"
        incident.resolved_at = uow.now
        incident.resolution = note
        edits = await self._edit_copies(uow, incident)
        notified = await self._notify_resolved(uow, incident)
        uow.emit("outage_resolved", subject=group_key(incident_id), incident=incident_id, edits=edits,
                 notified=notified, actor=actor)
        return ChangeResult(incident, edits=edits, notified=notified)

    async def _notify_resolved(self, uow: UnitOfWork, incident: IncidentRow) -> int:
        """Direct messages to people who said they were affected and to requesters of linked tickets."""
        session = uow.session
        count = 0
        told: set[str] = set()
        tickets = list((await session.execute(
            select(IncidentTicketRow).where(IncidentTicketRow.incident_id == incident.id,
                                            IncidentTicketRow.notified_at.is_(None)))).scalars())
        for ticket in tickets:
            ticket.notified_at = uow.now
            if not ticket.requester:
                continue
            address = await self._dm_address(uow, ticket.requester)
            text = self.renderer.text(address.platform, template="outage_resolved_dm", context={
                **self.context(incident, uow.now), "ticket_id": ticket.ticket_id})
            buttons = (Button("Yes, it's fixed", f"{V_FIXED}{incident.id}:{ticket.ticket_id}", "primary"),
                       Button("Still broken", f"{V_BROKEN}{incident.id}:{ticket.ticket_id}"))
            uow.enqueue(Outbound(address, Reply(text=text, buttons=buttons, template="outage_resolved_dm")),
                        idempotency_key=f"outage:{incident.id}:ticket:{ticket.ticket_id}",
                        group_key=f"outage:{incident.id}:notify")
            told.add(ticket.requester.lower())
            count += 1
        people = list((await session.execute(
            select(IncidentPersonRow).where(IncidentPersonRow.incident_id == incident.id,
                                            IncidentPersonRow.subscribed.is_(True),
                                            IncidentPersonRow.notified_at.is_(None)))).scalars())
        for person in people:
            person.notified_at = uow.now
            if person.email.lower() in told:
                continue
            address = Address.from_json(person.address) if person.address else await self._dm_address(uow, person.email)
            text = self.renderer.text(address.platform, template="outage_resolved_dm", context={
                **self.context(incident, uow.now), "ticket_id": None})
            uow.enqueue(Outbound(address, Reply(text=text, template="outage_resolved_dm")),
                        idempotency_key=f"outage:{incident.id}:resolved:{person.email.lower()}",
                        group_key=f"outage:{incident.id}:notify")
            count += 1
        return count

    async def _dm_address(self, uow: UnitOfWork, email: str) -> Address:
        return await dm_address(uow, email, self.dm_platform)

    # ----- recall ---------------------------------------------------------------------------

    async def recall(self, uow: UnitOfWork, incident_id: int, *, actor: str) -> ChangeResult:
        """A mistaken notice: cancel every copy still waiting, delete every delivered one."""
        session = uow.session
        incident = await self.get(session, incident_id, lock=True)
        if incident.status == "recalled":
            raise OutageError("closed", f"notice #{incident_id} is already recalled")
        gk = group_key(incident_id)
        result: Any = await session.execute(
            update(OutboxRow).where(OutboxRow.group_key == gk, OutboxRow.status == "pending")
            .values(status="cancelled", last_error="recalled").execution_options(synchronize_session=False))
        cancelled = int(result.rowcount or 0)
        # Everything that went out (or may be going out right now) as a message of its own.
        copies = (await session.execute(
            select(OutboxRow.idempotency_key, OutboxRow.platform, OutboxRow.address, OutboxRow.lane)
            .where(OutboxRow.group_key == gk,
                   or_(OutboxRow.status.in_(("sending", "sent")), OutboxRow.message_ref.is_not(None)),
                   or_(OutboxRow.idempotency_key.startswith(f"outage:{incident_id}:post:"),
                       OutboxRow.idempotency_key.startswith(f"outage:{incident_id}:reminder:"))))).all()
        now = uow.now
        rows = [{
            "idempotency_key": f"outage:{incident_id}:delete:{c.idempotency_key}"[:512], "platform": c.platform,
            "address": c.address, "payload": {"kind": "delete", "reply": {"text": ""},
                                              "update_ref": OUTBOX_REF + c.idempotency_key},
            "lane": c.lane, "group_key": gk, "status": "pending", "attempts": 0, "next_attempt_at": now,
            "created_at": now,
        } for c in copies]
        for start in range(0, len(rows), CHUNK):
            await session.execute(insert(OutboxRow), rows[start:start + CHUNK])
        await session.execute(
            update(IncidentRecipientRow).where(IncidentRecipientRow.incident_id == incident_id)
            .values(status="recalled").execution_options(synchronize_session=False))
        incident.status = "recalled"
        incident.updated_at = now
        incident.version += 1
        uow.emit("outage_recalled", subject=gk, incident=incident_id, cancelled=cancelled, deleted=len(rows),
                 actor=actor)
        return ChangeResult(incident, cancelled=cancelled, deleted=len(rows))

    # ----- reactions ------------------------------------------------------------------------

    async def react(self, uow: UnitOfWork, incident_id: int, *, email: str, platform: str, address: Address | None,
                    affected: bool) -> IncidentRow:
        incident = await self.get(uow.session, incident_id)
        email = email.lower()
        await insert_ignore(uow.session, IncidentPersonRow, {
            "incident_id": incident_id, "email": email, "platform": platform,
            "address": address.to_json() if address else None, "subscribed": False,
        }, ["incident_id", "email"])
        person = (await uow.session.execute(
            select(IncidentPersonRow).where(IncidentPersonRow.incident_id == incident_id,
                                            IncidentPersonRow.email == email))).scalar_one()
        if address is not None:
            person.address = address.to_json()
        if affected:
            if person.affected_at is None:
                person.affected_at = uow.now
            person.subscribed = incident.status in ("active", "scheduled")
        elif person.acknowledged_at is None:
            person.acknowledged_at = uow.now
        uow.emit("outage_affected" if affected else "outage_acknowledged", subject=group_key(incident_id),
                 incident=incident_id)
        return incident

    async def ticket_feedback(self, uow: UnitOfWork, incident_id: int, ticket_id: str, *, fixed: bool,
                              email: str) -> bool:
        row = (await uow.session.execute(
            select(IncidentTicketRow).where(IncidentTicketRow.incident_id == incident_id,
                                            IncidentTicketRow.ticket_id == ticket_id))).scalar_one_or_none()
        if row is None or (row.requester or "").lower() != email.lower():
            return False
        row.feedback = "fixed" if fixed else "not_fixed"
        uow.emit("outage_ticket_feedback", subject=ticket_id, incident=incident_id, ticket=ticket_id, fixed=fixed)
        return True

    # ----- periodic work --------------------------------------------------------------------

    async def tick(self, now: datetime) -> None:
        """Maintenance transitions and reminders, recipient sync, ticket links, spikes, live reports.
        Each step commits on its own, so one failing does not hold back the others."""
        for step in (self._maintenance, self._sync_recipients, self._link_tickets, self._detect_spikes,
                     self._refresh_reports):
            try:
                async with self.sessions() as session, session.begin():
                    await step(UnitOfWork(session, now=now, actor="helpdesk"))
            except Exception:
                log.exception("outage job %s failed", step.__name__)

    async def _maintenance(self, uow: UnitOfWork) -> None:
        now = uow.now
        for incident in await self.current(uow.session):
            if incident.kind != "maintenance":
                continue
            starts, ends = aware(incident.starts_at), aware(incident.ends_at)
            if incident.status == "scheduled" and starts is not None:
                remind = starts - timedelta(minutes=incident.reminder_minutes or 0)
                if incident.reminder_minutes and incident.reminder_sent_at is None and remind <= now < starts:
                    recipients = [self._recipient(r) for r in (await uow.session.execute(
                        select(IncidentRecipientRow).where(IncidentRecipientRow.incident_id == incident.id)
                    )).scalars()]
                    await self._insert_copies(uow, incident, recipients, "reminder")
                    incident.reminder_sent_at = now
                    uow.emit("outage_reminder", subject=group_key(incident.id), incident=incident.id,
                             recipients=len(recipients))
                if now >= starts:
                    incident.status = "active"
                    await self._edit_copies(uow, incident)
                    uow.emit("outage_maintenance_started", subject=group_key(incident.id), incident=incident.id)
            if incident.status == "active" and ends is not None and now >= ends:
                await self.resolve(uow, incident.id, actor="helpdesk")

    @staticmethod
    def _recipient(row: IncidentRecipientRow) -> Recipient:
        return Recipient(row.recipient_key, row.kind, row.platform, Address.from_json(row.address), row.email)

    async def _sync_recipients(self, uow: UnitOfWork) -> None:
        """Copy each copy's delivery status and message id from its outbox row to the recipient row."""
        session = uow.session
        outbox = OutboxRow.__table__
        status = (select(outbox.c.status).where(outbox.c.idempotency_key == IncidentRecipientRow.post_key)
                  .scalar_subquery())
        ref = (select(outbox.c.message_ref).where(outbox.c.idempotency_key == IncidentRecipientRow.post_key)
               .scalar_subquery())
        open_incidents = select(IncidentRow.id).where(
            or_(IncidentRow.status.in_(("active", "scheduled")), IncidentRow.updated_at >= uow.now - timedelta(days=1)))
        await session.execute(
            update(IncidentRecipientRow)
            .where(IncidentRecipientRow.incident_id.in_(open_incidents),
                   IncidentRecipientRow.status.in_(("pending", "sending")))
            .values(status=status, message_ref=ref).execution_options(synchronize_session=False))

    async def _link_tickets(self, uow: UnitOfWork) -> None:
        active = [i for i in await self.current(uow.session) if i.status == "active"]
        await link_tickets(uow, active, self.settings.match_threshold)

    async def _detect_spikes(self, uow: UnitOfWork) -> None:
        await detect_spikes(uow, self.settings, self.current, self._alert_spike)

    async def _alert_spike(self, uow: UnitOfWork, label: str, count: int) -> None:
        await alert_spike(uow, label, count, settings=self.settings, renderer=self.renderer,
                          technicians=self.technicians, admins=self.admins, dm_platform=self.dm_platform)

    def draft_for(self, label: str) -> NoticeDraft:
        return spike_draft(label)

    async def _refresh_reports(self, uow: UnitOfWork) -> None:
        await refresh_reports(uow, self.renderer, self.settings.report_every_seconds)
