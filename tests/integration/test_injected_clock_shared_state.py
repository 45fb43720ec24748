"""One injected clock governs verification codes, grants, approvals, rate limits and the shared
state they live in: with the app's clock far from the real one (2031 and 2019), everything is
judged by that clock and by nothing else.

Before this, `SqlSharedState`, `MemoryState`, `VerificationStore` and `RateLimiter` read
`time.time()`: a code issued "now" by a fake 2031 clock stayed valid after that clock had moved
an hour on (the real clock had not), and under a 2019 clock a fresh code was already expired.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.console.simulate import FakeClock
from bot.core.models import Person, Platform
from bot.core.pipeline import UowActionContext
from bot.core.ports import ActionOutcome, ActionRequest
from bot.graph.actions.runner import SelfServiceRunner
from bot.graph.approvals import ApprovalDesk
from bot.graph.handler import expire_access_requests
from bot.graph.policy import ActionPolicy
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.repos import SqlSharedState, UnitOfWork
from bot.store.retention import purge
from bot.store.tables import SharedStateRow
from tests.standins.backends import Backend, RecordingContext, make_backend

ALICE = Person("0d8f8a1e-0000-4000-8000-000000000001", "alice@example.com", "Alice Employee")

pytestmark = [pytest.mark.clock]

MOMENTS = [datetime(2031, 6, 1, 9, 0, tzinfo=UTC), datetime(2019, 1, 1, 9, 0, tzinfo=UTC)]


@pytest.fixture(params=MOMENTS, ids=["2031", "2019"])
def clock(request: pytest.FixtureRequest) -> FakeClock:
    return FakeClock(request.param)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Any]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'clock.db'}"
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def runner_for(backend: Backend, clock: FakeClock) -> SelfServiceRunner:
    policy = ActionPolicy(backend.settings.actions, backend=backend.kind, allow_unverified=True)
    return SelfServiceRunner(backend.settings, backend.directory, policy=policy, clock=clock)


async def turn(sessions: Any, runner: SelfServiceRunner, clock: FakeClock, name: str,
               **args: str) -> ActionOutcome:
    """One turn as the core runs it: a UnitOfWork at the injected clock's time, the action context
    the pipeline builds (shared state in the turn's transaction)."""
    async with sessions() as session, session.begin():
        uow = UnitOfWork(session, now=clock(), actor=ALICE.email)
        ctx = UowActionContext(uow, Platform.CONSOLE, f"turn:{clock().isoformat()}")
        return await runner.run(ActionRequest(name, ALICE, dict(args), "console:alice@example.com"), ctx)


def last_code(backend: Backend) -> str:
    found = re.search(r"\b(\d{6})\b", backend.sent_mail()[-1][2])
    assert found
    return found.group(1)


async def test_an_emailed_code_lives_by_the_injected_clock(sessions: Any, clock: FakeClock) -> None:
    backend = make_backend("demo", verification="email_code")
    runner = runner_for(backend, clock)
    ttl = timedelta(minutes=backend.settings.actions.code_ttl_minutes)
    try:
        asked = await turn(sessions, runner, clock, "reset_password")
        assert asked.code == "needs_input" and asked.input_slot == "verification_code"
        clock.advance(ttl - timedelta(minutes=1))  # still within its life
        ok = await turn(sessions, runner, clock, "reset_password", verification_code=last_code(backend))
        assert ok.ok and ok.code == "done", ok

        await turn(sessions, runner, clock, "revoke_sessions")
        code = last_code(backend)
        clock.advance(ttl + timedelta(seconds=1))  # past its life by the injected clock
        late = await turn(sessions, runner, clock, "revoke_sessions", verification_code=code)
        assert not late.ok and late.code != "done", late
    finally:
        await backend.directory.aclose()


async def test_a_code_lives_by_the_injected_clock_without_a_database(clock: FakeClock) -> None:
    """The runner's own state (a context that brings none) follows the same clock."""
    backend = make_backend("demo", verification="email_code")
    runner = runner_for(backend, clock)
    ctx = RecordingContext()
    try:
        await runner.run(ActionRequest("revoke_sessions", ALICE, {}, "k"), ctx)
        code = last_code(backend)
        clock.advance(timedelta(minutes=backend.settings.actions.code_ttl_minutes, seconds=1))
        late = await runner.run(ActionRequest("revoke_sessions", ALICE, {"verification_code": code}, "k"), ctx)
        assert not late.ok and late.code != "done", late
    finally:
        await backend.directory.aclose()


async def test_a_rate_limit_window_resets_when_the_injected_clock_passes_it(sessions: Any, clock: FakeClock) -> None:
    backend = make_backend("demo", verification="none", rate_limit_per_hour=1)
    runner = runner_for(backend, clock)
    try:
        assert (await turn(sessions, runner, clock, "revoke_sessions")).code == "done"
        clock.advance(timedelta(minutes=59))
        assert (await turn(sessions, runner, clock, "revoke_sessions")).code == "rate_limited"
        clock.advance(timedelta(minutes=2))  # the first attempt is now more than an hour old
        assert (await turn(sessions, runner, clock, "revoke_sessions")).code == "done"
    finally:
        await backend.directory.aclose()


async def test_an_identity_approval_expires_by_the_injected_clock(sessions: Any, clock: FakeClock) -> None:
    backend = make_backend("demo", verification="email_code")
    runner = runner_for(backend, clock)
    store = runner.verification
    ttl = timedelta(hours=backend.settings.actions.request_expiry_hours)
    try:
        async with sessions() as session, session.begin():
            ctx = UowActionContext(UnitOfWork(session, now=clock(), actor=None), Platform.CONSOLE, "open")
            pending = await store.open_request(ctx.state, ALICE.directory_id, ALICE.email, ALICE.display_name,
                                               "reset_password")
        assert pending.expires == (clock() + ttl).timestamp()
        clock.advance(ttl - timedelta(minutes=1))
        async with sessions() as session, session.begin():
            ctx = UowActionContext(UnitOfWork(session, now=clock(), actor=None), Platform.CONSOLE, "still")
            assert await store.pending_for(ctx.state, ALICE.directory_id, "reset_password") is not None
        clock.advance(timedelta(minutes=2))
        async with sessions() as session, session.begin():
            ctx = UowActionContext(UnitOfWork(session, now=clock(), actor=None), Platform.CONSOLE, "gone")
            assert await store.pending_for(ctx.state, ALICE.directory_id, "reset_password") is None
    finally:
        await backend.directory.aclose()


async def _keys(sessions: Any) -> set[str]:
    async with sessions() as session:
        return set((await session.execute(select(SharedStateRow.key))).scalars())


async def test_the_expiry_job_purges_shared_state_by_the_app_clock(sessions: Any, clock: FakeClock) -> None:
    backend = make_backend("demo", verification="email_code")
    runner = runner_for(backend, clock)
    app = SimpleNamespace(clock=clock, sessions=sessions, default_platform=Platform.CONSOLE)
    try:
        async with sessions() as session, session.begin():
            await SqlSharedState(session, clock=lambda: clock().timestamp()).put(
                "code:x:reset_password", {"v": 1}, clock().timestamp() + 60)
        await expire_access_requests(app, ApprovalDesk(runner))
        assert "code:x:reset_password" in await _keys(sessions)  # a minute left by the app's clock
        clock.advance(timedelta(minutes=2))
        await expire_access_requests(app, ApprovalDesk(runner))
        assert "code:x:reset_password" not in await _keys(sessions)
    finally:
        await backend.directory.aclose()


async def test_retention_purges_expired_shared_state_by_the_given_time(sessions: Any, clock: FakeClock) -> None:
    async with sessions() as session, session.begin():
        await SqlSharedState(session, clock=lambda: clock().timestamp()).put(
            "grant:x:reset_password", {"until": 1}, clock().timestamp() + 60)
    await purge(sessions, now=clock(), days=30)
    assert "grant:x:reset_password" in await _keys(sessions)
    clock.advance(timedelta(minutes=2))
    counts = await purge(sessions, now=clock(), days=30)
    assert counts["shared_state"] == 1 and "grant:x:reset_password" not in await _keys(sessions)
