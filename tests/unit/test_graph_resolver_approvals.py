"""Identity comes from the platform account; group access approvals round-trip through the events
table; requests decide once and expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bot.channels.console.simulate import FakeClock
from bot.core.models import Person, Platform, PlatformUser, Role
from bot.core.ports import ActionRequest
from bot.graph.actions.runner import SelfServiceRunner
from bot.graph.directory import Unavailable
from bot.graph.factory import build_resolver
from bot.graph.resolver import DirectoryPersonResolver
from bot.settings import RoleSettings
from bot.store.tables import Base
from tests.standins.backends import RecordingContext, make_backend

# The injected clock the runner judges codes, grants, approvals and rate limits by.
CLOCK = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))

ALICE_ID = "0d8f8a1e-0000-4000-8000-000000000001"


@pytest.fixture(params=["demo", "graph"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def session() -> Any:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as s:
        yield s
    await engine.dispose()


# ----- resolver ---------------------------------------------------------------------------------


async def test_slack_and_console_resolve_by_profile_email(kind: str) -> None:
    backend = make_backend(kind)
    resolver = build_resolver(backend.settings, backend.directory)
    alice = await resolver.resolve(PlatformUser(Platform.SLACK, "U123", email="Alice@Example.com"))
    assert alice is not None and alice.directory_id == ALICE_ID and alice.roles == frozenset({Role.EMPLOYEE})
    tom = await resolver.resolve(PlatformUser(Platform.CONSOLE, "tom", email="tom.tech@example.com"))
    assert tom is not None and tom.is_technician and not tom.is_admin
    ada = await resolver.resolve(PlatformUser(Platform.SLACK, "U9", email="ada.admin@example.com"))
    assert ada is not None and ada.is_admin
    carol = await resolver.resolve(PlatformUser(Platform.SLACK, "U3", email="carol@example.com"))
    assert carol is not None and carol.enabled is False
    assert await resolver.resolve(PlatformUser(Platform.SLACK, "U0", email="stranger@example.com")) is None
    assert await resolver.resolve(PlatformUser(Platform.SLACK, "U0")) is None


async def test_teams_resolves_by_aad_object_id_only(kind: str) -> None:
    backend = make_backend(kind)
    resolver = build_resolver(backend.settings, backend.directory)
    person = await resolver.resolve(
        PlatformUser(
            Platform.TEAMS, "29:x", aad_object_id=ALICE_ID, email="bob@example.com", display_name="Bob"
        )
    )
    assert person is not None and person.email == "alice@example.com"  # the object id wins
    # No object id: the email a Teams payload might carry is not trusted.
    assert await resolver.resolve(PlatformUser(Platform.TEAMS, "29:x", email="alice@example.com")) is None


async def test_roles_from_groups_and_cache() -> None:
    backend = make_backend("demo")
    resolver = DirectoryPersonResolver(
        backend.directory,
        RoleSettings(technician_groups=["it-support"], admin_groups=["it-admins"]),
        cache_seconds=600,
    )
    ada = await resolver.resolve(PlatformUser(Platform.SLACK, "U9", email="ada.admin@example.com"))
    assert ada is not None and ada.is_admin and ada.is_technician
    calls = len(backend.demo.calls)
    await resolver.resolve(PlatformUser(Platform.SLACK, "U9", email="ada.admin@example.com"))
    assert len(backend.demo.calls) == calls  # cached
    # Directory down: the cached person still resolves; an uncached one raises.
    resolver.cache_seconds = 0
    resolver._cache = {k: (0.0, v[1]) for k, v in resolver._cache.items()}
    backend.demo.fail_next("find_user", Unavailable("down", operation="find_user"))
    assert await resolver.resolve(PlatformUser(Platform.SLACK, "U9", email="ada.admin@example.com")) == ada
    backend.demo.fail_next("find_user", Unavailable("down", operation="find_user"))
    with pytest.raises(Unavailable):
        await resolver.resolve(PlatformUser(Platform.SLACK, "U1", email="bob@example.com"))


# ----- group access approvals -------------------------------------------------------------------


async def _request(
    kind: str, session: AsyncSession, **actions: Any
) -> tuple[Any, SelfServiceRunner, RecordingContext, str]:
    backend = make_backend(kind, **actions)
    runner = SelfServiceRunner(backend.settings, backend.directory, clock=CLOCK)
    ctx = RecordingContext(session=session)
    alice = Person(ALICE_ID, "alice@example.com", "Alice Employee")
    outcome = await runner.run(
        ActionRequest("request_group_access", alice, {"group": "marketing-share"}, "k"), ctx
    )
    assert outcome.code == "pending_approval"
    await session.commit()
    return backend, runner, ctx, str(outcome.data["access_request_id"])


BOB = Person("0d8f8a1e-0000-4000-8000-000000000002", "bob@example.com", "Bob Builder")
TOM = Person(
    "0d8f8a1e-0000-4000-8000-000000000010",
    "tom.tech@example.com",
    "Tom Technician",
    roles=frozenset({Role.TECHNICIAN}),
)


async def test_owner_approves_and_member_is_added(kind: str, session: AsyncSession) -> None:
    backend, runner, ctx, rid = await _request(kind, session)
    outcome = await runner.approvals.handle_approval(f"approval:approve:{rid}", BOB, ctx, session)
    assert outcome.code == "approved" and outcome.ok
    await session.commit()
    assert (await backend.directory.memberships(ALICE_ID)).has_group("marketing-share")
    assert ctx.notices[-1].email == "alice@example.com" and "approved" in ctx.notices[-1].text
    [action] = [a for a in ctx.of("action") if a.get("by") == "bob@example.com"]
    assert (
        action["name"] == "request_group_access"
        and action["ok"] is True
        and action["for"] == "alice@example.com"
    )
    assert ctx.of("access_decided")[-1]["decision"] == "approved"
    # Decides once.
    again = await runner.approvals.handle_approval(f"approval:deny:{rid}", BOB, ctx, session)
    assert again.code == "already_decided"
    if backend.standin:
        ref = backend.standin.calls("POST", r"/members/\$ref$")[-1].json()
        assert ref == {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{ALICE_ID}"}
    await backend.directory.aclose()


async def test_deny_and_wrong_approver(kind: str, session: AsyncSession) -> None:
    backend, runner, ctx, rid = await _request(kind, session)
    forbidden = await runner.approvals.handle_approval(f"approval:approve:{rid}", TOM, ctx, session)
    assert forbidden.code == "forbidden"
    denied = await runner.approvals.handle_approval(f"approval:deny:{rid}", BOB, ctx, session)
    assert denied.code == "denied"
    await session.commit()
    assert not (await backend.directory.memberships(ALICE_ID)).has_group("marketing-share")
    assert "declined" in ctx.notices[-1].text
    assert (
        await runner.approvals.handle_approval("approval:approve:nonsense", BOB, ctx, session)
    ).code == "bad_request"
    await backend.directory.aclose()


async def test_requests_expire(kind: str, session: AsyncSession) -> None:
    backend, runner, ctx, rid = await _request(kind, session)
    later = CLOCK() + timedelta(hours=73)
    assert await runner.approvals.expire_pending(ctx, session, now=later) == 1
    await session.commit()
    assert ctx.notices[-1].email == "alice@example.com" and "expired" in ctx.notices[-1].text
    assert (
        await runner.approvals.handle_approval(f"approval:approve:{rid}", BOB, ctx, session)
    ).code == "already_decided"
    assert await runner.approvals.expire_pending(ctx, session, now=later) == 0
    await backend.directory.aclose()


async def test_approval_when_graph_fails_escalates(kind: str, session: AsyncSession) -> None:
    backend, runner, ctx, rid = await _request(kind, session)
    backend.fail("add_group_member", "permission")
    outcome = await runner.approvals.handle_approval(f"approval:approve:{rid}", BOB, ctx, session)
    assert outcome.code == "permission_missing" and outcome.escalate
    assert "couldn't add you" in ctx.notices[-1].text
    assert ctx.of("action")[-1]["ok"] is False
    await backend.directory.aclose()


async def test_disabled_account_has_no_role_even_when_listed(kind: str) -> None:
    backend = make_backend(kind)
    roles = RoleSettings(admins=["carol@example.com"], technicians=["carol@example.com"])
    resolver = DirectoryPersonResolver(backend.directory, roles)
    carol = await resolver.resolve(PlatformUser(Platform.SLACK, "U3", email="carol@example.com"))
    assert carol is not None and not carol.enabled
    assert not carol.is_admin and not carol.is_technician and carol.roles == frozenset()
    # Whatever built the Person, a disabled one holds no role.
    ghost = Person("x", "x@example.com", "X", roles=frozenset({Role.ADMIN, Role.TECHNICIAN}), enabled=False)
    assert not ghost.is_admin and not ghost.is_technician


async def test_approver_sees_the_reason_the_requester_typed(kind: str, session: AsyncSession) -> None:
    backend = make_backend(kind)
    runner = SelfServiceRunner(backend.settings, backend.directory, clock=CLOCK)
    ctx = RecordingContext(session=session)
    alice = Person(ALICE_ID, "alice@example.com", "Alice Employee")
    reason = "Q3   campaign\nfiles for <!channel> & *launch*"
    outcome = await runner.run(
        ActionRequest("request_group_access", alice, {"group": "marketing-share", "reason": reason}, "k"), ctx
    )
    assert outcome.code == "pending_approval"
    [notice] = [n for n in ctx.notices if n.email == "bob@example.com"]
    assert 'Their reason: "Q3 campaign files for <!channel> & *launch*".' in notice.text
    await backend.directory.aclose()


async def test_notices_are_escaped_for_the_platform_they_land_on(session: AsyncSession) -> None:
    from bot.core.pipeline import UowActionContext
    from bot.store.repos import UnitOfWork

    uow = UnitOfWork(session, now=datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    await UowActionContext(uow, Platform.SLACK, "ev").notify(
        "bob@example.com", 'Alice asks. Their reason: "R&D <!channel> <https://evil|click>".')
    [row] = uow.enqueued
    text = row.payload["reply"]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "R&amp;D" in text


async def _ask_again(runner: SelfServiceRunner, ctx: RecordingContext, rid: str) -> Any:
    """The waiting conversation carries on (any message, or Continue): the action is run again with
    the request it waits for."""
    alice = Person(ALICE_ID, "alice@example.com", "Alice Employee")
    return await runner.run(ActionRequest("request_group_access", alice, {"approval_id": rid}, "k"), ctx)


async def test_pending_access_is_a_waiting_state_until_the_owner_adds_them(kind: str, session: AsyncSession) -> None:
    backend, runner, ctx, rid = await _request(kind, session)
    [first] = [a for a in ctx.of("action") if a.get("name") == "request_group_access"]
    assert first["code"] == "pending_approval"
    # Asked again before anyone decided: still waiting, nobody added, no second round of pings.
    notices = len(ctx.notices)
    waiting = await _ask_again(runner, ctx, rid)
    assert waiting.code == "pending_approval" and waiting.data["approval_id"] == rid
    assert "still waiting for Bob Builder" in waiting.message and len(ctx.notices) == notices
    assert not (await backend.directory.memberships(ALICE_ID)).has_group("marketing-share")
    await runner.approvals.handle_approval(f"approval:approve:{rid}", BOB, ctx, session)
    told = ctx.notices[-1]
    assert told.email == "alice@example.com" and [b.label for b in told.buttons] == ["Continue"]
    done = await _ask_again(runner, ctx, rid)
    assert done.ok and done.code == "done" and "now a member" in done.message
    await backend.directory.aclose()


async def test_declined_or_expired_access_is_not_done(kind: str, session: AsyncSession) -> None:
    backend, runner, ctx, rid = await _request(kind, session)
    await runner.approvals.handle_approval(f"approval:deny:{rid}", BOB, ctx, session)
    denied = await _ask_again(runner, ctx, rid)
    assert not denied.ok and denied.code == "access_denied" and not denied.escalate
    backend2, runner2, ctx2, rid2 = await _request(kind, session)
    assert await runner2.approvals.expire_pending(ctx2, session, now=CLOCK() + timedelta(hours=73)) >= 1
    expired = await _ask_again(runner2, ctx2, rid2)
    assert not expired.ok and expired.code == "access_expired"
    await backend.directory.aclose()
    await backend2.directory.aclose()
