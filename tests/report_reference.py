"""The report as it was computed before issue 16 (every matching event row loaded and walked in Python).

Kept verbatim as the reference the SQL computation in bot/tickets/report.py is checked against
(tests/unit/test_report_sql.py and tests/integration/test_report_sql_pg.py): the figures must be identical.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from bot.store.tables import EventRow, TicketRow
from bot.tickets.report import (
    AGE_BUCKETS,
    NOT_DEFLECTABLE,
    OPEN,
    REOPEN_WINDOW,
    REPORT_EVENTS,
    TICKET_COLUMNS,
    _aware,
    _ratio,
    channel_of,
    percentile,
)


async def build_report_reference(sessions: async_sessionmaker[AsyncSession], settings: Settings, *, since: timedelta,
                       now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    start = now - since
    async with sessions() as session:
        # Only the columns and event types the figures read (plain rows, not ORM objects): the events
        # query runs on ix_events_report (its type, at prefix). Tickets: those a window figure can count
        # (created since the window opened, less the 24 h a deflection is watched for) and every open one
        # (backlog, load).
        events: list[Any] = list((await session.execute(
            select(EventRow.id, EventRow.at, EventRow.type, EventRow.conversation_key, EventRow.actor,
                   EventRow.data)
            .where(EventRow.type.in_(REPORT_EVENTS), EventRow.at >= start - REOPEN_WINDOW)
            .order_by(EventRow.id))).all())
        tickets: list[Any] = list((await session.execute(
            select(*(getattr(TicketRow, name) for name in TICKET_COLUMNS))
            .where(or_(TicketRow.created_at >= start - REOPEN_WINDOW, TicketRow.status.in_(OPEN))))).all())
    in_window = [e for e in events if (_aware(e.at) or now) >= start]
    created = [t for t in tickets if (_aware(t.created_at) or now) >= start]
    return {
        "window": {"since": start.isoformat(), "until": now.isoformat(),
                   "days": round(since.total_seconds() / 86400, 2)},
        "volume": _volume(in_window, created),
        "deflection": _deflection(in_window, tickets),
        "response_times": _times(created),
        "sla_compliance": _sla(created, settings),
        "satisfaction": _satisfaction(in_window),
        "reopen_rate": _reopens(in_window),
        "backlog": _backlog(tickets, now),
        "technicians": _technicians(in_window, tickets),
    }


def _volume(events: Iterable[EventRow], created: Sequence[TicketRow]) -> dict[str, Any]:
    conversations_by_category: Counter[str] = Counter()
    conversations_by_channel: Counter[str] = Counter()
    for event in events:
        if event.type == "flow_started":
            conversations_by_category[str(event.data.get("flow"))] += 1
            conversations_by_channel[channel_of(event.conversation_key)] += 1
    return {
        "conversations": sum(conversations_by_category.values()),
        "conversations_by_category": dict(conversations_by_category.most_common()),
        "conversations_by_channel": dict(conversations_by_channel.most_common()),
        "tickets": len(created),
        "tickets_by_category": dict(Counter(t.category for t in created).most_common()),
        "tickets_by_channel": dict(Counter(t.channel for t in created).most_common()),
        "tickets_by_priority": dict(sorted(Counter(t.priority for t in created).items())),
    }


def _deflection(events: Sequence[EventRow], tickets: Sequence[TicketRow]) -> dict[str, Any]:
    """Walk each conversation's flows: a flow segment runs from flow_started to flow_ended."""
    segments: dict[str, dict[str, Any]] = {}
    ended: Counter[str] = Counter()
    deflected: list[tuple[str, str, datetime]] = []  # (person, category, at)
    for event in events:
        key = event.conversation_key or ""
        if event.type == "flow_started":
            segments[key] = {"flow": event.data.get("flow"), "ticket": False, "kb_solved": False, "action_ok": False}
            continue
        segment = segments.get(key)
        if segment is None:
            continue
        if event.type == "ticket_created":
            segment["ticket"] = True
        elif event.type == "kb_solved":
            segment["kb_solved"] = True
        elif event.type == "action" and event.data.get("ok"):
            segment["action_ok"] = True
        elif event.type == "flow_ended":
            segments.pop(key, None)
            flow, outcome = str(event.data.get("flow")), str(event.data.get("outcome"))
            if flow in NOT_DEFLECTABLE:
                continue
            ended[outcome] += 1
            confirmed = segment["kb_solved"] or (outcome == "resolved" and segment["action_ok"])
            if outcome in ("resolved", "deflected") and not segment["ticket"] and confirmed:
                deflected.append(((event.actor or "").lower(), flow, _aware(event.at) or datetime.now(UTC)))
    by_person: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for ticket in tickets:
        by_person[(ticket.requester_email, ticket.category)].append(_aware(ticket.created_at) or datetime.now(UTC))
    kept = [d for d in deflected
            if not any(d[2] <= at <= d[2] + REOPEN_WINDOW for at in by_person.get((d[0], d[1]), []))]
    eligible = ended["resolved"] + ended["deflected"] + ended["escalated"]
    return {
        "deflected": len(kept),
        "came_back_within_24h": len(deflected) - len(kept),
        "eligible_conversations": eligible,
        "abandoned": ended["abandoned"],
        "rate": _ratio(len(kept), eligible),
        "by_category": dict(Counter(d[1] for d in kept).most_common()),
    }


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {"count": len(values), "median": percentile(values, 0.5), "p90": percentile(values, 0.9)}


def _times(created: Sequence[TicketRow]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for priority in sorted({t.priority for t in created}):
        mine = [t for t in created if t.priority == priority]
        result[priority] = {
            "first_response_minutes": _stats([t.first_response_minutes for t in mine
                                              if t.first_response_minutes is not None]),
            "resolution_minutes": _stats([t.resolution_minutes for t in mine if t.resolution_minutes is not None]),
        }
    return result


def _sla(created: Sequence[TicketRow], settings: Settings) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for priority in sorted({t.priority for t in created}):
        target = settings.tickets.target(priority)
        mine = [t for t in created if t.priority == priority]
        fr_met = sum(1 for t in mine if t.first_response_minutes is not None
                     and t.first_response_minutes <= target.first_response_minutes)
        fr_missed = sum(1 for t in mine if (t.first_response_minutes is not None and
                                            t.first_response_minutes > target.first_response_minutes)
                        or (t.first_response_minutes is None and t.fr_breached_at is not None))
        res_met = sum(1 for t in mine if t.resolution_minutes is not None
                      and t.resolution_minutes <= target.resolution_minutes and t.res_breached_at is None)
        res_missed = sum(1 for t in mine if t.res_breached_at is not None or (
            t.resolution_minutes is not None and t.resolution_minutes > target.resolution_minutes))
        result[priority] = {
            "first_response": {"met": fr_met, "missed": fr_missed, "compliance": _ratio(fr_met, fr_met + fr_missed)},
            "resolution": {"met": res_met, "missed": res_missed, "compliance": _ratio(res_met, res_met + res_missed)},
        }
    return result


def _satisfaction(events: Sequence[EventRow]) -> dict[str, Any]:
    latest: dict[str, int] = {}
    fixed: dict[str, bool] = {}
    for event in events:
        if event.type == "satisfaction" and isinstance(event.data.get("rating"), int):
            latest[str(event.data.get("id"))] = int(event.data["rating"])
        elif event.type == "ticket_confirmed":
            fixed[str(event.data.get("id"))] = bool(event.data.get("fixed"))
    ratings = list(latest.values())
    return {
        "ratings": len(ratings),
        "average": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "csat": _ratio(sum(1 for r in ratings if r >= 4), len(ratings)),
        "distribution": {str(n): ratings.count(n) for n in range(1, 6)},
        "confirmed_fixed": _ratio(sum(fixed.values()), len(fixed)),
    }


def _reopens(events: Sequence[EventRow]) -> dict[str, Any]:
    resolved = {str(e.data.get("id")) for e in events if e.type == "ticket_resolved"}
    reopened = {str(e.data.get("id")) for e in events if e.type == "ticket_reopened"} & resolved
    return {"resolved": len(resolved), "reopened": len(reopened), "rate": _ratio(len(reopened), len(resolved))}


def _backlog(tickets: Sequence[TicketRow], now: datetime) -> dict[str, Any]:
    buckets: Counter[str] = Counter()
    by_priority: Counter[str] = Counter()
    open_tickets = [t for t in tickets if t.status in OPEN]
    for ticket in open_tickets:
        age = now - (_aware(ticket.created_at) or now)
        label = next((name for limit, name in AGE_BUCKETS if age < limit), "7d+")
        buckets[label] += 1
        by_priority[ticket.priority] += 1
    return {"open": len(open_tickets), "unclaimed": sum(1 for t in open_tickets if t.assignee_email is None),
            "by_age": {name: buckets[name] for name in ("<1d", "1-3d", "3-7d", "7d+")},
            "by_priority": dict(sorted(by_priority.items()))}


def _technicians(events: Sequence[EventRow], tickets: Sequence[TicketRow]) -> dict[str, Any]:
    load: dict[str, Counter[str]] = defaultdict(Counter)
    for ticket in tickets:
        if ticket.status in OPEN and ticket.assignee_email:
            load[ticket.assignee_email]["open_now"] += 1
    for event in events:
        who = str(event.data.get("by") or "")
        if event.type == "ticket_claimed":
            load[who]["claimed"] += 1
        elif event.type == "ticket_assigned":
            load[str(event.data.get("to"))]["assigned_to"] += 1
        elif event.type == "ticket_resolved":
            load[who]["resolved"] += 1
        elif event.type == "ticket_relayed" and event.data.get("direction") == "to_requester":
            load[who]["messages"] += 1
    fields = ("open_now", "claimed", "assigned_to", "resolved", "messages")
    return {email: {f: counts[f] for f in fields} for email, counts in sorted(load.items()) if email}
