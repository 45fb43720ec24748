"""Prometheus metrics for `GET /metrics` (text exposition format, prometheus-client).

Two kinds:
- process counters, updated as things happen in this replica: turns and their latency, Graph calls
  by status (429s and retries counted as throttling);
- database figures, read at scrape time so every replica reports the same truth for the shared
  state: outbox depth and the age of the oldest pending message, outbox messages by platform and
  status (deliveries), inbox messages by platform and status (acknowledged deliveries: pending, done,
  failed for good) and the age of the oldest pending one, SLA breaches by target.

Scrape every replica for the process counters; the database figures are the same on each (use
`max` or one replica when summing). Labels never carry a person, a message or a secret.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("bot.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)

TURNS = Counter("helpdesk_turns", "Messages handled (turns), by platform and outcome",
                ["platform", "outcome"], registry=REGISTRY)
TURN_SECONDS = Histogram("helpdesk_turn_seconds", "Time to handle a message, from receipt to commit",
                         ["platform"], registry=REGISTRY,
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
GRAPH_CALLS = Counter("helpdesk_graph_calls", "Microsoft Graph HTTP responses, by operation and status",
                      ["operation", "status"], registry=REGISTRY)
GRAPH_THROTTLED = Counter("helpdesk_graph_throttled", "Graph responses asking to retry (429, 503, 504)",
                          ["operation", "status"], registry=REGISTRY)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_turn(platform: str, outcome: str, seconds: float) -> None:
    TURNS.labels(platform, outcome).inc()
    TURN_SECONDS.labels(platform).observe(seconds)


def observe_graph(operation: str, status: int, *, throttled: bool = False) -> None:
    GRAPH_CALLS.labels(operation, str(status)).inc()
    if throttled:
        GRAPH_THROTTLED.labels(operation, str(status)).inc()


def _age(now: datetime, oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())


async def database_registry(sessions: Any, now: datetime | None = None) -> CollectorRegistry:
    """Figures read from the shared database now, in a registry of their own."""
    from sqlalchemy import func, select

    from bot.store.tables import InboxRow, OutboxRow, TicketRow

    now = now or datetime.now(UTC)
    registry = CollectorRegistry(auto_describe=True)
    messages = Gauge("helpdesk_outbox_messages", "Outbox messages by platform and status (pending, sent, "
                     "failed, cancelled...)", ["platform", "status"], registry=registry)
    depth = Gauge("helpdesk_outbox_depth", "Outbox messages waiting to be delivered", registry=registry)
    age = Gauge("helpdesk_outbox_oldest_pending_seconds", "Age of the oldest undelivered outbox message",
                registry=registry)
    inbox = Gauge("helpdesk_inbox_messages", "Acknowledged deliveries by platform and status (pending, "
                  "done, failed: failed for good, see `helpdesk inbox list --failed`)", ["platform", "status"],
                  registry=registry)
    inbox_age = Gauge("helpdesk_inbox_oldest_pending_seconds", "Age of the oldest acknowledged delivery not "
                      "handled yet", registry=registry)
    breaches = Gauge("helpdesk_sla_breaches", "Tickets that breached an SLA target, by target "
                     "(first_response, resolution)", ["target"], registry=registry)
    async with sessions() as session:
        rows = (await session.execute(
            select(OutboxRow.platform, OutboxRow.status, func.count()).group_by(OutboxRow.platform, OutboxRow.status)
        )).all()
        pending = 0
        for platform, status, count in rows:
            messages.labels(platform, status).set(count)
            if status in ("pending", "sending"):
                pending += count
        depth.set(pending)
        oldest = (await session.execute(
            select(func.min(OutboxRow.created_at)).where(OutboxRow.status.in_(("pending", "sending")))
        )).scalar_one_or_none()
        age.set(_age(now, oldest))
        for platform, status, count in (await session.execute(
                select(InboxRow.platform, InboxRow.status, func.count()).group_by(InboxRow.platform, InboxRow.status)
        )).all():
            inbox.labels(platform, status).set(count)
        oldest = (await session.execute(
            select(func.min(InboxRow.created_at)).where(InboxRow.status == "pending"))).scalar_one_or_none()
        inbox_age.set(_age(now, oldest))
        for target, column in (("first_response", TicketRow.fr_breached_at),
                               ("resolution", TicketRow.res_breached_at)):
            count = (await session.execute(select(func.count()).where(column.is_not(None)))).scalar_one()
            breaches.labels(target).set(count)
    return registry


async def exposition(sessions: Any, now: datetime | None = None) -> bytes:
    """The text for GET /metrics: this process's counters, then the database figures (which are
    left out, with a log line, when the database does not answer)."""
    body = generate_latest(REGISTRY)
    try:
        body += generate_latest(await database_registry(sessions, now))
    except Exception as exc:
        log.warning("metrics: database figures unavailable: %s", type(exc).__name__)
    return body
