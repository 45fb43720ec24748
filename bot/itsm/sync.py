"""Keeps tickets and their records in the help desk's ticket system in step, both ways.

Outbound: `ItsmSync` is the ticket service's mirror. Each change writes an outbox row (platform
"itsm", lane "itsm:<ticket>", so one ticket's calls go in order) in the change's own transaction;
the outbox worker hands it to `send` here. A comment carries a marker ("[helpdesk HD-1005#n42]")
that finds it again after an interrupted send (`find_delivered`) and tells its webhook echo from an
agent's comment. A create is found again by the ticket id the record carries (ServiceNow
`correlation_id`, the Jira summary's "[HD-1005]" prefix).

Inbound: a webhook (authenticated by the connector) or the periodic poll gives `RemoteChange`s.
Each is applied at most once (`itsm_seen`: the webhook delivery id, each comment id), through the
ticket service's `*_from_system` operations, which never mirror back. A status seen while an
outbound call for that ticket is still queued is left alone: the queued call is newer.

A forgotten person's tickets (`helpdesk person forget`: the requester is a pseudonym) are no longer
mirrored either way: their remote record is for the help desk to erase there, so nothing more is sent
to it, and a later comment or status from it is ignored (not applied), so nothing
about the person is taken in again.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.itsm.port import MARKER, OPEN, RESOLVED, NewRecord, RemoteChange, RemoteRecord, TicketSystem, marker
from bot.outbox.worker import Delivery, RetryLater, Undeliverable
from bot.settings import Settings
from bot.store.repos import UnitOfWork, insert_ignore
from bot.store.retention import is_forgotten
from bot.store.tables import ItsmCursorRow, ItsmLinkRow, ItsmSeenRow, OutboxRow, TicketRow

log = logging.getLogger("bot.itsm")

PLATFORM = "itsm"
# The outbox row being delivered (the generic webhook sends it as X-Helpdesk-Delivery).
DELIVERY_ID: contextvars.ContextVar[str] = contextvars.ContextVar("itsm_delivery_id", default="")
# A poll looks this far behind its last run, so a record changed during the last poll is not missed.
POLL_OVERLAP = timedelta(minutes=2)
FIRST_POLL = timedelta(hours=24)
LABELS = {"jira": "Jira", "servicenow": "ServiceNow", "webhook": "the ticket system"}


def describe(row: TicketRow, transcript_lines: int = 8) -> str:
    lines = [row.summary, ""]
    details = [(k, v) for k, v in (row.details or {}).items() if not isinstance(v, dict | list) and str(v).strip()]
    if details:
        lines += ["Details:", *[f"- {k}: {v}" for k, v in details[:20]], ""]
    if row.tried_articles:
        lines += ["Articles tried: " + ", ".join(row.tried_articles), ""]
    if row.tried_actions:
        lines += ["Self-service tried: " + ", ".join(row.tried_actions), ""]
    if row.transcript:
        lines += ["Conversation:", *list(row.transcript)[-transcript_lines:], ""]
    lines.append(f"Opened in chat ({row.channel}) by the help desk bot as {row.ref}, priority {row.priority}.")
    return "\n".join(lines)


class ItsmSync:
    def __init__(self, settings: Settings, system: TicketSystem,
                 sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.system = system
        self.sessions = sessions
        self.clock = clock
        self.tickets: Any = None  # the TicketService, set when wired (bot/app.py)
        self.on_commit: Callable[[], None] | None = None
        self.label = LABELS.get(system.name, system.name)

    # ----- mirror: called by the ticket service inside its unit of work -----------------------------

    def _enqueue(self, uow: UnitOfWork, row: TicketRow, key: str, payload: Mapping[str, Any]) -> None:
        if is_forgotten(row.requester_email):
            return  # its record there is the help desk's to erase: nothing more goes to it
        uow.enqueue_call(PLATFORM, {"system": self.system.name, "ref": row.ref}, payload,
                         idempotency_key=f"itsm:{self.system.name}:{row.ref}:{key}", lane=f"itsm:{row.ref}",
                         group_key=f"ticket:{row.ref}")

    def created(self, uow: UnitOfWork, row: TicketRow) -> None:
        record = NewRecord(row.ref, row.category, row.priority, row.summary,
                           describe(row, self.settings.tickets.transcript_lines), row.requester_email,
                           row.requester_name)
        self._enqueue(uow, row, "create", {"op": "create", "record": {
            "ref": record.ref, "category": record.category, "priority": record.priority, "summary": record.summary,
            "description": record.description, "requester_email": record.requester_email,
            "requester_name": record.requester_name}})

    def comment(self, uow: UnitOfWork, row: TicketRow, note_id: int, author: str, text: str, *,
                public: bool) -> None:
        head = f"{author} (in chat):" if public else f"Internal note by {author} (in chat):"
        body = f"{head}\n{text}\n\n{marker(row.ref, note_id)}"
        self._enqueue(uow, row, f"comment:{note_id}", {"op": "comment", "text": body, "public": public,
                                                        "marker": marker(row.ref, note_id)})

    def status(self, uow: UnitOfWork, row: TicketRow, status: str, note: str) -> None:
        # A note may come back as a comment (Jira's transition comment): the marker says it is ours.
        if note.strip():
            note = f"{note.strip()}\n\n{marker(row.ref, f's{row.version}')}"
        self._enqueue(uow, row, f"status:{status}:v{row.version}", {"op": "status", "status": status, "note": note})

    # ----- outbox sender ------------------------------------------------------------------------------

    async def _link(self, ref: str) -> ItsmLinkRow | None:
        async with self.sessions() as session:
            return await session.get(ItsmLinkRow, ref, populate_existing=True)

    async def _save_link(self, ref: str, record: RemoteRecord) -> None:
        async with self.sessions() as session, session.begin():
            await insert_ignore(session, ItsmLinkRow, {
                "ticket_ref": ref, "system": self.system.name, "remote_id": record.remote_id,
                "remote_key": record.remote_key, "url": record.url, "remote_status": record.status,
                "created_at": self.clock()}, ["ticket_ref"])
            uow = UnitOfWork(session, now=self.clock(), actor=f"itsm:{self.system.name}")
            uow.emit("itsm_linked", subject=ref, id=ref, system=self.system.name, remote=record.remote_key)
            if self.tickets is not None:
                row = (await session.execute(select(TicketRow).where(TicketRow.ref == ref))).scalar_one_or_none()
                if row is not None:
                    await self.tickets.to_thread(uow, row, "ticket_notice",
                                                 {"kind": "itsm_linked", "system": self.label,
                                                  "remote": record.remote_key, "url": record.url},
                                                 f"itsm-linked:{self.system.name}")

    async def _mark(self, key: str) -> bool:
        async with self.sessions() as session, session.begin():
            return await insert_ignore(session, ItsmSeenRow, {"system": self.system.name, "key": key[:200],
                                                              "at": self.clock()}, ["system", "key"])

    async def _set_remote_status(self, ref: str, status: str) -> None:
        async with self.sessions() as session, session.begin():
            link = await session.get(ItsmLinkRow, ref, with_for_update=True)
            if link is not None:
                link.remote_status = status

    async def _linked(self, ref: str) -> ItsmLinkRow:
        link = await self._link(ref)
        if link is None:
            # The create is still on its way (or retrying): this call waits its turn.
            raise RetryLater(f"{ref} is not in {self.label} yet", retry_after=5.0, scope="lane")
        return link

    async def send(self, delivery: Delivery) -> str | None:
        payload, ref = delivery.payload, str(delivery.address["ref"])
        token = DELIVERY_ID.set(delivery.idempotency_key)
        try:
            op = payload.get("op")
            if op == "create":
                existing = await self._link(ref)
                if existing is not None:
                    return existing.remote_key
                record = await self.system.create(NewRecord(**payload["record"]))
                await self._save_link(ref, record)
                log.info("%s: created %s in %s", ref, record.remote_key, self.label)
                return record.remote_key
            link = await self._linked(ref)
            if op == "comment":
                comment_id = await self.system.comment(link.remote_id, str(payload["text"]),
                                                       public=bool(payload["public"]))
                if comment_id:
                    await self._mark(f"comment:{comment_id}")
                return comment_id or str(payload["marker"])
            if op == "status":
                await self.system.set_status(link.remote_id, str(payload["status"]), str(payload.get("note", "")))
                await self._set_remote_status(ref, str(payload["status"]))
                return str(payload["status"])
            raise Undeliverable(f"unknown itsm operation {op!r}")
        finally:
            DELIVERY_ID.reset(token)

    async def find_delivered(self, delivery: Delivery) -> str | None:
        payload, ref = delivery.payload, str(delivery.address["ref"])
        op = payload.get("op")
        if op == "create":
            link = await self._link(ref)
            if link is not None:
                return link.remote_key
            found = await self.system.find(ref)
            if found is not None:
                await self._save_link(ref, found)
                return found.remote_key
            return None
        link = await self._link(ref)
        if link is None:
            return None
        if op == "comment":
            comment_id = await self.system.find_comment(link.remote_id, str(payload["marker"]))
            if comment_id:
                await self._mark(f"comment:{comment_id}")
            return comment_id
        if op == "status" and await self.system.get_status(link.remote_id) == payload["status"]:
            await self._set_remote_status(ref, str(payload["status"]))
            return str(payload["status"])
        return None

    # ----- inbound -------------------------------------------------------------------------------------

    async def _queued(self, session: AsyncSession, ref: str) -> bool:
        """An outbound call for this ticket is still waiting: what the record shows may be older."""
        found = (await session.execute(
            select(OutboxRow.id).where(OutboxRow.lane == f"itsm:{ref}", OutboxRow.status.in_(("pending", "sending")))
            .limit(1))).first()
        return found is not None

    async def _apply(self, uow: UnitOfWork, change: RemoteChange, *, from_poll: bool) -> bool:
        session = uow.session
        link = (await session.execute(select(ItsmLinkRow).where(
            ItsmLinkRow.system == self.system.name, ItsmLinkRow.remote_id == change.remote_id)
            .with_for_update())).scalar_one_or_none()
        if link is None:
            return False  # a record the bot did not create
        requester = (await session.execute(select(TicketRow.requester_email).where(
            TicketRow.ref == link.ticket_ref))).scalar_one_or_none()
        if is_forgotten(requester):
            log.info("%s: a change from %s on %s ignored: its requester was forgotten", link.ticket_ref,
                     self.label, link.remote_key)
            return False
        from bot.tickets.model import TicketError

        if change.kind == "comment" and change.comment is not None:
            comment = change.comment
            if comment.ours or MARKER.search(comment.text) or not comment.text.strip():
                return False
            if not await insert_ignore(session, ItsmSeenRow, {"system": self.system.name,
                                                              "key": f"comment:{comment.comment_id}"[:200],
                                                              "at": uow.now}, ["system", "key"]):
                return False
            try:
                if comment.public:
                    await self.tickets.relay_from_system(uow, link.ticket_ref, comment.author, comment.text, self.label)
                else:
                    await self.tickets.note_from_system(uow, link.ticket_ref, comment.author, comment.text,
                                                        self.label)
            except TicketError as exc:
                log.warning("%s: comment %s from %s not applied: %s", link.ticket_ref, comment.comment_id,
                            self.label, exc)
                return False
            return True
        if change.kind == "status" and change.status in (OPEN, RESOLVED) and change.status != link.remote_status:
            if from_poll and await self._queued(session, link.ticket_ref):
                return False
            link.remote_status = change.status
            if change.status == RESOLVED:
                outcome = await self.tickets.resolve_from_system(uow, link.ticket_ref, change.author, change.note,
                                                                 self.label)
            else:
                outcome = await self.tickets.reopen_from_system(uow, link.ticket_ref, change.author, self.label)
            return bool(outcome.action != "unchanged")
        return False

    async def apply(self, changes: Sequence[RemoteChange], *, delivery_id: str | None = None) -> int:
        """A webhook's changes, in one transaction: all applied, or none (and the sender retries)."""
        applied = 0
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=self.clock(), actor=f"itsm:{self.system.name}")
            if delivery_id and not await insert_ignore(session, ItsmSeenRow, {
                    "system": self.system.name, "key": f"delivery:{delivery_id}"[:200], "at": uow.now},
                    ["system", "key"]):
                return 0  # this delivery was handled already (a retry or a replay)
            for change in changes:
                applied += await self._apply(uow, change, from_poll=False)
        if applied and self.on_commit is not None:
            self.on_commit()
        return applied

    async def poll(self, now: datetime | None = None) -> int:
        """Apply what changed in the ticket system since the last poll (catches lost webhooks).
        One replica polls at a time (the cursor row is locked); each change commits on its own."""
        now = now or self.clock()
        async with self.sessions() as session, session.begin():
            await insert_ignore(session, ItsmCursorRow, {"system": self.system.name,
                                                         "polled_to": now - FIRST_POLL}, ["system"])
            cursor = (await session.execute(select(ItsmCursorRow).where(ItsmCursorRow.system == self.system.name)
                                            .with_for_update(skip_locked=True))).scalar_one_or_none()
            if cursor is None:
                return 0  # another replica is polling
            since = cursor.polled_to if cursor.polled_to.tzinfo else cursor.polled_to.replace(tzinfo=now.tzinfo)
            changes = await self.system.changed_since(since - POLL_OVERLAP, now)
            cursor.polled_to = now
        applied = 0
        for change in changes:
            async with self.sessions() as session, session.begin():
                uow = UnitOfWork(session, now=self.clock(), actor=f"itsm:{self.system.name}")
                applied += await self._apply(uow, change, from_poll=True)
        if applied:
            log.info("itsm poll: %d change(s) from %s applied", applied, self.label)
            if self.on_commit is not None:
                self.on_commit()
        return applied

    async def poll_if_due(self) -> None:
        if self.settings.itsm.poll_seconds <= 0:
            return
        now = self.clock()
        async with self.sessions() as session:
            cursor = await session.get(ItsmCursorRow, self.system.name)
        if cursor is not None:
            last = cursor.polled_to if cursor.polled_to.tzinfo else cursor.polled_to.replace(tzinfo=now.tzinfo)
            if now - last < timedelta(seconds=self.settings.itsm.poll_seconds):
                return
        try:
            await self.poll(now)
        except (RetryLater, Undeliverable) as exc:
            log.warning("itsm poll of %s: %s", self.label, exc)
