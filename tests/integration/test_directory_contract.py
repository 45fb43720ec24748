"""One contract for every `Directory` backend: the demo directory, and the Graph directory against
the stand-in (MSAL token endpoint included). Same data (config/demo_directory.yaml), same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.graph.directory import AutoReplies, BadRequest, NotFound
from tests.standins.backends import Backend, make_backend

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

ALICE = "0d8f8a1e-0000-4000-8000-000000000001"
BOB = "0d8f8a1e-0000-4000-8000-000000000002"
CAROL = "0d8f8a1e-0000-4000-8000-000000000003"
ADA = "0d8f8a1e-0000-4000-8000-000000000020"
NOBODY = "0d8f8a1e-0000-4000-8000-0000000000ff"


@pytest.fixture(params=["demo", "graph"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    made = make_backend(request.param)
    yield made
    await made.directory.aclose()


async def test_user_by_id_and_email(backend: Backend) -> None:
    d = backend.directory
    alice = await d.get_user(ALICE)
    assert alice is not None and alice.email == "alice@example.com" and alice.enabled
    assert alice.display_name == "Alice Employee"
    assert alice.last_password_change == datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
    by_mail = await d.find_user_by_email("ALICE@example.com")
    assert by_mail is not None and by_mail.id == ALICE
    assert await d.get_user(NOBODY) is None
    assert await d.find_user_by_email("nobody@example.com") is None
    # An apostrophe must not break (or inject into) the OData filter.
    assert await d.find_user_by_email("o'brien@example.com") is None


async def test_disabled_and_synced_accounts(backend: Backend) -> None:
    carol = await backend.directory.get_user(CAROL)
    assert carol is not None and carol.enabled is False
    dave = await backend.directory.find_user_by_email("dave@example.com")
    assert dave is not None and dave.on_premises_sync


async def test_memberships_groups_and_roles(backend: Backend) -> None:
    alice = await backend.directory.memberships(ALICE)
    assert {g.name for g in alice.groups} == {"all-staff", "finance"}
    assert alice.has_group("Finance") and alice.has_group("grp-finance")
    assert alice.directory_roles == ()
    ada = await backend.directory.memberships(ADA)
    assert "Global Administrator" in ada.directory_roles
    assert ada.has_group("it-admins")
    with pytest.raises(NotFound):
        await backend.directory.memberships(NOBODY)


async def test_account_details_have_licences(backend: Backend) -> None:
    details = await backend.directory.account_details(ALICE)
    assert details.user.id == ALICE
    assert len(details.licenses) == 1
    erin = await backend.directory.find_user_by_email("erin@example.com")
    assert erin is not None
    assert (await backend.directory.account_details(erin.id)).licenses == ()


async def test_alternate_email(backend: Backend) -> None:
    assert await backend.directory.alternate_email(ALICE) == "alice.personal@example.net"
    erin = await backend.directory.find_user_by_email("erin@example.com")
    assert erin is not None
    assert await backend.directory.alternate_email(erin.id) is None


async def test_groups_owners_and_membership(backend: Backend) -> None:
    d = backend.directory
    group = await d.find_group("marketing-share")
    assert group is not None and group.display_name == "Marketing shared drive"
    assert await d.find_group("Marketing shared drive") == group
    assert await d.find_group("no-such-group") is None
    owners = await d.group_owners(group.id)
    assert [o.email for o in owners] == ["bob@example.com"]
    assert await d.group_owners((await d.find_group("orphan-share")).id) == []  # type: ignore[union-attr]
    added, receipt = await d.add_group_member(group.id, ALICE)
    assert added is True and receipt.request_id
    again, _ = await d.add_group_member(group.id, ALICE)
    assert again is False  # already a member is success, not an error
    assert (await d.memberships(ALICE)).has_group("marketing-share")
    with pytest.raises(NotFound):
        await d.add_group_member(group.id, NOBODY)


async def test_password_reset_and_complexity(backend: Backend) -> None:
    receipt = await backend.directory.reset_password(ALICE, "Xy7#kLm2pQ9!rT", force_change=True)
    assert receipt.request_id
    with pytest.raises(BadRequest):
        await backend.directory.reset_password(ALICE, "short", force_change=True)
    with pytest.raises(NotFound):
        await backend.directory.reset_password(NOBODY, "Xy7#kLm2pQ9!rT")


async def test_sessions_and_tap(backend: Backend) -> None:
    assert (await backend.directory.revoke_sessions(ALICE)).request_id
    tap = await backend.directory.create_temporary_access_pass(ALICE, lifetime_minutes=60, usable_once=True)
    assert tap.value and tap.lifetime_minutes == 60 and tap.usable_once
    assert tap.value not in repr(tap)
    with pytest.raises(BadRequest):
        await backend.directory.create_temporary_access_pass(ALICE, lifetime_minutes=5, usable_once=True)


async def test_auth_methods_listed_and_removed(backend: Backend) -> None:
    methods = list(await backend.directory.auth_methods(ALICE))
    assert {m.kind for m in methods} == {"phone", "authenticator"}
    phone = next(m for m in methods if m.kind == "phone")
    assert (await backend.directory.remove_auth_method(ALICE, phone)).request_id
    assert [m.kind for m in await backend.directory.auth_methods(ALICE)] == ["authenticator"]
    with pytest.raises(NotFound):
        await backend.directory.remove_auth_method(ALICE, phone)


async def test_devices_and_commands(backend: Backend) -> None:
    devices = list(await backend.directory.managed_devices(ALICE))
    assert [d.name for d in devices] == ["ALICE-LT01", "Alice iPhone"]
    assert devices[0].operating_system == "Windows" and devices[0].compliance == "compliant"
    for command in ("sync", "restart"):
        assert (await backend.directory.device_command(devices[0].id, command)).request_id  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await backend.directory.device_command("no-such-device", "sync")
    erin = await backend.directory.find_user_by_email("erin@example.com")
    assert erin is not None and list(await backend.directory.managed_devices(erin.id)) == []


async def test_automatic_replies_round_trip(backend: Backend) -> None:
    assert (await backend.directory.automatic_replies(ALICE)).status == "disabled"
    start = datetime(2026, 10, 1, 8, tzinfo=UTC)
    replies = AutoReplies(
        status="scheduled",
        internal_html="Away &lt;back soon&gt;",
        external_html="Away",
        external_audience="all",
        start=start,
        end=start + timedelta(days=5),
    )
    await backend.directory.set_automatic_replies(ALICE, replies)
    got = await backend.directory.automatic_replies(ALICE)
    assert got.status == "scheduled" and got.internal_html == "Away &lt;back soon&gt;"
    assert got.start == start and got.end == start + timedelta(days=5)
    assert got.external_audience == "all"


async def test_storage_usage(backend: Backend) -> None:
    alice = await backend.directory.get_user(ALICE)
    assert alice is not None
    mailbox = await backend.directory.mailbox_usage(alice)
    assert mailbox is not None and mailbox.kind == "mailbox" and 89 < mailbox.percent < 91
    assert mailbox.state == "nearing"
    drive = await backend.directory.onedrive_usage(ALICE)
    assert drive is not None and drive.percent < 5 and drive.state == "normal"
    erin = await backend.directory.find_user_by_email("erin@example.com")
    assert erin is not None
    assert await backend.directory.mailbox_usage(erin) is None
    assert await backend.directory.onedrive_usage(erin.id) is None


async def test_send_mail(backend: Backend) -> None:
    receipt = await backend.directory.send_mail(
        "helpdesk@example.com", "alice.personal@example.net", "Hi", "Body"
    )
    assert receipt.request_id is not None
    assert backend.sent_mail() == [("alice.personal@example.net", "Hi", "Body")]


async def test_search_groups_by_word_prefix_for_fuzzy_names(backend: Backend) -> None:
    """Both backends find candidates by word prefix (Graph `$search` with ConsistencyLevel:
    eventual); the listener ranks them fuzzily and confirms anything not typed exactly."""
    from bot.core.models import Person
    from bot.graph.listening import DirectoryListener

    found = await backend.directory.search_groups(["mark"])
    assert [g.name for g in found] == ["marketing-share"]
    assert not await backend.directory.search_groups(["zzzz"])
    person = Person(directory_id=ALICE, email="alice@example.com", display_name="Alice Employee")
    listener = DirectoryListener(backend.directory)
    facts = await listener.facts(person, "I need access to the marketing share", frozenset({"group", "device"}))
    assert [(n.value, n.label, n.exact) for n in facts.names] == [
        ("marketing-share", "Marketing shared drive (marketing-share)", False)]
    assert {(d.name, d.family) for d in facts.devices} == {("ALICE-LT01", "windows"), ("Alice iPhone", "mobile")}
    typo = await listener.facts(person, "engneering", frozenset({"group"}))
    assert [n.value for n in typo.names] == ["engineering"]
