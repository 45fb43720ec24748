"""50 technicians click Claim on one ticket at the same moment, from several processes, against
PostgreSQL: exactly one wins, every other caller is told who won, one `ticket_claimed` event."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg_scratch import scratch_database
from sqlalchemy import func, select

from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.tables import EventRow, OutboxRow, TicketRow

pytestmark = pytest.mark.postgres  # a load test: not re-run under faketime (.ci/run), its deadlines are wall-clock
ROOT = Path(__file__).resolve().parents[2]
TECHS = ["tom.tech@example.com", "tina.tech@example.com", "theo.tech@example.com", "ada.admin@example.com"]
CLAIMANTS = 50


def _env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HELPDESK_DATABASE__URL": url, "PYTHONPATH": str(ROOT), "HELPDESK_LOG__LEVEL": "WARNING"})
    return env


def _helpdesk(*args: str) -> list[str]:
    return [sys.executable, "-c", "from bot.cli import main; main()", *args]


async def _claim_events(url: str) -> tuple[int, str | None, int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            claimed = await session.scalar(select(func.count()).select_from(EventRow)
                                           .where(EventRow.type == "ticket_claimed"))
            ticket = (await session.execute(select(TicketRow))).scalar_one()
            refused = await session.scalar(select(func.count()).select_from(EventRow)
                                           .where(EventRow.type == "ticket_refused"))
            return int(claimed or 0), ticket.assignee_email, int(refused or 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("itsm", [False, True], ids=["own-queue", "with-servicenow-connector"])
async def test_fifty_concurrent_cli_claims_one_winner(itsm: bool) -> None:
    async with scratch_database() as url:
        await upgrade(url)
        env = _env(url)
        if itsm:  # the claim race holds with a ticket-system connector on (docs/itsm.md)
            env.update({"HELPDESK_ITSM__SYSTEM": "servicenow", "HELPDESK_ITSM__BASE_URL": "https://snow.invalid",
                        "HELPDESK_ITSM__USER": "svc.helpdesk", "HELPDESK_ITSM__TOKEN": "unused"})
        opened = subprocess.run(_helpdesk("tickets", "open", "--as", "tom.tech@example.com", "--for",
                                          "alice@example.com", "--category", "printer", "--summary", "Jammed"),
                                env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert opened.returncode == 0, opened.stderr
        ref = opened.stdout.strip()
        assert ref.startswith("HD-")
        # Start every process first and wait until each has imported everything, then release them
        # together through a start file, so the claims overlap in the database and not in start-up.
        base = Path(env.get("TMPDIR", "/tmp")) / f"claim-race-{os.getpid()}-{time.time_ns()}"
        ready, go = base / "ready", base / "go"
        ready.mkdir(parents=True)
        script = ("import bot.cli, bot.tickets.cli, bot.tickets.handler, bot.graph.factory, bot.render.renderer\n"
                  "import asyncpg, sqlalchemy.dialects.postgresql.asyncpg\n"
                  "import os, sys, time\n"
                  f"open(os.path.join({str(ready)!r}, str(os.getpid())), 'w').close()\n"
                  f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
                  "from bot.cli import main\n"
                  "sys.argv = ['helpdesk', *sys.argv[1:]]\n"
                  "main()\n")
        procs = [subprocess.Popen([sys.executable, "-c", script, "tickets", "claim", ref,
                                   "--as", TECHS[n % len(TECHS)]], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in range(CLAIMANTS)]
        deadline = time.monotonic() + 240
        while len(list(ready.iterdir())) < CLAIMANTS and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(list(ready.iterdir())) == CLAIMANTS, "not every claimant started"
        started = time.perf_counter()
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            results.append((p.returncode, out, err))
        elapsed = time.perf_counter() - started
        shutil.rmtree(base, ignore_errors=True)
        codes = [code for code, _, _ in results]
        claimed, holder, refused = await _claim_events(url)
        winners = [r for r in results if r[0] == 0]
        others = [r for r in results if r[0] != 0]
        print(f"\n{CLAIMANTS} claim processes in {elapsed:.2f}s: exit codes {sorted(set(codes))}, "
              f"claimed by {holder}, {claimed} ticket_claimed event(s), {len(winners)} exit 0")
        assert claimed == 1
        assert len(winners) == 1 and winners[0][1].strip() == f"{ref} claimed"
        assert all(code == 3 for code, _, _ in others), [r for r in others if r[0] != 3][:3]
        # Everyone else is told who holds it (callers acting as the holder are told it is theirs).
        assert all(f"<{holder}>" in out for _, out, _ in others)
        refused_expected = sum(1 for n, r in enumerate(results) if r[0] == 3 and TECHS[n % len(TECHS)] != holder)
        assert refused == refused_expected
        if itsm:  # the escalation was queued for ServiceNow exactly once; claims are not mirrored
            engine = create_engine(url)
            try:
                async with session_factory(engine)() as session:
                    calls = list((await session.execute(select(OutboxRow.idempotency_key)
                                                        .where(OutboxRow.platform == "itsm"))).scalars())
            finally:
                await engine.dispose()
            assert calls == [f"itsm:servicenow:{ref}:create"]


async def test_fifty_concurrent_claims_distinct_technicians_in_process_pool() -> None:
    """The same through the service from a pool of processes, each its own claimant identity."""
    import concurrent.futures
    import multiprocessing

    async with scratch_database() as url:
        await upgrade(url)
        env = _env(url)
        opened = subprocess.run(_helpdesk("tickets", "open", "--as", "ada.admin@example.com", "--for",
                                          "bob@example.com", "--category", "vpn", "--summary", "VPN down"),
                                env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert opened.returncode == 0, opened.stderr
        ref = opened.stdout.strip()
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=8, mp_context=ctx) as pool:
            barrier_at = time.time() + 3.0
            futures = [pool.submit(_claim_in_process, url, ref, f"tech{n:02d}@example.com", barrier_at)
                       for n in range(CLAIMANTS)]
            outcomes = [f.result(timeout=120) for f in futures]
        winners = [o for o in outcomes if o[0] == "claimed"]
        held = [o for o in outcomes if o[0] == "held"]
        claimed, holder, _ = await _claim_events(url)
        assert len(winners) == 1 and claimed == 1
        assert winners[0][1] == holder
        assert len(held) == CLAIMANTS - 1 and all(o[1] == holder for o in held)


def _claim_in_process(url: str, ref: str, email: str, barrier_at: float) -> tuple[str, str]:
    """One claimant in a worker process: a technician identity made up for the test."""
    return asyncio.run(_claim_async(url, ref, email, barrier_at))


async def _claim_async(url: str, ref: str, email: str, barrier_at: float) -> tuple[str, str]:
    from datetime import UTC, datetime

    from bot.core.models import Person, Role
    from bot.render.renderer import Renderer
    from bot.settings import load_settings
    from bot.store.repos import UnitOfWork
    from bot.tickets.model import HeldByOther
    from bot.tickets.service import TicketService

    class Directory:
        async def resolve(self, user: object) -> Person:
            return Person(directory_id=email, email=email, display_name=email,
                          roles=frozenset({Role.EMPLOYEE, Role.TECHNICIAN}))

    engine = create_engine(url, pool_size=1)
    sessions = session_factory(engine)
    service = TicketService(load_settings(), Renderer(), Directory(), sessions=sessions)
    actor = Person(directory_id=email, email=email, display_name=email,
                   roles=frozenset({Role.EMPLOYEE, Role.TECHNICIAN}))
    async with sessions() as session:  # connect before the barrier
        await session.execute(select(1))
    await asyncio.sleep(max(0.0, barrier_at - time.time()))
    try:
        async with sessions() as session, session.begin():
            uow = UnitOfWork(session, now=datetime.now(UTC), actor=email)
            try:
                outcome = await service.claim(uow, actor, ref)
                return ("claimed" if outcome.action == "claimed" else outcome.action, email)
            except HeldByOther as exc:
                return ("held", exc.holder)
    finally:
        await engine.dispose()
