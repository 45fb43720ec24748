"""The inbox: what a platform delivered is committed here BEFORE the platform is told "received".

Slack does not retry an event it got a 200 for, so work acknowledged but only held in memory is
lost when the process dies. A channel therefore `put`s the parsed delivery (one row, keyed by the
platform's event key, so a redelivery is not stored twice) and commits, then acknowledges, then
runs the turn. Any replica may `claim` due rows under a lease: `FOR UPDATE SKIP LOCKED` on
PostgreSQL, and on both databases a guarded UPDATE (the row is still due) decides who won, so one
row is never handled by two replicas at once. A crashed replica's rows are due again when their
lease runs out, or at once when the claimant was a process of this host that no longer exists.

Exactly once: the turn itself records `<platform>:<event id>` in the pipeline's transaction, with
its state, audit events and replies (outbox rows), so a row handled again after a crash between
that commit and `done` is recognised as a duplicate and only marked done.

Failed for good: after `max_attempts` a row is `failed`, with the error's first line (secrets and
statement parameters removed, see `error_summary`), and the channel tells the person once
(`tell_once` records that in `told_at`). The help desk sees such rows (`helpdesk inbox list
--failed`, metric `helpdesk_inbox_messages{status="failed"}`) and, once the cause is gone, makes
them due again (`helpdesk inbox retry`, `requeue`): any replica's poller then runs the turn from the
stored delivery. That is safe for the same reason as above: a turn that had in fact committed is
recognised by its event id and only marked done. Failed rows are kept 30 days, done rows 7.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# The shape a channel sees: the DurableInbox port (bot/core/ports.py); re-exported.
from bot.core.ports import InboxItem as InboxItem
from bot.logs import redact
from bot.store.repos import insert_ignore
from bot.store.tables import EventRow, InboxRow

log = logging.getLogger("bot.inbox")

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


# Credentials in a URL (`scheme://user:password@host`), as a database driver's message may carry.
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")
ERROR_LIMIT = 300


def error_summary(error: str) -> str:
    """What of a failed turn's error is kept in the row (and shown by `helpdesk inbox list`): its
    first line only (SQLAlchemy appends the statement and its parameters, which carry message text,
    on the following lines), secrets masked as in the logs and URL passwords removed, truncated."""
    first = (error or "").strip().splitlines()[0] if (error or "").strip() else ""
    first = first.split(" [SQL: ", 1)[0]
    return redact(_URL_PASSWORD.sub(r"\1***@", first))[:ERROR_LIMIT]


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A row as the help desk sees it (`helpdesk inbox list`): never the payload, which holds what
    the person wrote."""

    id: int
    key: str
    platform: str
    status: str
    attempts: int
    created_at: datetime
    done_at: datetime | None
    last_error: str | None
    told_at: datetime | None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Inbox:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = _now,
                 lease_seconds: float = 60.0, max_attempts: int = 3, worker_id: str | None = None) -> None:
        self.sessions = sessions
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max(1, max_attempts)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"

    async def put(self, key: str, platform: str, payload: Mapping[str, Any], *, claim: bool = True) -> int | None:
        """Store a delivery and commit. Returns its row id, or None when the key is already stored
        (a redelivery). With `claim`, the row is leased to this process at once, so the poller of
        another replica does not race the task about to handle it."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            inserted = await insert_ignore(session, InboxRow, {
                "key": key[:512], "platform": platform, "payload": dict(payload), "status": "pending",
                "attempts": 1 if claim else 0, "created_at": now,
                "locked_by": self.worker_id if claim else None,
                "locked_until": now + self.lease if claim else None,
            }, ["key"])
            if not inserted:
                return None
            row_id = (await session.execute(select(InboxRow.id).where(InboxRow.key == key[:512]))).scalar_one()
        return int(row_id)

    async def get(self, row_id: int) -> InboxItem | None:
        async with self.sessions() as session:
            row = await session.get(InboxRow, row_id)
            if row is None:
                return None
            return InboxItem(row.id, row.key, row.platform, dict(row.payload), row.attempts)

    def _due(self, now: datetime) -> Any:
        return (InboxRow.status == "pending") & or_(InboxRow.locked_until.is_(None), InboxRow.locked_until <= now)

    async def claim(self, limit: int = 20, platforms: tuple[str, ...] | None = None) -> list[InboxItem]:
        """Lease up to `limit` due rows, oldest first."""
        now = self.clock()
        until = now + self.lease
        async with self.sessions() as session, session.begin():
            query = (select(InboxRow.id).where(self._due(now)).order_by(InboxRow.id).limit(limit)
                     .with_for_update(skip_locked=True))
            if platforms is not None:
                query = query.where(InboxRow.platform.in_(platforms))
            ids = list((await session.execute(query)).scalars().all())
            if not ids:
                return []
            # Guarded: on SQLite (no row locks) another process may have claimed some meanwhile.
            await session.execute(
                update(InboxRow).where(InboxRow.id.in_(ids), self._due(now))
                .values(locked_by=self.worker_id, locked_until=until, attempts=InboxRow.attempts + 1)
                .execution_options(synchronize_session=False))
            rows = (await session.execute(
                select(InboxRow).where(InboxRow.id.in_(ids), InboxRow.locked_by == self.worker_id,
                                       InboxRow.locked_until == until).order_by(InboxRow.id))).scalars().all()
            return [InboxItem(r.id, r.key, r.platform, dict(r.payload), r.attempts) for r in rows]

    async def done(self, row_id: int, status: str = "done", error: str | None = None) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(InboxRow).where(InboxRow.id == row_id)
                .values(status=status, done_at=self.clock(), locked_by=None, locked_until=None,
                        last_error=error_summary(error) if error else None))

    async def retry_later(self, item: InboxItem, error: str) -> bool:
        """A turn failed: due again after a back-off; False (and `failed`) after the last attempt."""
        if item.attempts >= self.max_attempts:
            await self.done(item.id, "failed", error)
            return False
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(InboxRow).where(InboxRow.id == item.id)
                .values(locked_by=None, locked_until=self.clock() + timedelta(seconds=2 ** item.attempts),
                        last_error=error_summary(error)))
        return True

    async def tell_once(self, row_id: int) -> bool:
        """May the person be told this message failed for good? True only the first time for a row
        (recorded in `told_at`), so a re-queued row that fails again stays quiet."""
        async with self.sessions() as session, session.begin():
            result: Any = await session.execute(
                update(InboxRow).where(InboxRow.id == row_id, InboxRow.told_at.is_(None))
                .values(told_at=self.clock()).execution_options(synchronize_session=False))
            return int(result.rowcount or 0) == 1

    async def entries(self, *, failed_only: bool = False, ids: Sequence[int] | None = None,
                      limit: int = 200) -> list[InboxEntry]:
        """Rows (failed ones, or these ids), oldest first, without their payload."""
        query = select(InboxRow.id, InboxRow.key, InboxRow.platform, InboxRow.status, InboxRow.attempts,
                       InboxRow.created_at, InboxRow.done_at, InboxRow.last_error, InboxRow.told_at)
        if failed_only:
            query = query.where(InboxRow.status == "failed")
        if ids is not None:
            query = query.where(InboxRow.id.in_(list(ids)))
        async with self.sessions() as session:
            rows = (await session.execute(query.order_by(InboxRow.id).limit(limit))).all()
        return [InboxEntry(r.id, r.key, r.platform, r.status, r.attempts, r.created_at, r.done_at,
                           r.last_error, r.told_at) for r in rows]

    async def requeue(self, row_ids: Sequence[int] | None, *, actor: str = "operator") -> list[int]:
        """Make failed rows due again now (all failed rows when `row_ids` is None): pending, no
        attempts, no lease, so any replica's poller claims them. Rows that are not failed are left
        alone. Returns the ids re-queued, recorded as an `inbox_requeued` event (ids and keys, never
        the text). `told_at` stays: the person is not told twice."""
        async with self.sessions() as session, session.begin():
            query = select(InboxRow.id).where(InboxRow.status == "failed").order_by(InboxRow.id)
            if row_ids is not None:
                query = query.where(InboxRow.id.in_(list(row_ids)))
            ids = list((await session.execute(query.with_for_update())).scalars().all())
            if ids:
                await session.execute(
                    update(InboxRow).where(InboxRow.id.in_(ids), InboxRow.status == "failed")
                    .values(status="pending", attempts=0, locked_by=None, locked_until=None, done_at=None)
                    .execution_options(synchronize_session=False))
                keys = list((await session.execute(
                    select(InboxRow.key).where(InboxRow.id.in_(ids)).order_by(InboxRow.id))).scalars().all())
                session.add(EventRow(at=self.clock(), type="inbox_requeued", conversation_key=None, actor=actor,
                                     data={"count": len(ids), "ids": [int(i) for i in ids], "keys": keys}))
        if ids:
            log.warning("inbox: %d failed deliveries re-queued", len(ids))
        return [int(i) for i in ids]

    async def release(self, row_ids: list[int]) -> None:
        """Shutting down with these unfinished: due again now, for another replica or the next start."""
        if not row_ids:
            return
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(InboxRow).where(InboxRow.id.in_(row_ids), InboxRow.status == "pending",
                                       InboxRow.locked_by == self.worker_id)
                .values(locked_by=None, locked_until=None).execution_options(synchronize_session=False))

    async def recover_orphans(self) -> int:
        """Rows leased by a process of this host that no longer exists (killed): due again now."""
        host = socket.gethostname()
        async with self.sessions() as session, session.begin():
            owners = (await session.execute(
                select(InboxRow.locked_by).where(InboxRow.status == "pending", InboxRow.locked_by.like(f"{host}:%"))
                .distinct())).scalars().all()
            dead = [o for o in owners if o and o != self.worker_id and o.rsplit(":", 1)[-1].isdigit()
                    and not _pid_alive(int(o.rsplit(":", 1)[-1]))]
            if not dead:
                return 0
            result: Any = await session.execute(
                update(InboxRow).where(InboxRow.status == "pending", InboxRow.locked_by.in_(dead))
                .values(locked_by=None, locked_until=None).execution_options(synchronize_session=False))
            count = int(result.rowcount or 0)
        if count:
            log.warning("inbox: %d deliveries of stopped processes are handled now", count)
        return count

    async def purge(self, keep: timedelta = timedelta(days=7), keep_failed: timedelta = timedelta(days=30)) -> int:
        """Forget handled rows older than `keep`, failed ones older than `keep_failed` (time for the
        help desk to re-queue them); the pipeline's own record of the event id stays."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            result: Any = await session.execute(
                delete(InboxRow).where(or_((InboxRow.status == "done") & (InboxRow.done_at < now - keep),
                                           (InboxRow.status == "failed") & (InboxRow.done_at < now - keep_failed))))
            return int(result.rowcount or 0)

    async def counts(self) -> dict[str, int]:
        async with self.sessions() as session:
            rows = (await session.execute(select(InboxRow.status, func.count()).group_by(InboxRow.status))).all()
        return {str(status): int(count) for status, count in rows}
