"""Identity checks and rate limits across replicas: two self-service runners (two `helpdesk serve`
processes) sharing one database, each turn in its own transaction, as the core runs them.

Before the shared_state table, a code emailed by one replica was unknown to the other, a
technician's Approve could miss its request, and each replica kept its own rate-limit window.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bot.channels.console.simulate import FakeClock
from bot.core.models import Button, Person, Role
from bot.core.ports import ActionOutcome, ActionRequest
from bot.graph.actions.runner import SelfServiceRunner
from bot.graph.policy import ActionPolicy
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.repos import SqlSharedState
from bot.store.tables import SharedStateRow
from tests.standins.backends import Backend, make_backend

ALICE = Person("0d8f8a1e-0000-4000-8000-000000000001", "alice@example.com", "Alice Employee")
TOM = Person("0d8f8a1e-0000-4000-8000-000000000010", "tom.tech@example.com", "Tom Technician",
             roles=frozenset({Role.EMPLOYEE, Role.TECHNICIAN}))

# The injected clock these runners judge codes, grants and rate limits by (a fixed moment).
CLOCK = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))

pytestmark = [pytest.mark.clock, pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)]


class TurnContext:
    """What the core gives an action: events, notices and the shared state, all in one transaction."""

    def __init__(self, session: Any) -> None:
        self.state = SqlSharedState(session, clock=lambda: CLOCK().timestamp())
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.notices: list[tuple[str, str, tuple[Button, ...]]] = []

    def emit(self, type: str, **data: Any) -> None:
        self.events.append((type, data))

    async def notify(self, email: str, text: str, buttons: Sequence[Button] = ()) -> None:
        self.notices.append((email, text, tuple(buttons)))


@pytest.fixture
async def cluster(db_url: str) -> AsyncIterator[tuple[Backend, list[SelfServiceRunner], Any]]:
    await upgrade(db_url)
    engine = create_engine(db_url)
    backend = make_backend("demo", verification="email_code", rate_limit_per_hour=3)
    policy = ActionPolicy(backend.settings.actions, backend=backend.kind, allow_unverified=True)
    replicas = [SelfServiceRunner(backend.settings, backend.directory, policy=policy, clock=CLOCK) for _ in range(2)]
    try:
        yield backend, replicas, session_factory(engine)
    finally:
        await backend.directory.aclose()
        await engine.dispose()


def set_verification(backend: Backend, runners: Sequence[SelfServiceRunner], mode: str) -> None:
    actions = backend.settings.actions.model_copy(update={"verification": mode})
    for runner in runners:
        runner.policy = ActionPolicy(actions, backend=backend.kind, allow_unverified=True)


async def turn(sessions: Any, runner: SelfServiceRunner, name: str, **args: str) -> tuple[ActionOutcome, TurnContext]:
    async with sessions() as session, session.begin():
        ctx = TurnContext(session)
        outcome = await runner.run(ActionRequest(name, ALICE, dict(args), "console:alice@example.com"), ctx)
    return outcome, ctx


async def test_a_code_sent_by_one_replica_is_checked_by_the_other(cluster: Any) -> None:
    backend, (a, b), sessions = cluster
    asked, _ = await turn(sessions, a, "reset_password")
    assert asked.code == "needs_input" and asked.input_slot == "verification_code"
    code = re.search(r"\b(\d{6})\b", backend.sent_mail()[-1][2]).group(1)  # type: ignore[union-attr]
    async with sessions() as session:
        rows = (await session.execute(select(SharedStateRow.key, SharedStateRow.value))).all()
    assert rows and code not in str(rows)  # only a salted hash is stored
    wrong, _ = await turn(sessions, b, "reset_password", verification_code="000000" if code != "000000" else "111111")
    assert wrong.code == "needs_input" and "2 tries left" in (wrong.prompt or "")
    done, _ = await turn(sessions, b, "reset_password", verification_code=code)
    assert done.code == "done" and done.secret
    again, _ = await turn(sessions, a, "reset_password", verification_code=code)  # one check, one change
    assert again.code == "needs_input"


async def test_an_approval_clicked_on_another_replica_finds_its_request(cluster: Any) -> None:
    backend, (a, b), sessions = cluster
    set_verification(backend, (a, b), "technician_approval")
    pending, ctx = await turn(sessions, a, "revoke_sessions")
    assert pending.code == "pending_approval"
    approve = ctx.notices[0][2][0].value
    again, _ = await turn(sessions, b, "revoke_sessions")
    assert again.code == "pending_approval"  # b knows the request is waiting: no second round of pings
    async with sessions() as session, session.begin():
        decided = await b.approvals.handle_approval(approve, TOM, TurnContext(session), session=session)
    assert decided.code == "approved"
    done, _ = await turn(sessions, a, "revoke_sessions")
    assert done.code == "done"


async def test_the_rate_limit_counts_attempts_on_every_replica(cluster: Any) -> None:
    backend, (a, b), sessions = cluster
    set_verification(backend, (a, b), "none")
    codes = [(await turn(sessions, runner, "revoke_sessions"))[0].code for runner in (a, b, a, b)]
    assert codes == ["done", "done", "done", "rate_limited"]
