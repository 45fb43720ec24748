"""`helpdesk report`: the figures a help desk lead needs, from the events and tickets tables.

Every figure is defined in docs/metrics.md; the names here match the names there.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import String, and_, case, cast, func, literal, literal_column, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.settings import Settings
from bot.store.tables import EventRow, TicketRow

# Flows that are not IT problems a ticket could have solved: they count in volume, not in deflection.
NOT_DEFLECTABLE = frozenset({"smalltalk", "out_of_scope", "human", "ticket_status", "outage_check", "fallback"})
OPEN = ("new", "claimed", "waiting_on_requester", "reopened")
REOPEN_WINDOW = timedelta(hours=24)
# The event types and ticket columns the figures below read (build_report loads nothing else).
REPORT_EVENTS = ("flow_started", "flow_ended", "ticket_created", "kb_solved", "action", "satisfaction",
                 "ticket_confirmed", "ticket_resolved", "ticket_reopened", "ticket_claimed", "ticket_assigned",
                 "ticket_relayed")
TICKET_COLUMNS = ("requester_email", "category", "channel", "priority", "status", "assignee_email", "created_at",
                  "first_response_minutes", "resolution_minutes", "fr_breached_at", "res_breached_at")
AGE_BUCKETS = ((timedelta(days=1), "<1d"), (timedelta(days=3), "1-3d"), (timedelta(days=7), "3-7d"))


class ReportError(Exception):
    pass


class _Ticket(NamedTuple):
    """A ticket as the figures read it: TICKET_COLUMNS, with whether each SLA breach alert fired."""

    requester_email: str
    category: str
    channel: str
    priority: str
    status: str
    assignee_email: str | None
    created_at: datetime
    first_response_minutes: int | None
    resolution_minutes: int | None
    fr_breached: bool
    res_breached: bool


def parse_since(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", text or "")
    if not match:
        raise ReportError(f"--since expects a window like 30d, 12h or 2w, got {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(hours=amount) if unit == "h" else timedelta(days=amount * (7 if unit == "w" else 1))


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def channel_of(conversation_key: str | None) -> str:
    return (conversation_key or "cli").split(":", 1)[0] or "unknown"


async def build_report(sessions: async_sessionmaker[AsyncSession], settings: Settings, *, since: timedelta,
                       now: datetime | None = None) -> dict[str, Any]:
    """Event figures are aggregated by the database (GROUP BY, window functions over ix_events_report,
    which holds every event column they read), so only a few hundred summary rows reach Python; tickets
    (a window's worth plus the open ones, a few thousand rows) are still read and counted here. The figures
    are those of docs/metrics.md, identical to the row-by-row computation kept as tests/report_reference.py
    (tests/unit/test_report_sql.py)."""
    now = now or datetime.now(UTC)
    start = now - since
    async with sessions() as session:
        sql = _EventSql(session.get_bind().dialect.name, start)
        conversations = (await session.execute(sql.conversations())).all()
        ended = (await session.execute(sql.segments())).all()
        ratings = (await session.execute(sql.latest_ratings())).all()
        confirmed = (await session.execute(sql.confirmations())).one()
        reopens = (await session.execute(sql.reopens())).one()
        work = (await session.execute(sql.technician_events())).all()
        # Plain tuples (attribute access on a Row costs more than the counting); the breach times are only
        # ever tested for presence, so the database says whether there is one instead of a time to parse.
        tickets = [_Ticket._make(row) for row in await session.execute(
            select(*(getattr(TicketRow, name) for name in TICKET_COLUMNS[:-2]),
                   TicketRow.fr_breached_at.is_not(None), TicketRow.res_breached_at.is_not(None))
            .where(or_(TicketRow.created_at >= start - REOPEN_WINDOW, TicketRow.status.in_(OPEN))))]
    created = [t for t in tickets if (_aware(t.created_at) or now) >= start]
    return {
        "window": {"since": start.isoformat(), "until": now.isoformat(),
                   "days": round(since.total_seconds() / 86400, 2)},
        "volume": _volume(conversations, created),
        "deflection": _deflection(ended, tickets),
        "response_times": _times(created),
        "sla_compliance": _sla(created, settings),
        "satisfaction": _satisfaction(ratings, confirmed),
        "reopen_rate": _reopens(reopens),
        "backlog": _backlog(tickets, now),
        "technicians": _technicians(work, tickets),
    }


class _EventSql:
    """The event queries of build_report, for SQLite and PostgreSQL. Each reads one or a few event types
    from `at >= start`, and only columns of ix_events_report (type, at, conversation_key, actor, id and
    the report fields derived from `data` when the event was recorded: bot.store.tables.report_fields),
    so the database answers from that index alone and never reads the JSON."""

    def __init__(self, dialect: str, start: datetime) -> None:
        self.pg = dialect == "postgresql"
        self.start = start

    def _in_window(self, *types: str) -> Any:
        return and_(EventRow.type.in_(types), EventRow.at >= self.start)

    def channel(self) -> Any:
        """channel_of(conversation_key): the platform prefix; 'cli' without a key, 'unknown' for ':...'."""
        key = EventRow.conversation_key
        colon = func.strpos(key, ":") if self.pg else func.instr(key, ":")
        return case((or_(key.is_(None), key == ""), literal("cli")), (colon == 0, key),
                    (colon == 1, literal("unknown")), else_=func.substr(key, 1, colon - 1))

    def conversations(self) -> Any:
        """flow_started counts by (flow, channel), with the first event id so ties keep first-seen order."""
        flow, channel = EventRow.report_key.label("flow"), self.channel().label("channel")
        inner = select(flow, channel, EventRow.id).where(self._in_window("flow_started")).subquery()
        return (select(inner.c.flow, inner.c.channel, func.count().label("n"), func.min(inner.c.id).label("first"))
                .group_by(inner.c.flow, inner.c.channel))

    def segments(self) -> Any:
        """Every flow segment closed by a flow_ended in the window, in id order, with what happened inside it.

        A segment runs from a conversation's flow_started to its next flow_ended; a second flow_started
        restarts it; events outside an open segment belong to none. So with the flow_started/flow_ended
        events of one conversation in id order, a flow_ended closes a segment when the one before it is a
        flow_started (the segment's start), and an event is inside the segment when it comes between the
        two (same conversation, id in between). One window over the boundary events only (lag: no frame
        to evaluate), then the events that mark a segment are joined to the segments they fall in."""
        key = func.coalesce(EventRow.conversation_key, literal_column("''"))  # a literal: bound parameters
        # in PARTITION BY make SQLite treat identical windows as different ones (one sort each).
        window: dict[str, Any] = {"partition_by": key, "order_by": EventRow.id}
        boundaries = select(
            EventRow.id, EventRow.type, EventRow.at, EventRow.actor, key.label("conversation"),
            EventRow.report_key.label("flow"), EventRow.report_label.label("outcome"),
            func.lag(EventRow.type).over(**window).label("previous_type"),
            func.lag(EventRow.id).over(**window).label("previous_id"),
        ).where(self._in_window("flow_started", "flow_ended")).subquery()
        closed = select(boundaries.c.id, boundaries.c.at, boundaries.c.actor, boundaries.c.conversation,
                        boundaries.c.flow, boundaries.c.outcome, boundaries.c.previous_id.label("start")).where(
            boundaries.c.type == "flow_ended", boundaries.c.previous_type == "flow_started").cte("closed")
        inside = aliased(EventRow)

        def has(condition: Any) -> Any:
            return case((condition, 1), else_=0)

        def nothing(type_: Any) -> Any:
            return cast(null(), type_)

        # The segments, and one row per event inside one; grouped by segment (no join back, no scan).
        rows = union_all(
            select(closed.c.id.label("segment"), closed.c.flow, closed.c.outcome, closed.c.actor, closed.c.at,
                   literal_column("0").label("ticket"), literal_column("0").label("kb_solved"),
                   literal_column("0").label("action_ok")),
            select(closed.c.id, nothing(String), nothing(String), nothing(String), nothing(EventRow.at.type),
                   has(inside.type == "ticket_created"), has(inside.type == "kb_solved"),
                   has(and_(inside.type == "action", inside.report_value == 1)))
            .join_from(inside, closed, and_(func.coalesce(inside.conversation_key, literal_column("''"))
                                            == closed.c.conversation,
                                            inside.id > closed.c.start, inside.id < closed.c.id))
            .where(inside.type.in_(("ticket_created", "kb_solved", "action")), inside.at >= self.start),
        ).subquery()
        return (select(func.max(rows.c.flow).label("flow"), func.max(rows.c.outcome).label("outcome"),
                       func.max(rows.c.actor).label("actor"), func.max(rows.c.at).label("at"),
                       func.max(rows.c.ticket).label("ticket"), func.max(rows.c.kb_solved).label("kb_solved"),
                       func.max(rows.c.action_ok).label("action_ok"))
                .group_by(rows.c.segment).order_by(rows.c.segment))

    def _latest(self, type_: str, *where: Any) -> Any:
        """Per ticket id (report_key), the report_value of the last `type_` event in the window."""
        ranked = select(
            EventRow.report_value.label("value"),
            func.row_number().over(partition_by=EventRow.report_key, order_by=EventRow.id.desc()).label("rank"),
        ).where(self._in_window(type_), *where).subquery()
        return ranked, ranked.c.rank == 1

    def latest_ratings(self) -> Any:
        ranked, last = self._latest("satisfaction", EventRow.report_value.is_not(None))
        return select(ranked.c.value, func.count().label("n")).where(last).group_by(ranked.c.value)

    def confirmations(self) -> Any:
        ranked, last = self._latest("ticket_confirmed")
        return select(func.count().label("answered"), func.coalesce(func.sum(ranked.c.value), 0).label("fixed")
                      ).where(last)

    def reopens(self) -> Any:
        ticket = EventRow.report_key
        resolved = select(ticket).where(self._in_window("ticket_resolved"))
        reopened = select(ticket.label("id")).where(self._in_window("ticket_reopened"), ticket.in_(resolved)
                                                    ).subquery()
        return select(select(func.count(func.distinct(ticket))).where(self._in_window("ticket_resolved"))
                      .scalar_subquery().label("resolved"),
                      select(func.count(func.distinct(reopened.c.id))).scalar_subquery().label("reopened"))

    def technician_events(self) -> Any:
        """(field, email, count): who claimed, was assigned, resolved and messaged requesters (report_label;
        a message relayed to the technician has none)."""
        field = case((EventRow.type == "ticket_claimed", literal("claimed")),
                     (EventRow.type == "ticket_assigned", literal("assigned_to")),
                     (EventRow.type == "ticket_resolved", literal("resolved")), else_=literal("messages"))
        inner = select(field.label("field"), EventRow.report_label.label("who")).where(
            self._in_window("ticket_claimed", "ticket_assigned", "ticket_resolved", "ticket_relayed"),
            EventRow.report_label.is_not(None)).subquery()
        return select(inner.c.field, inner.c.who, func.count().label("n")).group_by(inner.c.field, inner.c.who)


def _first_seen_order(counts: Mapping[str, int], first: Mapping[str, int]) -> dict[str, int]:
    """Counter.most_common() order: by count, ties in the order first seen (event id)."""
    return {name: counts[name] for name in sorted(counts, key=lambda name: (-counts[name], first[name]))}


def _volume(conversations: Sequence[Any], created: Sequence[Any]) -> dict[str, Any]:
    by_category: Counter[str] = Counter()
    by_channel: Counter[str] = Counter()
    first_category: dict[str, int] = {}
    first_channel: dict[str, int] = {}
    for row in conversations:
        by_category[row.flow] += row.n
        by_channel[row.channel] += row.n
        first_category[row.flow] = min(first_category.get(row.flow, row.first), row.first)
        first_channel[row.channel] = min(first_channel.get(row.channel, row.first), row.first)
    return {
        "conversations": sum(by_category.values()),
        "conversations_by_category": _first_seen_order(by_category, first_category),
        "conversations_by_channel": _first_seen_order(by_channel, first_channel),
        "tickets": len(created),
        "tickets_by_category": dict(Counter(t.category for t in created).most_common()),
        "tickets_by_channel": dict(Counter(t.channel for t in created).most_common()),
        "tickets_by_priority": dict(sorted(Counter(t.priority for t in created).items())),
    }


def _deflection(ended: Sequence[Any], tickets: Sequence[Any]) -> dict[str, Any]:
    """`ended`: the closed segments in id order (_EventSql.segments)."""
    outcomes: Counter[str] = Counter()
    deflected: list[tuple[str, str, datetime]] = []  # (person, category, at)
    # `or datetime.now(UTC)` below only fills a missing timestamp (rows always carry one); no
    # window is measured from it against the report's `now`.
    for segment in ended:
        flow, outcome = segment.flow, segment.outcome
        if flow in NOT_DEFLECTABLE:
            continue
        outcomes[outcome] += 1
        confirmed = segment.kb_solved or (outcome == "resolved" and segment.action_ok)
        if outcome in ("resolved", "deflected") and not segment.ticket and confirmed:
            deflected.append(((segment.actor or "").lower(), flow, _aware(segment.at) or datetime.now(UTC)))
    by_person: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for ticket in tickets:
        by_person[(ticket.requester_email, ticket.category)].append(_aware(ticket.created_at) or datetime.now(UTC))
    kept = [d for d in deflected
            if not any(d[2] <= at <= d[2] + REOPEN_WINDOW for at in by_person.get((d[0], d[1]), []))]
    eligible = outcomes["resolved"] + outcomes["deflected"] + outcomes["escalated"]
    return {
        "deflected": len(kept),
        "came_back_within_24h": len(deflected) - len(kept),
        "eligible_conversations": eligible,
        "abandoned": outcomes["abandoned"],
        "rate": _ratio(len(kept), eligible),
        "by_category": dict(Counter(d[1] for d in kept).most_common()),
    }


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {"count": len(values), "median": percentile(values, 0.5), "p90": percentile(values, 0.9)}


def _by_priority(created: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """The tickets of each priority (in their order), by priority."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for ticket in created:
        groups[ticket.priority].append(ticket)
    return sorted(groups.items())


def _times(created: Sequence[Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for priority, mine in _by_priority(created):
        result[priority] = {
            "first_response_minutes": _stats([t.first_response_minutes for t in mine
                                              if t.first_response_minutes is not None]),
            "resolution_minutes": _stats([t.resolution_minutes for t in mine if t.resolution_minutes is not None]),
        }
    return result


def _sla(created: Sequence[Any], settings: Settings) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for priority, mine in _by_priority(created):
        target = settings.tickets.target(priority)
        fr_met = sum(1 for t in mine if t.first_response_minutes is not None
                     and t.first_response_minutes <= target.first_response_minutes)
        fr_missed = sum(1 for t in mine if (t.first_response_minutes is not None and
                                            t.first_response_minutes > target.first_response_minutes)
                        or (t.first_response_minutes is None and t.fr_breached))
        res_met = sum(1 for t in mine if t.resolution_minutes is not None
                      and t.resolution_minutes <= target.resolution_minutes and not t.res_breached)
        res_missed = sum(1 for t in mine if t.res_breached or (
            t.resolution_minutes is not None and t.resolution_minutes > target.resolution_minutes))
        result[priority] = {
            "first_response": {"met": fr_met, "missed": fr_missed, "compliance": _ratio(fr_met, fr_met + fr_missed)},
            "resolution": {"met": res_met, "missed": res_missed, "compliance": _ratio(res_met, res_met + res_missed)},
        }
    return result


def _satisfaction(ratings: Sequence[Any], confirmed: Any) -> dict[str, Any]:
    """`ratings`: (latest rating per ticket, how many tickets); `confirmed`: (answered, said yes)."""
    counts = {int(row.value): int(row.n) for row in ratings}
    total = sum(counts.values())
    return {
        "ratings": total,
        "average": round(sum(r * n for r, n in counts.items()) / total, 2) if total else None,
        "csat": _ratio(sum(n for r, n in counts.items() if r >= 4), total),
        "distribution": {str(n): counts.get(n, 0) for n in range(1, 6)},
        "confirmed_fixed": _ratio(int(confirmed.fixed), int(confirmed.answered)),
    }


def _reopens(counts: Any) -> dict[str, Any]:
    resolved, reopened = int(counts.resolved), int(counts.reopened)
    return {"resolved": resolved, "reopened": reopened, "rate": _ratio(reopened, resolved)}


def _backlog(tickets: Sequence[Any], now: datetime) -> dict[str, Any]:
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


def _technicians(work: Sequence[Any], tickets: Sequence[Any]) -> dict[str, Any]:
    load: dict[str, Counter[str]] = defaultdict(Counter)
    for ticket in tickets:
        if ticket.status in OPEN and ticket.assignee_email:
            load[ticket.assignee_email]["open_now"] += 1
    for row in work:
        load[row.who][row.field] += int(row.n)
    fields = ("open_now", "claimed", "assigned_to", "resolved", "messages")
    return {email: {f: counts[f] for f in fields} for email, counts in sorted(load.items()) if email}


# ----- output -----------------------------------------------------------------------------------


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def format_report(data: Mapping[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["section", "metric", "value"])
        for section, content in data.items():
            for metric, value in _flatten("", content):
                writer.writerow([section, metric, "" if value is None else value])
        return buffer.getvalue()
    lines: list[str] = []
    for section, content in data.items():
        lines.append(section.replace("_", " ").capitalize())
        for metric, value in _flatten("", content):
            shown = "-" if value is None else (f"{value:.1%}" if metric.endswith(("rate", "compliance", "csat",
                                                                                     "confirmed_fixed"))
                                               and isinstance(value, float) else value)
            lines.append(f"  {metric}: {shown}")
    return "\n".join(lines) + "\n"
