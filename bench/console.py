"""Web console benchmark: the reports and queue pages over a large history.

    PYTHONPATH=. python bench/console.py                 # 50,000 tickets, 1,000,000 events, SQLite
    PYTHONPATH=. python bench/console.py --quick         # 5,000 tickets, 100,000 events
    PYTHONPATH=. python bench/console.py --database-url postgresql+asyncpg://postgres@127.0.0.1/bench
    PYTHONPATH=. python bench/console.py --keep /tmp/console.db   # fill once, reuse the file next time
    PYTHONPATH=. python bench/console.py --baseline-ref d87b248   # also time that revision's build_report

What runs, all real: a migrated database filled in bulk with tickets spread over a year (about 2% still
open, a few past their SLA) and events of every kind the report reads (conversations, KB use, actions,
ticket changes, ratings); the app built by `build_app` with the repository's settings; the console's
ASGI app driven in-process by httpx (signed in as an admin through the demo sign-in). Each page is
requested `--repeat` times; p50 / p95 / max are printed with the 500 ms target.

Each page's p50 is also shown as a ratio to the 7-day reports page of the same run (the machine is
shared: absolute times move with its load, ratios much less). With `--baseline-ref REV`, the same run
also times `build_report` as it was at git revision REV (bot/tickets/report.py loaded from `git show`,
run on the same database) against the current one, alternating, and checks both give the same figures.

The same run checks the console shows `helpdesk report`'s figures: /console/reports.csv is compared
with `format_report(build_report(...), "csv")` for the same moment (what `helpdesk report --format csv`
prints), and prints the query plans of the page queries (SQLite: EXPLAIN QUERY PLAN) to show which use
an index.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CATEGORIES = ["password_reset", "account_locked", "mfa", "vpn", "network", "printer", "email", "software_request",
              "access_request", "hardware", "computer_problem", "meetings", "phone", "onboarding", "security"]
PRIORITIES = ["P1", "P2", "P3", "P3", "P4", "P4", "P4"]
TECHS = ["tom.tech@example.com", "tina.tech@example.com", "theo.tech@example.com"]
EVENT_KINDS = ["flow_started", "flow_ended", "kb_suggested", "kb_opened", "kb_solved", "action", "ticket_claimed",
               "ticket_resolved", "satisfaction", "ticket_relayed", "reply"]


async def fill(url: str, tickets: int, events: int, now: datetime, seed: int = 7) -> None:
    from sqlalchemy import insert

    from bot.store.db import create_engine
    from bot.store.tables import EventRow, TicketRow

    rng = random.Random(seed)
    engine = create_engine(url)
    start = now - timedelta(days=365)
    try:
        rows: list[dict[str, Any]] = []
        for n in range(tickets):
            created = start + timedelta(seconds=rng.uniform(0, 365 * 86400))
            age = now - created
            open_ = rng.random() < (0.6 if age < timedelta(days=3) else 0.01)
            status = rng.choice(["new", "claimed", "waiting_on_requester", "reopened"]) if open_ else \
                rng.choice(["resolved", "closed", "closed", "closed"])
            assignee = None if status in ("new", "reopened") and rng.random() < 0.7 else rng.choice(TECHS)
            fr = None if status == "new" else rng.randint(5, 600)
            res = rng.randint(30, 4000) if status in ("resolved", "closed") else None
            breached = created if rng.random() < 0.05 else None
            rows.append({
                "ref": f"HD-{1001 + n}", "requester_email": f"user{rng.randint(1, 3000)}@example.com",
                "requester_name": "Bench User", "opened_by": "bench@example.com", "channel": "slack",
                "conversation_key": None, "flow_id": None, "category": rng.choice(CATEGORIES), "impact": "low",
                "urgency": "low", "priority": rng.choice(PRIORITIES), "status": status, "assignee_email": assignee,
                "summary": f"Bench ticket {n}", "details": {}, "tried_articles": [], "tried_actions": [],
                "transcript": [], "created_at": created, "updated_at": created, "claimed_at": None,
                "worked_at": None, "first_response_at": None, "resolved_at": None, "closed_at": None,
                "paused_since": None, "paused_minutes": 0, "first_response_minutes": fr,
                "resolution_minutes": res, "fr_reminded_at": None, "fr_breached_at": breached,
                "res_reminded_at": None, "res_breached_at": None, "tech_message_at": None, "fixed": None,
                "rating": None, "reopen_count": 0, "queue_posts": [], "version": 1})
            if len(rows) == 5000:
                async with engine.begin() as connection:
                    await connection.execute(insert(TicketRow), rows)
                rows = []
        if rows:
            async with engine.begin() as connection:
                await connection.execute(insert(TicketRow), rows)
        batch: list[dict[str, Any]] = []
        for _ in range(events):
            at = start + timedelta(seconds=rng.uniform(0, 365 * 86400))
            kind = rng.choice(EVENT_KINDS)
            key = f"slack:D{rng.randint(1, 20000)}"
            ref = f"HD-{1001 + rng.randrange(max(tickets, 1))}"
            data: dict[str, Any] = {
                "flow_started": {"flow": rng.choice(CATEGORIES)},
                "flow_ended": {"flow": rng.choice(CATEGORIES),
                               "outcome": rng.choice(["resolved", "deflected", "escalated", "abandoned"])},
                "kb_suggested": {"articles": [f"kb-{rng.randint(1, 50)}"]},
                "kb_opened": {"article": f"kb-{rng.randint(1, 50)}"},
                "kb_solved": {"article": f"kb-{rng.randint(1, 50)}"},
                "action": {"name": "reset_password", "ok": rng.random() < 0.9},
                "ticket_claimed": {"id": ref, "by": rng.choice(TECHS)},
                "ticket_resolved": {"id": ref, "by": rng.choice(TECHS)},
                "satisfaction": {"id": ref, "rating": rng.randint(1, 5)},
                "ticket_relayed": {"id": ref, "direction": "to_requester", "by": rng.choice(TECHS)},
                "reply": {"text": "…"},
            }[kind]
            subject = ref if kind.startswith("ticket_") or kind == "satisfaction" else None
            batch.append({"at": at, "type": kind, "conversation_key": key, "actor": "user@example.com",
                          "subject": subject, "result": None, "data": data})
            if len(batch) == 20000:
                async with engine.begin() as connection:
                    await connection.execute(insert(EventRow), batch)
                batch = []
        if batch:
            async with engine.begin() as connection:
                await connection.execute(insert(EventRow), batch)
        if engine.dialect.name == "postgresql":
            # What autovacuum does to a live database soon after a bulk load: planner statistics and the
            # visibility map (index-only scans). Without statistics PostgreSQL takes every table for
            # empty and nests loops (the 30-day report took 5 s instead of 0.3 s).
            from sqlalchemy import text

            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM ANALYZE events"))
                await connection.execute(text("VACUUM ANALYZE tickets"))
    finally:
        await engine.dispose()


async def plans(app: Any) -> list[str]:
    from sqlalchemy import text

    if app.db.dialect.name != "sqlite":
        return ["(query plans printed for SQLite only)"]
    statements = {
        "queue (open, by priority then age)":
            "SELECT * FROM tickets WHERE status IN ('new','claimed','waiting_on_requester','reopened') "
            "ORDER BY priority, created_at, id LIMIT 200",
        "queue (unclaimed in one category)":
            "SELECT * FROM tickets WHERE status IN ('new','reopened') AND assignee_email IS NULL "
            "AND category = 'printer' ORDER BY priority, created_at, id LIMIT 200",
        "report tickets (build_report)":
            "SELECT category, priority, status FROM tickets WHERE created_at >= '2026-01-01' "
            "OR status IN ('new','claimed','waiting_on_requester','reopened')",
        "ticket audit trail": "SELECT * FROM events WHERE subject = 'HD-1001' ORDER BY id LIMIT 200",
    }
    from bot.tickets.report import _EventSql

    sql = _EventSql("sqlite", datetime(2026, 1, 1, tzinfo=UTC))
    for name in ("conversations", "segments", "latest_ratings", "confirmations", "reopens", "technician_events"):
        statement = getattr(sql, name)().compile(app.db.sync_engine, compile_kwargs={"literal_binds": True})
        statements[f"report {name} (build_report)"] = str(statement)
    out = []
    async with app.db.connect() as connection:
        for name, sql in statements.items():
            rows = (await connection.execute(text("EXPLAIN QUERY PLAN " + sql))).all()
            out.append(f"  {name}: " + " | ".join(str(r[-1]) for r in rows))
    return out


def _p95(ordered: list[float]) -> float:
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


async def compare_with(revision: str, sessions: Any, settings: Any, now: datetime, repeat: int) -> None:
    """build_report at `revision` against the current one: same database, same moment, alternating."""
    import importlib.util
    import subprocess

    from bot.tickets import report as current

    source = subprocess.run(["git", "show", f"{revision}:bot/tickets/report.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "report_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("report_baseline", path)
    assert spec is not None and spec.loader is not None
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    print(f"build_report at {revision} (baseline) vs now, same database and moment, alternating:")
    for days in (30, 7):
        since = timedelta(days=days)
        timings: dict[str, list[float]] = {"baseline": [], "now": []}
        results: dict[str, Any] = {}
        for n in range(repeat):
            order = [("baseline", baseline), ("now", current)]
            for name, module in order if n % 2 else order[::-1]:
                started = time.perf_counter()
                results[name] = await module.build_report(sessions, settings, since=since, now=now)
                timings[name].append((time.perf_counter() - started) * 1000)
        old, new = sorted(timings["baseline"]), sorted(timings["now"])
        print(f"  {days:2}d: baseline p50 {statistics.median(old):.0f} / p95 {_p95(old):.0f} ms, now p50 "
              f"{statistics.median(new):.0f} / p95 {_p95(new):.0f} ms, now/baseline p50 "
              f"{statistics.median(new) / statistics.median(old):.2f}; same figures: "
              f"{'yes' if results['baseline'] == results['now'] else 'NO'}")


async def main(args: argparse.Namespace) -> int:
    import httpx

    from bot.app import build_app
    from bot.channels.serve import build_asgi
    from bot.settings import load_settings
    from bot.store.migrate import upgrade
    from bot.tickets.report import build_report, format_report
    from bot.web.console import Console, ConsoleMount

    tickets, events = (5000, 100_000) if args.quick else (args.tickets, args.events)
    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    database = Path(args.keep) if args.keep else workdir / "bench.db"
    url = args.database_url or f"sqlite+aiosqlite:///{database}"
    stamp = database.with_name(database.name + ".now")  # the moment a kept file was filled for
    reuse = bool(args.keep) and not args.database_url and database.exists() and stamp.exists()
    now = datetime.fromisoformat(stamp.read_text().strip()) if reuse else datetime.now(UTC).replace(microsecond=0)
    settings = load_settings(ROOT / "config" / "helpdesk.yaml", app={"data_dir": str(workdir)},
                             database={"url": url})
    began = time.perf_counter()
    await upgrade(url)  # on a kept file: the migrations added since it was filled (their backfills, timed)
    if reuse:
        print(f"reused {database} (filled for {now.isoformat()}), migrated in {time.perf_counter() - began:.1f}s")
    else:
        await fill(url, tickets, events, now)
        print(f"filled {tickets:,} tickets and {events:,} events in {time.perf_counter() - began:.1f}s "
              f"({url.split(':')[0]})")
        if args.keep and not args.database_url:
            stamp.write_text(now.isoformat())
    app = await build_app(settings, clock=lambda: now)
    try:
        console = Console(app, secret=b"bench-session-secret-0123456789")
        asgi = build_asgi(app, [ConsoleMount(app, console)])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1",
                                     timeout=120) as client:
            page = await client.get("/console/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            await client.post("/console/signin/demo", data={"csrf": token.group(1), "email": "ada.admin@example.com"})
            pages = {"reports (30 days)": "/console/reports?since=30d", "reports (7 days)": "/console/reports?since=7d",
                     "queue (open)": "/console/queue", "queue rows (unclaimed printer)":
                         "/console/queue/rows?status=unclaimed&category=printer",
                     "queue rows (breaching)": "/console/queue/rows?status=breaching", "overview": "/console/"}
            failed = False
            measured: dict[str, list[float]] = {}
            for name, path in pages.items():
                timings = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    response = await client.get(path)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                measured[name] = sorted(timings)
            baseline = statistics.median(measured["reports (7 days)"])
            print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p50/7d':>7}  target p95 < 500 ms")
            for name, timings in measured.items():
                p95 = _p95(timings)
                ok = p95 < 500
                failed |= not ok
                print(f"{name:34} {statistics.median(timings):8.0f} {p95:8.0f} {timings[-1]:8.0f} "
                      f"{statistics.median(timings) / baseline:7.2f}  {'ok' if ok else 'OVER'}")
            print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            if args.baseline_ref:
                await compare_with(args.baseline_ref, app.sessions, settings, now, args.repeat)
            exported = (await client.get("/console/reports.csv?since=30d")).text
            expected = format_report(await build_report(app.sessions, settings, since=timedelta(days=30), now=now),
                                     "csv")
            same = exported == expected
            print(f"console CSV == helpdesk report CSV (30d, same moment): {'yes' if same else 'NO'} "
                  f"({len(expected.splitlines())} figures)")
            print("query plans:")
            for line in await plans(app):
                print(line)
            return 0 if same and not failed else 1
    finally:
        await app.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 tickets and 100,000 events")
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--baseline-ref", default="", metavar="REV",
                        help="also time build_report as at this git revision, on the same database")
    parser.add_argument("--keep", default="", metavar="FILE",
                        help="SQLite file to fill once and reuse on later runs (with the same 'now')")
    sys.exit(asyncio.run(main(parser.parse_args())))
