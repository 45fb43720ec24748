"""build_report's SQL aggregates give exactly the figures of the old row-by-row Python computation
(tests/report_reference.py), on SQLite and PostgreSQL, over a randomized history full of edge cases
(interleaved and restarted flow segments, null/empty/odd conversation keys, ratings that are booleans,
strings or floats, odd `ok`/`fixed`/`by`/`to` values, events outside the window and after `now`), for
several windows. The report reads the event fields derived from `data` (events.report_key/label/value):
they are checked to agree with `data` after bulk inserts, recording through UnitOfWork, forget and
retention's scrub, and after migration 0007 backfilled them on events recorded before it. Everything
is dated from a fixed NOW, never from today's date."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

from bot.settings import Settings
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.retention import forget_person, purge
from bot.store.tables import REPORT_TEXT_LIMIT, EventRow, TicketRow, report_fields
from bot.tickets.report import build_report, format_report
from tests.report_reference import build_report_reference

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
FLOWS = ["vpn", "password_reset", "printer", "mfa", "smalltalk", "human", "fallback", None, 7]
OUTCOMES = ["resolved", "deflected", "escalated", "abandoned", None]
PEOPLE = ["ann@example.com", "Bob@Example.com", "bob@example.com", "cy@example.com"]
TECHS = ["tom.tech@example.com", "tina.tech@example.com", "", None]
KEYS = ["slack:D1", "slack:D2", "teams:a:b", "console:x", "", None, ":odd", "noprefix", "slack:D3"]
PRIORITIES = ["P1", "P2", "P3", "P4"]
STATUSES = ["new", "claimed", "waiting_on_requester", "reopened", "resolved", "closed"]
CATEGORIES = ["vpn", "password_reset", "printer", "mfa"]
TRUTHY_ODD = [True, False, None, 1, 0, 0.0, 2.5, "", "yes", [], [1], {}, {"a": 1}]
ODD_TECHS = [7, True, ["x"]]  # never written by the bot; still counted as the old code did
RATINGS = [1, 2, 3, 4, 5, 5, 4, True, False, "5", 4.0, None, 0, 7]


def _data(rng: random.Random, kind: str) -> dict[str, Any]:
    ref = f"HD-{rng.randint(1, 25)}" if rng.random() < 0.95 else rng.choice([None, 12])
    data: dict[str, Any] = {
        "flow_started": {"flow": rng.choice(FLOWS)},
        "flow_ended": {"flow": rng.choice(FLOWS), "outcome": rng.choice(OUTCOMES)},
        "ticket_created": {"id": ref},
        "kb_solved": {"article": "kb-1"},
        "action": {"name": "reset_password", "ok": rng.choice([True, True, False, *TRUTHY_ODD])},
        "satisfaction": {"id": ref, "rating": rng.choice(RATINGS)},
        "ticket_confirmed": {"id": ref, "fixed": rng.choice([True, False, *TRUTHY_ODD])},
        "ticket_resolved": {"id": ref, "by": rng.choice(TECHS)},
        "ticket_reopened": {"id": ref},
        "ticket_claimed": {"id": ref, "by": rng.choice(TECHS if rng.random() < 0.9 else ODD_TECHS)},
        "ticket_assigned": {"id": ref, "by": rng.choice(TECHS),
                            "to": rng.choice(TECHS if rng.random() < 0.9 else ODD_TECHS)},
        "ticket_relayed": {"id": ref, "by": rng.choice(TECHS),
                           "direction": rng.choice(["to_requester", "to_requester", "to_technician"])},
        "reply": {"text": "hi"},
    }[kind]
    return {k: v for k, v in data.items() if v is not None or rng.random() < 0.5}  # sometimes missing, sometimes null


async def _fill(url: str, seed: int, events_table: Any = None) -> None:
    """`events_table`: what to insert events into (default the current EventRow; a plain table for a
    database at an older revision)."""
    rng = random.Random(seed)
    engine = create_engine(url)
    try:
        tickets = []
        for n in range(300):
            created = NOW - timedelta(minutes=rng.randint(-120, 60 * 24 * 50))
            fr = rng.choice([None, rng.randint(1, 900)])
            tickets.append({
                "ref": f"HD-{n + 1}", "requester_email": rng.choice(PEOPLE).lower(), "requester_name": "R",
                "opened_by": "x@example.com", "channel": rng.choice(["slack", "teams", "console"]),
                "conversation_key": None, "flow_id": None, "category": rng.choice(CATEGORIES), "impact": "low",
                "urgency": "low", "priority": rng.choice(PRIORITIES), "status": rng.choice(STATUSES),
                "assignee_email": rng.choice([None, "tom.tech@example.com", "tina.tech@example.com"]),
                "summary": "s", "details": {}, "tried_articles": [], "tried_actions": [], "transcript": [],
                "created_at": created, "updated_at": created, "paused_minutes": 0, "first_response_minutes": fr,
                "resolution_minutes": rng.choice([None, rng.randint(1, 5000)]),
                "fr_breached_at": rng.choice([None, None, created]),
                "res_breached_at": rng.choice([None, None, created]),
                "reopen_count": 0, "queue_posts": [], "version": 1})
        async with engine.begin() as connection:
            await connection.execute(insert(TicketRow), tickets)
        # Events in time order mostly, with some out of order (ids and times disagree), in bursts per
        # conversation so segments form: start, some things, end; sometimes a restart or a lone end.
        events = []
        at = NOW - timedelta(days=45)
        kinds = ["flow_started", "flow_ended", "ticket_created", "kb_solved", "action", "satisfaction",
                 "ticket_confirmed", "ticket_resolved", "ticket_reopened", "ticket_claimed", "ticket_assigned",
                 "ticket_relayed", "reply"]
        while at < NOW + timedelta(hours=3):
            key = rng.choice(KEYS)
            actor = rng.choice([*PEOPLE, None])
            ending = rng.choice([["flow_ended"], ["flow_ended"], ["flow_ended"], [], ["flow_started", "flow_ended"],
                                 ["flow_ended", "flow_ended"]])
            burst = ["flow_started", *rng.choices(kinds[2:], k=rng.randint(0, 4)), *ending]
            if rng.random() < 0.15:
                burst = burst[1:]
            for kind in burst:
                at += timedelta(minutes=rng.randint(0, 40))
                when = at - timedelta(hours=rng.randint(1, 30)) if rng.random() < 0.05 else at
                events.append({"at": when, "type": kind, "conversation_key": key, "actor": actor, "subject": None,
                               "result": None, "data": _data(rng, kind)})
        async with engine.begin() as connection:
            await connection.execute(insert(EventRow if events_table is None else events_table), events)
    finally:
        await engine.dispose()


def _canonical(report: dict[str, Any]) -> str:
    """Order matters too (CSV/text rows follow dict order), so compare the JSON text as is."""
    return json.dumps(report, indent=1)


@pytest.mark.parametrize("seed", [1, 2])
async def test_sql_report_matches_reference(migrated: str, settings: Settings, seed: int) -> None:
    await _fill(migrated, seed)
    engine = create_engine(migrated)
    sessions = session_factory(engine)
    try:
        checked = 0
        for since in (timedelta(hours=12), timedelta(days=1), timedelta(days=7), timedelta(days=30),
                      timedelta(days=60)):
            for now in (NOW, NOW - timedelta(days=3, hours=5, minutes=17)):
                new = await build_report(sessions, settings, since=since, now=now)
                old = await build_report_reference(sessions, settings, since=since, now=now)
                assert _canonical(new) == _canonical(old), (since, now)
                assert format_report(new, "csv") == format_report(old, "csv")
                checked += new["volume"]["conversations"] + new["deflection"]["eligible_conversations"]
        assert checked > 100  # the fixture really exercised the figures
        wide = await build_report(sessions, settings, since=timedelta(days=60), now=NOW)
        assert wide["deflection"]["deflected"] > 0 and wide["deflection"]["came_back_within_24h"] >= 0
        assert wide["satisfaction"]["ratings"] > 0 and wide["reopen_rate"]["reopened"] > 0
        assert wide["technicians"]
    finally:
        await engine.dispose()


async def _compare(sessions: Any, settings: Settings, nows: tuple[datetime, ...] = (NOW,)) -> None:
    for since in (timedelta(hours=12), timedelta(days=1), timedelta(days=7), timedelta(days=60)):
        for now in nows:
            new = await build_report(sessions, settings, since=since, now=now)
            old = await build_report_reference(sessions, settings, since=since, now=now)
            assert _canonical(new) == _canonical(old), (since, now)


async def _derived_fields_agree(sessions: Any) -> int:
    """Every event's report columns are what report_fields gives for its type and data now."""
    async with sessions() as session:
        rows = (await session.execute(select(EventRow.type, EventRow.data, EventRow.report_key,
                                             EventRow.report_label, EventRow.report_value))).all()
    for row in rows:
        assert (row.report_key, row.report_label, row.report_value) == report_fields(row.type, row.data), row
    return len(rows)


async def test_recorded_forgotten_and_scrubbed_events_keep_their_report_fields(migrated: str,
                                                                               settings: Settings) -> None:
    """The fields follow `data` wherever it is written: UnitOfWork.emit, forget (a technician's address
    becomes a pseudonym in `by`/`to`), retention's scrub; the report still equals the reference."""
    await _fill(migrated, 3)
    engine = create_engine(migrated)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            uow = UnitOfWork(session, now=NOW - timedelta(hours=1), conversation_key="slack:D9",
                             actor="ann@example.com")
            uow.emit("flow_started", flow="vpn")
            uow.emit("action", name="reset_password", ok=True)
            uow.emit("flow_ended", flow="vpn", outcome="resolved")
            uow.emit("ticket_claimed", subject="HD-3", id="HD-3", by="tom.tech@example.com")
            uow.emit("ticket_relayed", subject="HD-3", id="HD-3", by="tom.tech@example.com", direction="to_requester",
                     text="On my way")
            uow.emit("satisfaction", subject="HD-3", id="HD-3", rating=5)
        before = await build_report(sessions, settings, since=timedelta(days=60), now=NOW)
        assert before["technicians"]["tom.tech@example.com"]["claimed"] > 0
        await _derived_fields_agree(sessions)

        await forget_person(sessions, "tom.tech@example.com", now=NOW, actor="admin@example.com")
        after = await build_report(sessions, settings, since=timedelta(days=60), now=NOW)
        assert "tom.tech@example.com" not in after["technicians"]  # only his open tickets would keep him
        await _derived_fields_agree(sessions)
        await _compare(sessions, settings)

        await purge(sessions, now=NOW, days=7)
        assert await _derived_fields_agree(sessions) > 1000
        await _compare(sessions, settings)
    finally:
        await engine.dispose()


async def test_migration_backfills_the_report_fields_of_existing_events(db_url: str, settings: Settings) -> None:
    """Events recorded before migration 0007 (no report columns) get them from their data."""
    await upgrade(db_url, "0006_h20a_inbox")
    old_events = sa.table("events", *(sa.column(name) for name in ("at", "type", "conversation_key", "actor",
                                                                  "subject", "result")), sa.column("data", sa.JSON))
    await _fill(db_url, 4, events_table=old_events)
    await upgrade(db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    try:
        assert await _derived_fields_agree(sessions) > 1000
        await _compare(sessions, settings, (NOW, NOW - timedelta(days=3, hours=5, minutes=17)))
    finally:
        await engine.dispose()


def test_report_fields_follow_the_figures_python_semantics() -> None:
    assert report_fields("flow_started", {}) == ("None", None, None)  # str(data.get("flow"))
    assert report_fields("flow_ended", {"flow": "vpn", "outcome": None}) == ("vpn", "None", None)
    assert report_fields("action", {"ok": []}) == (None, None, 0)
    assert report_fields("action", {"ok": "yes"}) == (None, None, 1)
    assert report_fields("satisfaction", {"id": "HD-1", "rating": True}) == ("HD-1", None, 1)
    assert report_fields("satisfaction", {"id": "HD-1", "rating": 4.0}) == ("HD-1", None, None)
    assert report_fields("ticket_confirmed", {"id": 12, "fixed": {}}) == ("12", None, 0)
    assert report_fields("ticket_claimed", {"id": "HD-1", "by": None}) == ("HD-1", "", None)
    assert report_fields("ticket_assigned", {"id": "HD-1"}) == ("HD-1", "None", None)
    assert report_fields("ticket_relayed", {"id": "HD-1", "by": "t@x", "direction": "to_technician"}) == \
        ("HD-1", None, None)
    assert report_fields("reply", {"text": "hi"}) == (None, None, None)
    assert report_fields("flow_started", None) == ("None", None, None)
    # Cut to the column's size (flow ids, outcomes, refs and addresses are far shorter).
    key, _, _ = report_fields("flow_started", {"flow": "x" * 1000})
    assert key == "x" * REPORT_TEXT_LIMIT
