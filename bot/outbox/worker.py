"""The outbox worker: delivers messages that must arrive, exactly once as far as the platform allows.

Rows are claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of worker
processes share the work), marked `sending` with the attempt count, and committed *before* the
platform call. After the call the row is marked `sent` with the platform's message id. If the
process dies in between, the lease expires and the next attempt first asks the sender whether the
message already arrived (`find_delivered`, keyed by the row's idempotency key), so a crash neither
loses nor duplicates a message. Failures back off exponentially (or as long as `Retry-After` says).

Symbolic references. A change may need to edit or answer under a message that is itself still in
the outbox (a ticket's queue post: its Slack `ts` is known only once it is delivered). Such rows
carry `payload["update_ref"]` and/or `address["thread_id"]` of the form `outbox:<idempotency key>`.
Before calling the sender, the worker replaces each with the referenced row's `message_ref`. If
that row is not delivered yet the delivery waits (RetryLater, a few seconds); if it failed or was
cancelled, the update is undeliverable. Senders therefore always see real platform ids:
`payload["kind"]` is "post", "update" (edit `payload["update_ref"]` in place) or "delete".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store.tables import OutboxRow

log = logging.getLogger("bot.outbox")

# `outbox:<idempotency key>`: "the platform id of that outbox row's message" (resolved at delivery).
SYMBOLIC = "outbox:"


class RetryLater(Exception):
    """A temporary failure (429, 5xx, network). `retry_after` in seconds when the platform said."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Undeliverable(Exception):
    """A permanent failure (channel not found, person not reachable): never retried."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row to deliver, as plain data."""

    id: int
    idempotency_key: str
    platform: str
    address: Mapping[str, Any]
    payload: Mapping[str, Any]
    attempts: int
    lane: str
    group_key: str | None


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> str | None:
        """Deliver; return the platform's message id (for later edits), or raise RetryLater/Undeliverable."""
        ...

    async def find_delivered(self, delivery: Delivery) -> str | None:
        """After an interrupted attempt: the message id if it already arrived, else None."""
        ...


Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class OutboxWorker:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], senders: Mapping[str, Sender], *,
                 max_attempts: int = 8, lease_seconds: float = 60.0, poll_seconds: float = 0.5,
                 batch: int = 20, clock: Clock = _now, worker_id: str | None = None,
                 lanes: Sequence[str] | None = None) -> None:
        self.sessions = sessions
        self.senders = dict(senders)
        self.max_attempts = max_attempts
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        # Only these pacing lanes (a console process delivers only to its own person).
        self.lanes = list(lanes) if lanes is not None else None
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def claim(self) -> list[Delivery]:
        now = self.clock()
        async with self.sessions() as session, session.begin():
            query = (
                select(OutboxRow)
                .where(OutboxRow.platform.in_(list(self.senders)))
                .where(or_(
                    (OutboxRow.status == "pending") & (OutboxRow.next_attempt_at <= now),
                    (OutboxRow.status == "sending") & (OutboxRow.locked_until <= now),
                ))
                .where(OutboxRow.lane.in_(self.lanes) if self.lanes is not None else OutboxRow.id.is_not(None))
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            )
            rows = list((await session.execute(query)).scalars())
            claimed = []
            for row in rows:
                # A row still `sending` was interrupted mid-delivery: remember to check before resending.
                interrupted = row.status == "sending"
                row.status = "sending"
                row.attempts += 1
                row.locked_by = self.worker_id
                row.locked_until = now + self.lease
                claimed.append(Delivery(row.id, row.idempotency_key, row.platform, row.address,
                                        {**row.payload, "_interrupted": interrupted}, row.attempts,
                                        row.lane, row.group_key))
            return claimed

    async def deliver(self, delivery: Delivery) -> str:
        """Deliver one claimed row and record the result. Returns the new status."""
        sender = self.senders[delivery.platform]
        ref: str | None = None
        status, error, retry_at = "sent", None, None
        try:
            delivery = await self._resolve_refs(delivery)
            if delivery.payload.get("_interrupted"):
                ref = await sender.find_delivered(delivery)
            if ref is None:
                ref = await sender.send(delivery)
        except RetryLater as exc:
            error = str(exc)[:500]
            if delivery.attempts >= self.max_attempts:
                status = "failed"
            else:
                status = "pending"
                delay = exc.retry_after if exc.retry_after is not None else \
                    min(300.0, 2 ** delivery.attempts) * (0.5 + random.random() / 2)
                retry_at = self.clock() + timedelta(seconds=delay)
        except Undeliverable as exc:
            status, error = "failed", str(exc)[:500]
        except Exception as exc:  # a bug in a sender must not kill the worker
            log.exception("outbox delivery %s crashed", delivery.id)
            status = "pending" if delivery.attempts < self.max_attempts else "failed"
            error = f"{type(exc).__name__}: {exc}"[:500]
            retry_at = self.clock() + timedelta(seconds=min(300.0, 2 ** delivery.attempts))
        async with self.sessions() as session, session.begin():
            row = await session.get(OutboxRow, delivery.id, with_for_update=True)
            if row is None or row.status == "cancelled":
                return "cancelled"
            row.status = status
            row.last_error = error
            row.locked_until = None
            row.locked_by = None
            if ref is not None:
                row.message_ref = ref
            if status == "sent":
                row.sent_at = self.clock()
            if retry_at is not None:
                row.next_attempt_at = retry_at
        if status == "failed":
            log.warning("outbox message %s undeliverable: %s", delivery.id, error)
        return status

    async def _resolve_refs(self, delivery: Delivery) -> Delivery:
        """Replace `outbox:<key>` references by the referenced message's platform id."""
        update_ref = delivery.payload.get("update_ref")
        thread_id = delivery.address.get("thread_id")
        symbolic = {str(v)[len(SYMBOLIC):] for v in (update_ref, thread_id)
                    if isinstance(v, str) and v.startswith(SYMBOLIC)}
        if not symbolic:
            return delivery
        async with self.sessions() as session:
            rows = (await session.execute(
                select(OutboxRow.idempotency_key, OutboxRow.status, OutboxRow.message_ref)
                .where(OutboxRow.idempotency_key.in_(symbolic))
            )).all()
        found = {key: (status, ref) for key, status, ref in rows}
        resolved: dict[str, str] = {}
        for key in symbolic:
            status, ref = found.get(key, ("missing", None))
            if status == "sent" and ref:
                resolved[key] = ref
            elif status in ("pending", "sending"):
                raise RetryLater(f"waiting for {key} to be delivered first", retry_after=2.0)
            else:
                raise Undeliverable(f"the message {key} it refers to was never delivered ({status})")
        payload = dict(delivery.payload)
        address = dict(delivery.address)
        if isinstance(update_ref, str) and update_ref.startswith(SYMBOLIC):
            payload["update_ref"] = resolved[update_ref[len(SYMBOLIC):]]
        if isinstance(thread_id, str) and thread_id.startswith(SYMBOLIC):
            address["thread_id"] = resolved[thread_id[len(SYMBOLIC):]]
        return replace(delivery, payload=payload, address=address)

    async def run_once(self) -> int:
        """Claim and deliver one batch; the number of rows handled."""
        deliveries = await self.claim()
        for delivery in deliveries:
            await self.deliver(delivery)
        return len(deliveries)

    async def drain(self, rounds: int = 100) -> int:
        total = 0
        for _ in range(rounds):
            handled = await self.run_once()
            total += handled
            if not handled:
                break
        return total

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("outbox worker round failed")
                handled = 0
            if not handled:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


async def outbox_counts(session: AsyncSession, group_key: str | None = None) -> dict[str, int]:
    """How many rows are in each status (for delivery reports)."""
    from sqlalchemy import func

    query = select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
    if group_key is not None:
        query = query.where(OutboxRow.group_key == group_key)
    return {status: int(count) for status, count in (await session.execute(query)).all()}


def aware(value: datetime | None) -> datetime | None:
    return _aware(value)
