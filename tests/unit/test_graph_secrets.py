"""The temporary password and the Temporary Access Pass exist only in `ActionOutcome.secret`: not
in logs (DEBUG included), events, the database, notifications, or any request but the one that
sets the password."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bot.channels.console.simulate import FakeClock
from bot.core.models import Person
from bot.core.ports import ActionRequest
from bot.graph.actions.runner import SelfServiceRunner
from bot.graph.policy import ActionPolicy
from bot.store.tables import Base, EventRow
from tests.standins.backends import RecordingContext, make_backend

# The injected clock the runner judges codes, grants, approvals and rate limits by.
CLOCK = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))

ALICE = Person("0d8f8a1e-0000-4000-8000-000000000001", "alice@example.com", "Alice Employee")


@pytest.fixture
async def session() -> Any:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as s:
        yield s
    await engine.dispose()


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


@pytest.mark.parametrize("kind", ["demo", "graph"])
@pytest.mark.parametrize("verification", ["email_code", "none"])
async def test_secrets_never_leak(
    kind: str, verification: str, caplog: pytest.LogCaptureFixture, session: AsyncSession
) -> None:
    backend = make_backend(kind, verification=verification)
    runner = SelfServiceRunner(
        backend.settings,
        backend.directory,
        policy=ActionPolicy(backend.settings.actions, backend=kind, allow_unverified=True),
        clock=CLOCK,
    )
    ctx = RecordingContext(session=session)
    caplog.set_level(logging.DEBUG)

    async def run(name: str, **args: str) -> Any:
        outcome = await runner.run(ActionRequest(name, ALICE, args, "console:alice"), ctx)
        if outcome.input_slot == "verification_code":
            code = backend.sent_mail()[-1][2].split("code is ")[1][:6]
            args = {**args, "verification_code": code}
            outcome = await runner.run(ActionRequest(name, ALICE, args, "console:alice"), ctx)
        return outcome

    password = await run("reset_password")
    tap = await run("mfa_reset", remove_method="keep")
    assert password.code == "done" and tap.code == "done"
    secrets = [password.secret, tap.secret]
    assert all(secrets)
    await session.commit()

    texts = [
        everything_logged(caplog),
        repr(ctx.events),
        repr(ctx.notices),
        password.message,
        tap.message,
        repr(password.data),
        repr(tap.data),
        repr([m for m in backend.sent_mail()]),
    ]
    rows = (await session.scalars(select(EventRow))).all()
    texts.append(repr([(r.type, r.actor, r.subject, r.result, r.data) for r in rows]))
    assert any(r.type == "action" for r in rows)
    if backend.standin is not None:
        for request in backend.standin.requests:
            is_password_patch = request.method == "PATCH" and request.path == f"/users/{ALICE.directory_id}"
            if not is_password_patch:
                texts.append(request.url + repr(request.headers) + request.body)
    for secret in secrets:
        for text in texts:
            assert secret not in text
    assert password.secret not in repr(password).replace(f"secret='{password.secret}'", "")
    await backend.directory.aclose()


async def test_secret_not_in_log_when_action_crashes(caplog: pytest.LogCaptureFixture) -> None:
    backend = make_backend("demo", verification="none")
    runner = SelfServiceRunner(backend.settings, backend.directory, clock=CLOCK)
    seen: list[str] = []
    original = backend.demo.reset_password

    async def broken(user_id: str, password: str, *, force_change: bool = True) -> Any:
        seen.append(password)
        raise RuntimeError("boom")

    backend.demo.reset_password = broken  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    outcome = await runner.run(ActionRequest("reset_password", ALICE, {}, "k"), RecordingContext())
    assert outcome.code == "failed" and outcome.escalate and outcome.secret is None
    assert seen and seen[0] not in caplog.text
    backend.demo.reset_password = original  # type: ignore[method-assign]
    assert datetime.now(UTC)
