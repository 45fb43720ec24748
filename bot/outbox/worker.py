"""The outbox worker: delivers messages that must arrive, exactly once as far as the platform allows.

Rows are claimed under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of worker
processes share the work), marked `sending` with the attempt count, and committed *before* the
platform call. After the call the row is marked `sent` with the platform's message id. If the
process dies in between, the lease expires and the next attempt first asks the sender whether the
message already arrived (`find_delivered`, keyed by the row's idempotency key), so a crash neither
loses nor duplicates a message. When that check itself fails (429, 5xx, timeout) the row stays
`sending` (to be checked) and is due again after the back-off: it is never sent blind. Failures
back off exponentially (or as long as `Retry-After` says).

Pacing. Each lane (one channel or one person's DM) has a token bucket (Slack: about one message a
second per channel, short bursts allowed) and each platform a global one; a row is claimed only when
both have a token, so a 10,000-person broadcast goes out at the configured rate instead of bouncing
off 429s. Rows of one lane are never in flight at the same time, so a copy's edit follows its post.
A `RetryLater` with `retry_after` (a 429) pauses the lane; a second lane limited within a second, or
a sender that says `scope="global"`, pauses the whole platform and lowers its rate (raised back
slowly as deliveries succeed). Rate-limit retries do not use up a row's attempts. Buckets live in
the worker process: with N worker processes, give each 1/N of the platform's rate.

Symbolic references. A change may need to edit or answer under a message that is itself still in
the outbox (a ticket's queue post: its Slack `ts` is known only once it is delivered). Such rows
carry `payload["update_ref"]` and/or `address["thread_id"]` of the form `outbox:<idempotency key>`.
Before calling the sender the worker substitutes the referenced row's delivered message id; it waits
while that row is still on its way, and cancels the row when the original was never delivered.
Senders therefore always see real platform ids: `payload["kind"]` is "post", "update" (edit
`payload["update_ref"]` in place) or "delete".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# What a channel's sender sees and raises: the port in bot/core/ports.py (channels import it from
# there, never from here); re-exported for the callers that name them with the worker.
from bot.core.ports import Delivery as Delivery
from bot.core.ports import RetryLater as RetryLater
from bot.core.ports import Sender as Sender
from bot.core.ports import Undeliverable as Undeliverable
from bot.store.db import utcnow
from bot.store.tables import OutboxRow

log = logging.getLogger("bot.outbox")

OUTBOX_REF = "outbox:"
# How long an edit waits before looking again for its original's message id.
REF_WAIT_SECONDS = 1.0



def _round_failed(exc: Exception) -> None:
    """A database that cannot be reached is one line per poll (the worker keeps polling); anything
    else keeps its traceback."""
    from bot.store.db import database_unavailable

    why = database_unavailable(exc)
    if why is not None:
        log.warning("outbox worker: database unavailable (%s); trying again", why)
    else:
        log.exception("outbox worker round failed")

@dataclass(slots=True)
class _Outcome:
    delivery: Delivery
    status: str
    error: str | None
    retry_at: datetime | None
    ref: str | None
    refund: bool
    # The "was it delivered?" check itself failed: the row stays `sending` (to be checked), due
    # again at `retry_at`, so the next attempt checks before it could send a second copy.
    recheck: bool = False


Clock = Callable[[], datetime]


_now = utcnow  # the one real clock; tests inject theirs


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# ----- pacing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pacing:
    """Rates per second; a platform missing from a mapping (or a rate of 0) is not paced."""

    lane_rate: Mapping[str, float] = field(default_factory=dict)
    lane_burst: float = 3.0
    global_rate: Mapping[str, float] = field(default_factory=dict)
    global_burst: float = 10.0


def pacing_from_settings(cfg: Any) -> Pacing:
    """`Pacing` from the `outbox:` settings section."""
    return Pacing(lane_rate=dict(cfg.lane_rate_per_second), lane_burst=cfg.lane_burst,
                  global_rate=dict(cfg.global_rate_per_second), global_burst=cfg.global_burst)


class TokenBucket:
    """`rate` tokens a second up to `burst`; `pause` empties it until a moment (a 429's Retry-After)."""

    __slots__ = ("burst", "paused_until", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.updated = now
        self.paused_until = 0.0

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def ready(self, now: float) -> bool:
        if now < self.paused_until:
            return False
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def wait(self, now: float) -> float:
        """Seconds until a token is available."""
        if now < self.paused_until:
            return self.paused_until - now
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        self.tokens = min(self.tokens, 0.0)
        self.updated = max(self.updated, until)

    def full(self, now: float) -> bool:
        self._refill(now)
        return now >= self.paused_until and self.tokens >= self.burst


class Pacer:
    """The worker's buckets: one per lane (created on demand, forgotten when full) and one per platform."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.lanes: dict[str, TokenBucket] = {}
        self.platforms: dict[str, TokenBucket] = {}
        self.configured: dict[str, float] = {p: r for p, r in pacing.global_rate.items() if r > 0}
        self._limited: dict[str, tuple[str, float]] = {}  # platform -> (lane, when) of the last 429

    def _lane(self, platform: str, lane: str, now: float) -> TokenBucket | None:
        rate = self.pacing.lane_rate.get(platform, 0.0)
        if rate <= 0:
            return None
        bucket = self.lanes.get(lane)
        if bucket is None:
            bucket = self.lanes[lane] = TokenBucket(rate, self.pacing.lane_burst, now)
        return bucket

    def _platform(self, platform: str, now: float) -> TokenBucket | None:
        rate = self.configured.get(platform)
        if rate is None:
            return None
        bucket = self.platforms.get(platform)
        if bucket is None:
            bucket = self.platforms[platform] = TokenBucket(rate, self.pacing.global_burst, now)
        return bucket

    def platform_ready(self, platform: str, now: float) -> bool:
        bucket = self._platform(platform, now)
        return bucket is None or bucket.ready(now)

    def lane_ready(self, platform: str, lane: str, now: float) -> bool:
        bucket = self._lane(platform, lane, now)
        return bucket is None or bucket.ready(now)

    def take(self, platform: str, lane: str, now: float) -> None:
        for bucket in (self._lane(platform, lane, now), self._platform(platform, now)):
            if bucket is not None:
                bucket.take(now)

    def blocked_lanes(self, now: float, limit: int = 500) -> list[str]:
        """Lanes that cannot send now (to leave out of the claim query, so they do not crowd it)."""
        blocked = []
        for lane, bucket in list(self.lanes.items()):
            if bucket.full(now):
                del self.lanes[lane]  # nothing to remember; keeps memory flat after a broadcast
            elif not bucket.ready(now):
                blocked.append(lane)
                if len(blocked) >= limit:
                    break
        return blocked

    def wait(self, now: float) -> float:
        """Seconds until some platform bucket has a token (0 when one has)."""
        waits = [b.wait(now) for b in self.platforms.values()]
        return min(waits) if waits and all(w > 0 for w in waits) else 0.0

    def rate_limited(self, platform: str, lane: str, retry_after: float, scope: str | None, now: float) -> None:
        until = now + max(0.0, retry_after)
        bucket = self._lane(platform, lane, now) or self.lanes.setdefault(
            lane, TokenBucket(1.0, self.pacing.lane_burst, now))
        bucket.pause(until)
        previous = self._limited.get(platform)
        self._limited[platform] = (lane, now)
        widespread = previous is not None and previous[0] != lane and now - previous[1] <= 1.0
        if scope == "global" or (scope is None and widespread):
            rate = self.configured.get(platform)
            if rate is not None:
                global_bucket = self._platform(platform, now)
                assert global_bucket is not None
                # Multiplicative decrease, once per limit episode: the other deliveries in flight
                # when the platform said 429 answer 429 too, and lowering the rate for each of
                # them (0.8^concurrency) would leave a broadcast crawling far below the allowed
                # rate. `succeeded` climbs back to the configured rate.
                if now >= global_bucket.paused_until:
                    global_bucket.rate = max(1.0, global_bucket.rate * 0.8)
                global_bucket.pause(until)
            else:
                self.platforms[platform] = bucket = TokenBucket(1e9, 1.0, now)
                bucket.pause(until)

    def succeeded(self, platform: str, now: float) -> None:
        bucket = self.platforms.get(platform)
        configured = self.configured.get(platform)
        if bucket is not None and configured is not None and bucket.rate < configured:
            # Slowly (2,000 deliveries from 0 to the configured rate; 400 back from one 0.8x
            # decrease): a rate set above the real limit then settles just under it, instead of
            # climbing straight back into the next 429 and its whole-platform Retry-After pause.
            bucket.rate = min(configured, bucket.rate + configured * 0.0005)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----- the worker -------------------------------------------------------------------------------


class OutboxWorker:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], senders: Mapping[str, Sender], *,
                 max_attempts: int = 8, lease_seconds: float = 60.0, poll_seconds: float = 0.5,
                 batch: int = 20, clock: Clock = _now, worker_id: str | None = None,
                 lanes: Sequence[str] | None = None, pacing: Pacing | None = None,
                 concurrency: int = 16) -> None:
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
        self.pacer = Pacer(pacing) if pacing is not None else None
        self.concurrency = max(1, concurrency)
        self._inflight_lanes: set[str] = set()
        # The last claim left due rows behind because of pacing: look again soon, not at the next poll.
        self._held_back = False
        self._done: list[_Outcome] = []
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def _t(self, when: datetime | None = None) -> float:
        return (when or self.clock()).timestamp()

    async def claim(self, limit: int | None = None) -> list[Delivery]:
        """Claim due rows whose lane and platform may send now (at most `limit`, default `batch`)."""
        limit = self.batch if limit is None else limit
        self._held_back = False
        if limit <= 0:
            return []
        now = self.clock()
        t = now.timestamp()
        platforms = list(self.senders)
        pacer = self.pacer
        if pacer is not None:
            platforms = [p for p in platforms if pacer.platform_ready(p, t)]
            if not platforms:
                self._held_back = True
                return []
        excluded = set(self._inflight_lanes)
        if pacer is not None:
            excluded.update(pacer.blocked_lanes(t))
        # Look past rows that cannot go yet, but not so far that a claim reads the whole queue.
        window = limit if pacer is None and not excluded else limit * 4
        async with self.sessions() as session, session.begin():
            # Light columns first: most of the window may be left behind, so its payloads are not read.
            query = (
                select(OutboxRow.id, OutboxRow.platform, OutboxRow.lane, OutboxRow.status)
                .where(OutboxRow.platform.in_(platforms))
                .where(or_(
                    (OutboxRow.status == "pending") & (OutboxRow.next_attempt_at <= now),
                    (OutboxRow.status == "sending") & (OutboxRow.locked_until <= now),
                ))
                .where(OutboxRow.lane.in_(self.lanes) if self.lanes is not None else OutboxRow.id.is_not(None))
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                .limit(window)
                .with_for_update(skip_locked=True)
            )
            if excluded:
                query = query.where(OutboxRow.lane.not_in(sorted(excluded)[:900]))
            chosen: dict[int, bool] = {}  # id -> interrupted
            lanes_taken: set[str] = set()
            for row in (await session.execute(query)).all():
                if len(chosen) >= limit:
                    break
                if row.lane in excluded or row.lane in lanes_taken:
                    self._held_back = True
                    continue
                if pacer is not None and not (pacer.platform_ready(row.platform, t)
                                              and pacer.lane_ready(row.platform, row.lane, t)):
                    self._held_back = True
                    continue
                if pacer is not None:
                    pacer.take(row.platform, row.lane, t)
                # One row per lane per claim: a lane's messages go out in order.
                lanes_taken.add(row.lane)
                # A row still `sending` was interrupted mid-delivery: remember to check before resending.
                chosen[row.id] = row.status == "sending"
            if not chosen:
                return []
            await session.execute(
                update(OutboxRow).where(OutboxRow.id.in_(list(chosen)))
                .values(status="sending", attempts=OutboxRow.attempts + 1, locked_by=self.worker_id,
                        locked_until=now + self.lease).execution_options(synchronize_session=False))
            rows = (await session.execute(
                select(OutboxRow.id, OutboxRow.idempotency_key, OutboxRow.platform, OutboxRow.address,
                       OutboxRow.payload, OutboxRow.attempts, OutboxRow.lane, OutboxRow.group_key)
                .where(OutboxRow.id.in_(list(chosen))).order_by(OutboxRow.next_attempt_at, OutboxRow.id))).all()
            return [Delivery(r.id, r.idempotency_key, r.platform, r.address,
                             {**r.payload, "_interrupted": chosen[r.id]}, r.attempts, r.lane, r.group_key)
                    for r in rows]

    async def _resolve_ref(self, delivery: Delivery) -> tuple[Delivery | None, str | None]:
        """Swap `outbox:<key>` references (an edit's `update_ref`, a reply's `address.thread_id`)
        for the referenced row's delivered message id.
        Returns (delivery to send, None) or (None, "wait" | "orphaned")."""
        update_ref = delivery.payload.get("update_ref")
        thread_id = delivery.address.get("thread_id")
        keys = {v[len(OUTBOX_REF):] for v in (update_ref, thread_id)
                if isinstance(v, str) and v.startswith(OUTBOX_REF)}
        if not keys:
            return delivery, None
        async with self.sessions() as session:
            rows = (await session.execute(
                select(OutboxRow.idempotency_key, OutboxRow.status, OutboxRow.message_ref)
                .where(OutboxRow.idempotency_key.in_(keys))
            )).all()
        found = {key: (status, ref) for key, status, ref in rows}
        resolved: dict[str, str] = {}
        for key in keys:
            status, ref = found.get(key, ("missing", None))
            if ref:
                resolved[key] = ref
            elif status in ("pending", "sending"):
                return None, "wait"
            else:
                return None, "orphaned"
        payload = dict(delivery.payload)
        address = dict(delivery.address)
        if isinstance(update_ref, str) and update_ref.startswith(OUTBOX_REF):
            payload["update_ref"] = resolved[update_ref[len(OUTBOX_REF):]]
        if isinstance(thread_id, str) and thread_id.startswith(OUTBOX_REF):
            address["thread_id"] = resolved[thread_id[len(OUTBOX_REF):]]
        return Delivery(delivery.id, delivery.idempotency_key, delivery.platform, address, payload,
                        delivery.attempts, delivery.lane, delivery.group_key), None

    async def deliver(self, delivery: Delivery) -> str:
        """Deliver one claimed row and record the result. Returns the new status."""
        return (await self._record([await self._attempt(delivery)]))[0]

    async def _attempt(self, delivery: Delivery) -> _Outcome:
        """The platform call for one claimed row (nothing written yet)."""
        sender = self.senders[delivery.platform]
        ref: str | None = None
        status, error, retry_at = "sent", None, None
        refund = False  # a rate-limit wait does not use up an attempt
        checking = False
        resolved, problem = await self._resolve_ref(delivery)
        if problem == "wait":
            status, error, refund = "pending", "waiting for the original message to be delivered", True
            retry_at = self.clock() + timedelta(seconds=REF_WAIT_SECONDS)
        elif problem == "orphaned":
            status, error = "cancelled", "the original message was never delivered"
        else:
            assert resolved is not None
            try:
                if resolved.payload.get("_interrupted"):
                    checking = True
                    ref = await sender.find_delivered(resolved)
                    checking = False
                if ref is None:
                    ref = await sender.send(resolved)
            except RetryLater as exc:
                error = str(exc)[:500]
                if exc.retry_after is not None:
                    refund = True
                    if self.pacer is not None:
                        self.pacer.rate_limited(delivery.platform, delivery.lane, exc.retry_after, exc.scope,
                                                self._t())
                if delivery.attempts >= self.max_attempts and not refund:
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
            if status == "sent" and self.pacer is not None:
                self.pacer.succeeded(delivery.platform, self._t())
        if checking and status == "pending":
            log.warning("outbox delivery %s: could not check whether it arrived (%s); checking again later",
                        delivery.id, error)
            return _Outcome(delivery, "sending", error, retry_at, ref, refund, recheck=True)
        return _Outcome(delivery, status, error, retry_at, ref, refund)

    async def _record(self, outcomes: Sequence[_Outcome]) -> list[str]:
        """Write the results of several attempts in one transaction (SQLite has one writer at a
        time: one commit per batch, not per message). A crash before this commit is covered by
        `find_delivered` on the next attempt."""
        if not outcomes:
            return []
        now = self.clock()
        statuses: list[str] = []
        async with self.sessions() as session, session.begin():
            ids = [o.delivery.id for o in outcomes]
            current = dict((await session.execute(
                select(OutboxRow.id, OutboxRow.status).where(OutboxRow.id.in_(ids)).with_for_update())).all())
            changes: list[dict[str, Any]] = []
            for outcome in outcomes:
                delivery = outcome.delivery
                status = current.get(delivery.id)
                if status is None or status == "cancelled":
                    # Cancelled while on its way: keep the message id, so it can still be deleted.
                    if status is not None and outcome.ref is not None:
                        changes.append({"id": delivery.id, "message_ref": outcome.ref, "sent_at": now})
                    statuses.append("cancelled")
                    continue
                change: dict[str, Any] = {"id": delivery.id, "status": outcome.status, "last_error": outcome.error,
                                          "locked_until": None, "locked_by": None}
                if outcome.refund:
                    change["attempts"] = max(0, delivery.attempts - 1)
                if outcome.ref is not None:
                    change["message_ref"] = outcome.ref
                if outcome.status == "sent":
                    change["sent_at"] = now
                if outcome.retry_at is not None:
                    change["next_attempt_at"] = outcome.retry_at
                if outcome.recheck:
                    # Claimed again as an interrupted row (status `sending`, lease run out) at retry_at.
                    change["locked_until"] = outcome.retry_at or now
                changes.append(change)
                statuses.append(outcome.status)
                if outcome.status == "failed":
                    log.warning("outbox message %s undeliverable: %s", delivery.id, outcome.error)
            # Rows with the same set of columns go in one executemany.
            by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for change in changes:
                by_shape.setdefault(tuple(sorted(change)), []).append(change)
            for group in by_shape.values():
                await session.execute(update(OutboxRow), group)
        return statuses

    async def _deliver_lane(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            await self.deliver(delivery)

    async def run_once(self) -> int:
        """Claim and deliver one batch (lanes side by side, each lane in order); the rows handled."""
        deliveries = await self.claim()
        by_lane: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            by_lane.setdefault(delivery.lane, []).append(delivery)
        if len(by_lane) <= 1:
            for group in by_lane.values():
                await self._deliver_lane(group)
        else:
            await asyncio.gather(*(self._deliver_lane(group) for group in by_lane.values()))
        return len(deliveries)

    async def drain(self, rounds: int = 100) -> int:
        total = 0
        for _ in range(rounds):
            handled = await self.run_once()
            total += handled
            if not handled:
                break
        return total

    async def recover_orphans(self) -> int:
        """Rows left `sending` by a process of this host that no longer exists (killed, crashed):
        due again now instead of when their lease runs out. They stay `sending`, so the next attempt
        asks the platform first whether the message already arrived."""
        host = socket.gethostname()
        now = self.clock()
        async with self.sessions() as session, session.begin():
            rows = (await session.execute(
                select(OutboxRow.locked_by).where(OutboxRow.status == "sending",
                                                  OutboxRow.locked_by.like(f"{host}:%")).distinct()
            )).scalars().all()
            dead = []
            for owner in rows:
                pid = (owner or "").rsplit(":", 1)[-1]
                if owner != self.worker_id and pid.isdigit() and not _pid_alive(int(pid)):
                    dead.append(owner)
            if not dead:
                return 0
            result: Any = await session.execute(
                update(OutboxRow).where(OutboxRow.status == "sending", OutboxRow.locked_by.in_(dead))
                .values(locked_until=now).execution_options(synchronize_session=False))
            count = int(result.rowcount or 0)
        if count:
            log.warning("outbox: %d deliveries of stopped processes are checked and resumed now", count)
        return count

    async def _run_one(self, delivery: Delivery) -> None:
        try:
            outcome = await self._attempt(delivery)
        except Exception:  # _attempt catches sender errors; this is a bug in the worker itself
            log.exception("outbox delivery %s failed", delivery.id)
            self._inflight_lanes.discard(delivery.lane)
        else:
            self._done.append(outcome)
        finally:
            self._wake.set()

    async def _flush(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        try:
            await self._record(done)
        except Exception:
            log.exception("outbox results could not be recorded; the leases will expire and be checked")
        finally:
            for outcome in done:
                self._inflight_lanes.discard(outcome.delivery.lane)

    async def run_forever(self) -> None:
        """Keep up to `concurrency` deliveries in flight (one per lane), claiming as slots and
        tokens free up, and recording results in batches."""
        with contextlib.suppress(Exception):
            await self.recover_orphans()
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                await self._flush()
                free = self.concurrency - len(inflight)
                claimed: list[Delivery] = []
                if free > 0:
                    try:
                        claimed = await self.claim(min(free, self.batch))
                    except Exception as exc:
                        _round_failed(exc)
                for delivery in claimed:
                    self._inflight_lanes.add(delivery.lane)
                    task = asyncio.create_task(self._run_one(delivery))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                if claimed and len(inflight) < self.concurrency and not self._held_back:
                    await asyncio.sleep(0)  # claim more at once; tokens may still allow it
                    continue
                timeout = self.poll_seconds
                if free > 0 and (self._held_back or len(claimed) >= self.batch):
                    wait = self.pacer.wait(self._t()) if self.pacer is not None else 0.0
                    timeout = min(timeout, wait if wait > 0 else 0.02)
                if self._done:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        finally:
            for task in list(inflight):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._flush()

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
