"""Every self-service action, success and failure, against both backends (demo, Graph stand-in)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.channels.console.simulate import FakeClock
from bot.core.models import Person, Role
from bot.core.ports import ActionOutcome, ActionRequest
from bot.graph.actions.runner import SelfServiceRunner
from bot.graph.factory import build_action_runner
from bot.graph.policy import ActionPolicy, PolicyError
from tests.standins.backends import Backend, RecordingContext, make_backend

ALICE = Person("0d8f8a1e-0000-4000-8000-000000000001", "alice@example.com", "Alice Employee")
BOB = Person("0d8f8a1e-0000-4000-8000-000000000002", "bob@example.com", "Bob Builder")
CAROL = Person("0d8f8a1e-0000-4000-8000-000000000003", "carol@example.com", "Carol Disabled", enabled=False)
DAVE = Person("0d8f8a1e-0000-4000-8000-000000000004", "dave@example.com", "Dave Synced")
ERIN = Person("0d8f8a1e-0000-4000-8000-000000000005", "erin@example.com", "Erin Newhire")
ADA = Person(
    "0d8f8a1e-0000-4000-8000-000000000020",
    "ada.admin@example.com",
    "Ada Admin",
    roles=frozenset({Role.EMPLOYEE, Role.ADMIN}),
)
GLASS = Person("0d8f8a1e-0000-4000-8000-000000000021", "breakglass@example.com", "Emergency Access")
TOM = Person(
    "0d8f8a1e-0000-4000-8000-000000000010",
    "tom.tech@example.com",
    "Tom Technician",
    roles=frozenset({Role.EMPLOYEE, Role.TECHNICIAN}),
)


# The injected clock these runners judge codes, grants and rate limits by (a fixed moment).
CLOCK = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


class Harness:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        policy = ActionPolicy(backend.settings.actions, backend=backend.kind, allow_unverified=True)
        self.runner = SelfServiceRunner(backend.settings, backend.directory, policy=policy, clock=CLOCK)
        self.ctx = RecordingContext()

    async def run(self, name: str, person: Person = ALICE, **args: str) -> ActionOutcome:
        return await self.runner.run(
            ActionRequest(name, person, dict(args), f"console:{person.email}"), self.ctx
        )

    def actions(self) -> list[dict[str, Any]]:
        return self.ctx.of("action")


Factory = Callable[..., Harness]


@pytest.fixture(params=["demo", "graph"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[Harness] = []

    def factory(**actions: Any) -> Harness:
        harness = Harness(make_backend(request.param, **actions))
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.backend.directory.aclose()


def only(outcome: ActionOutcome, code: str, ok: bool | None = None) -> None:
    assert outcome.code == code, (outcome.code, outcome.message, outcome.data)
    if ok is not None:
        assert outcome.ok is ok


# ----- reset_password ---------------------------------------------------------------------------


async def test_reset_password_success_shows_secret_once(make: Factory) -> None:
    h = make(verification="none")
    outcome = await h.run("reset_password")
    only(outcome, "done", ok=True)
    assert outcome.secret and len(outcome.secret) == 16
    assert outcome.secret not in outcome.message
    started, done = h.ctx.of("action_started"), h.actions()
    assert len(started) == 1 and len(done) == 1
    assert (
        done[0]["name"] == "reset_password"
        and done[0]["ok"] is True
        and done[0]["for"] == "alice@example.com"
    )
    assert done[0]["request_id"] == outcome.request_id
    if h.backend.standin:
        patch = h.backend.standin.calls("PATCH", r"^/users/[^/]+$")[-1].json()
        assert patch == {
            "passwordProfile": {"password": outcome.secret, "forceChangePasswordNextSignIn": True}
        }
        assert done[0]["request_id"]


async def test_reset_password_refused_for_protected_accounts(make: Factory) -> None:
    h = make(verification="none")
    for person in (ADA, GLASS):
        outcome = await h.run("reset_password", person)
        only(outcome, "protected", ok=False)
        assert outcome.escalate and outcome.secret is None
    assert not h.ctx.of("action_started")
    assert [a["code"] for a in h.actions()] == ["protected", "protected"]
    if h.backend.standin:
        assert not h.backend.standin.calls("PATCH", r"^/users/")


async def test_protected_group_member_refused(make: Factory) -> None:
    h = make(verification="none", protected_groups=["finance"], protect_directory_roles=False)
    only(await h.run("revoke_sessions", ALICE), "protected", ok=False)
    only(await h.run("revoke_sessions", BOB), "done", ok=True)


async def test_reset_password_refused_for_disabled_and_synced(make: Factory) -> None:
    h = make(verification="none")
    disabled = await h.run("reset_password", CAROL)
    only(disabled, "account_disabled", ok=False)
    assert disabled.escalate and disabled.data.get("security")
    synced = await h.run("reset_password", DAVE)
    only(synced, "not_cloud_account", ok=False)
    assert synced.escalate


@pytest.mark.parametrize(
    "kind,code,cause",
    [
        ("permission", "permission_missing", "permission_missing"),
        ("throttled", "unavailable", "throttled"),
        ("unavailable", "unavailable", "unavailable"),
    ],
)
async def test_reset_password_failures_escalate_with_cause(
    make: Factory, kind: str, code: str, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = make(verification="none")
    h.backend.fail("reset_password", kind)
    with caplog.at_level("DEBUG"):
        outcome = await h.run("reset_password")
    only(outcome, code, ok=False)
    assert outcome.escalate and outcome.secret is None
    assert outcome.data["cause"] == cause
    assert h.actions()[-1]["ok"] is False and h.actions()[-1]["cause"] == cause
    if kind == "permission":
        assert "User-PasswordProfile.ReadWrite.All" in outcome.data["missing"]
        assert "User-PasswordProfile.ReadWrite.All" in caplog.text  # the log names what is missing


async def test_reset_password_against_admin_without_role_is_403(make: Factory) -> None:
    # Even if policy did not protect admins, Graph refuses an app with only Helpdesk Administrator.
    h = make(verification="none", protect_directory_roles=False, protected_groups=[], protected_accounts=[])
    outcome = await h.run("reset_password", ADA)
    if h.backend.standin:
        only(outcome, "permission_missing", ok=False)
        assert outcome.escalate


async def test_dry_run_changes_nothing(make: Factory) -> None:
    h = make(verification="none", dry_run=True)
    outcome = await h.run("reset_password")
    only(outcome, "dry_run", ok=True)
    assert outcome.secret is None and "PATCH /users/{id}" in outcome.message
    assert h.actions()[-1]["dry_run"] is True
    if h.backend.standin:
        assert not h.backend.standin.calls("PATCH", r"^/users/")
    else:
        assert ("reset_password", ALICE.directory_id) not in h.backend.demo.calls


async def test_rate_limit_per_person_per_action(make: Factory) -> None:
    h = make(verification="none", rate_limit_per_hour=2)
    only(await h.run("revoke_sessions"), "done")
    only(await h.run("revoke_sessions"), "done")
    limited = await h.run("revoke_sessions")
    only(limited, "rate_limited", ok=False)
    only(await h.run("revoke_sessions", BOB), "done")  # per person
    only(await h.run("account_status"), "ok")  # per action


async def test_allowed_groups_policy(make: Factory) -> None:
    h = make(verification="none", rules={"device_actions": {"allowed_groups": ["engineering"]}})
    only(await h.run("device_actions", ALICE), "forbidden", ok=False)
    only(await h.run("device_actions", BOB), "needs_input")


async def test_disabled_action(make: Factory) -> None:
    h = make(rules={"storage_quota": {"enabled": False}})
    only(await h.run("storage_quota"), "not_enabled", ok=False)


async def test_unknown_action(make: Factory) -> None:
    h = make()
    only(await h.run("format_c_drive"), "unknown_action", ok=False)


# ----- verification -----------------------------------------------------------------------------


def _code_from(h: Harness) -> str:
    to, _, text = h.backend.sent_mail()[-1]
    assert to == "alice.personal@example.net"
    match = re.search(r"\b(\d{6})\b", text)
    assert match
    return match.group(1)


async def test_email_code_verification_then_reset(make: Factory) -> None:
    h = make(verification="email_code")
    first = await h.run("reset_password")
    only(first, "needs_input")
    assert first.input_slot == "verification_code" and "a***@example.net" in (first.prompt or "")
    assert first.secret is None and not h.actions()
    code = _code_from(h)
    assert code not in str(h.ctx.events)
    wrong = await h.run("reset_password", verification_code="000000" if code != "000000" else "111111")
    only(wrong, "needs_input")
    done = await h.run("reset_password", verification_code=code)
    only(done, "done", ok=True)
    assert done.secret
    # One verification, one change.
    again = await h.run("reset_password", verification_code=code)
    only(again, "needs_input")


async def test_email_code_too_many_wrong_attempts(make: Factory) -> None:
    h = make(verification="email_code", code_max_attempts=2)
    await h.run("mfa_reset")
    code = _code_from(h)
    bad = "999999" if code != "999999" else "888888"
    only(await h.run("mfa_reset", verification_code=bad), "needs_input")
    locked = await h.run("mfa_reset", verification_code=bad)
    only(locked, "verification_failed", ok=False)
    assert locked.escalate and locked.data.get("security")


async def test_email_code_without_alternate_email_escalates(make: Factory) -> None:
    h = make(verification="email_code")
    outcome = await h.run("revoke_sessions", ERIN)
    only(outcome, "no_verification_method", ok=False)
    assert outcome.escalate


async def test_technician_approval_verification(make: Factory) -> None:
    h = make(verification="technician_approval")
    pending = await h.run("revoke_sessions")
    only(pending, "pending_approval", ok=True)
    assert {n.email for n in h.ctx.notices} == {
        "tom.tech@example.com",
        "tina.tech@example.com",
        "theo.tech@example.com",
    }
    value = h.ctx.notices[0].buttons[0].value
    assert value.startswith("approval:approve:ver-")
    only(await h.run("revoke_sessions"), "pending_approval")
    decided = await h.runner.approvals.handle_approval(value, TOM, h.ctx, session=None)  # type: ignore[arg-type]
    only(decided, "approved", ok=True)
    assert h.ctx.notices[-1].email == "alice@example.com"
    only(await h.run("revoke_sessions"), "done", ok=True)


@pytest.mark.parametrize("mode", ["email_code", "technician_approval"])
async def test_synced_account_refused_before_any_identity_check(make: Factory, mode: str) -> None:
    """The refusal is known up front: no code mailed and no technician asked for nothing."""
    h = make(verification=mode)
    outcome = await h.run("reset_password", DAVE)
    only(outcome, "not_cloud_account", ok=False)
    assert outcome.escalate
    assert h.backend.sent_mail() == [] and h.ctx.notices == []
    assert not h.ctx.of("verification_requested") and not h.ctx.of("verification_sent")


async def test_technicians_are_asked_about_the_employee_in_the_third_person(make: Factory) -> None:
    h = make(verification="technician_approval")
    await h.run("mfa_reset", BOB, remove_method="keep")
    text = h.ctx.notices[0].text
    assert "Bob Builder (bob@example.com) asked the help desk bot to issue them a Temporary Access Pass" in text
    assert "your" not in text.lower().split("asked", 1)[1]


async def test_refused_or_expired_approval_is_not_asked_again(make: Factory) -> None:
    """The waiting conversation carries on with the decision; nobody is pinged a second time."""
    h = make(verification="technician_approval")
    pending = await h.run("reset_password", BOB)
    only(pending, "pending_approval", ok=True)
    check = str(pending.data["verification_id"])
    deny = h.ctx.notices[1].buttons[1].value
    only(await h.runner.approvals.handle_approval(deny, TOM, h.ctx, session=None), "denied")  # type: ignore[arg-type]
    asked = len(h.ctx.notices)
    refused = await h.run("reset_password", BOB, approval_id=check)
    only(refused, "verification_denied", ok=False)
    assert refused.escalate and refused.secret is None
    expired = await h.run("reset_password", BOB, approval_id="ver-0000000000000000")
    only(expired, "approval_expired", ok=False)
    assert len(h.ctx.notices) == asked


async def test_technician_approval_needs_a_technician(make: Factory) -> None:
    h = make(verification="technician_approval")
    await h.run("revoke_sessions")
    value = h.ctx.notices[0].buttons[1].value.replace("deny", "approve")
    only(await h.runner.approvals.handle_approval(value, BOB, h.ctx, session=None), "forbidden")  # type: ignore[arg-type]


def test_verification_none_refused_with_graph() -> None:
    backend = make_backend("graph", verification="none")
    with pytest.raises(PolicyError):
        build_action_runner(backend.settings, backend.directory, clock=CLOCK)


# ----- account_status ---------------------------------------------------------------------------


async def test_account_status_enabled(make: Factory) -> None:
    h = make()
    outcome = await h.run("account_status")
    only(outcome, "ok", ok=True)
    assert outcome.data["enabled"] is True and outcome.data["sign_in_ready"] is True
    assert outcome.data["last_password_change"].startswith("2026-09-01")
    assert len(outcome.data["licenses"]) == 1


async def test_account_status_disabled_is_escalated_never_enabled(make: Factory) -> None:
    h = make()
    outcome = await h.run("account_status", CAROL)
    only(outcome, "account_disabled")
    assert outcome.escalate and outcome.data["security"] is True
    if h.backend.standin:
        assert not [r for r in h.backend.standin.requests if r.method == "PATCH"]
        # the user and licence reads went through one $batch
        assert h.backend.standin.calls("POST", r"^/\$batch$")


async def test_account_status_without_licence(make: Factory) -> None:
    h = make()
    outcome = await h.run("account_status", ERIN)
    only(outcome, "no_license", ok=True)
    assert outcome.data["sign_in_ready"] is False


# ----- revoke_sessions --------------------------------------------------------------------------


async def test_revoke_sessions(make: Factory) -> None:
    h = make(verification="none")
    outcome = await h.run("revoke_sessions")
    only(outcome, "done", ok=True)
    assert outcome.request_id


async def test_graph_500_is_an_error_from_microsoft_365_not_unreachable(make: Factory) -> None:
    h = make(verification="none")
    h.backend.fail("revoke_sessions", "server_error")
    outcome = await h.run("revoke_sessions")
    only(outcome, "unavailable", ok=False)
    assert "answered with an error" in outcome.message and "can't reach" not in outcome.message
    assert outcome.data["status"] == 500


def test_unreachable_graph_is_said_to_be_unreachable() -> None:
    from bot.graph.directory import Unavailable

    runner = Harness(make_backend("demo")).runner
    outcome = runner.failure(Unavailable("op: Graph unreachable (ConnectError)", operation="op"), "revoke_sessions")
    assert "can't reach Microsoft 365" in outcome.message


async def test_revoke_sessions_unavailable(make: Factory) -> None:
    h = make(verification="none")
    h.backend.fail("revoke_sessions", "unavailable")
    outcome = await h.run("revoke_sessions")
    only(outcome, "unavailable", ok=False)
    assert outcome.escalate


# ----- mfa_reset --------------------------------------------------------------------------------


async def test_mfa_reset_offers_removal_then_issues_tap(make: Factory) -> None:
    h = make(verification="none")
    ask = await h.run("mfa_reset")
    only(ask, "needs_input")
    assert ask.input_slot == "remove_method"
    values = [c.value for c in ask.choices]
    assert "keep" in values and any(v.startswith("phone:") for v in values)
    phone = next(v for v in values if v.startswith("phone:"))
    outcome = await h.run("mfa_reset", remove_method=phone)
    only(outcome, "done", ok=True)
    assert outcome.secret and outcome.data["removed"] is True and outcome.data["lifetime_minutes"] == 60
    remaining = await h.backend.directory.auth_methods(ALICE.directory_id)
    assert [m.kind for m in remaining] == ["authenticator"]
    if h.backend.standin:
        tap_call = h.backend.standin.calls("POST", r"/temporaryAccessPassMethods$")[-1].json()
        assert tap_call == {"lifetimeInMinutes": 60, "isUsableOnce": True}


async def test_mfa_reset_keep_methods(make: Factory) -> None:
    h = make(verification="none")
    outcome = await h.run("mfa_reset", remove_method="keep")
    only(outcome, "done", ok=True)
    assert outcome.data["removed"] is None
    assert len(await h.backend.directory.auth_methods(ALICE.directory_id)) == 2


async def test_mfa_reset_removal_failure_still_gives_tap(make: Factory) -> None:
    h = make(verification="none")
    ask = await h.run("mfa_reset")
    phone = next(c.value for c in ask.choices if c.value.startswith("phone:"))
    h.backend.fail("remove_auth_method", "permission")
    outcome = await h.run("mfa_reset", remove_method=phone)
    only(outcome, "done", ok=True)
    assert outcome.secret and outcome.data["removed"] is False and outcome.escalate


async def test_mfa_reset_tap_permission_missing(make: Factory) -> None:
    h = make(verification="none")
    h.backend.fail("create_tap", "permission")
    outcome = await h.run("mfa_reset", remove_method="keep")
    only(outcome, "permission_missing", ok=False)
    assert outcome.secret is None and "TAP" in outcome.data["missing"]


# ----- request_group_access ---------------------------------------------------------------------


async def test_group_access_asks_which_group(make: Factory) -> None:
    h = make()
    ask = await h.run("request_group_access")
    only(ask, "needs_input")
    assert {c.value for c in ask.choices} == {"marketing-share", "engineering"}


async def test_group_access_requests_owner_approval(make: Factory) -> None:
    h = make()
    outcome = await h.run("request_group_access", group="marketing-share")
    only(outcome, "pending_approval", ok=True)
    [notice] = h.ctx.notices
    assert notice.email == "bob@example.com"
    assert [b.label for b in notice.buttons] == ["Approve", "Deny"]
    assert notice.buttons[0].value == f"approval:approve:{outcome.data['access_request_id']}"
    [requested] = h.ctx.of("access_requested")
    assert requested["group_name"] == "marketing-share" and requested["for"] == "alice@example.com"


async def test_group_access_not_on_allowlist(make: Factory) -> None:
    h = make()
    for group in ("finance", "it-admins", "no-such-group"):
        outcome = await h.run("request_group_access", BOB, group=group)
        only(outcome, "not_allowed", ok=False)
    assert not h.ctx.notices


async def test_group_access_already_member(make: Factory) -> None:
    h = make()
    only(await h.run("request_group_access", BOB, group="engineering"), "already_member", ok=True)


async def test_group_access_owner_cannot_approve_self_and_configured_approver(make: Factory) -> None:
    h = make(
        group_access_allowlist=["marketing-share", "orphan-share"],
        group_access_approvers={"orphan-share": ["tina.tech@example.com"]},
    )
    # Bob owns marketing-share: nobody else can approve his own request.
    only(await h.run("request_group_access", BOB, group="marketing-share"), "no_approver", ok=False)
    outcome = await h.run("request_group_access", ALICE, group="orphan-share")
    only(outcome, "pending_approval")
    assert h.ctx.notices[-1].email == "tina.tech@example.com"


# ----- device_actions ---------------------------------------------------------------------------


async def test_device_sync_flow(make: Factory) -> None:
    h = make()
    ask = await h.run("device_actions")
    only(ask, "needs_input")
    assert ask.input_slot == "device" and [c.value for c in ask.choices] == [
        "dev-alice-laptop",
        "dev-alice-phone",
    ]
    ask2 = await h.run("device_actions", device="dev-alice-laptop")
    only(ask2, "needs_input")
    assert ask2.input_slot == "command"
    done = await h.run("device_actions", device="dev-alice-laptop", command="sync")
    only(done, "done", ok=True)
    if h.backend.standin:
        assert h.backend.standin.calls(
            "POST", r"^/deviceManagement/managedDevices/dev-alice-laptop/syncDevice$"
        )


async def test_device_restart_needs_confirmation(make: Factory) -> None:
    h = make()
    ask = await h.run("device_actions", device="dev-alice-laptop", command="restart")
    only(ask, "needs_input")
    assert ask.input_slot == "confirm"
    only(
        await h.run("device_actions", device="dev-alice-laptop", command="restart", confirm="no"), "cancelled"
    )
    only(await h.run("device_actions", device="dev-alice-laptop", command="restart", confirm="yes"), "done")
    if h.backend.standin:
        assert len(h.backend.standin.calls("POST", r"/rebootNow$")) == 1


async def test_device_of_someone_else_is_not_offered(make: Factory) -> None:
    h = make()
    outcome = await h.run("device_actions", device="dev-bob-mac", command="restart", confirm="yes")
    only(outcome, "needs_input")
    assert outcome.input_slot == "device"
    if h.backend.standin:
        assert not h.backend.standin.calls("POST", r"/rebootNow$")


async def test_device_kind_narrows_the_choice_and_picks_the_only_one(make: Factory) -> None:
    h = make()
    # Alice has a Windows laptop and an iPhone: "my Windows laptop" needs no "Which device?".
    done = await h.run("device_actions", command="sync", os="windows")
    only(done, "done", ok=True)
    assert done.data["device"] == "ALICE-LT01"
    phone = await h.run("device_actions", command="sync", os="mobile")
    only(phone, "done", ok=True)
    assert phone.data["device"] == "Alice iPhone"
    # A restart still asks first, naming the device it picked.
    ask = await h.run("device_actions", command="restart", os="windows")
    only(ask, "needs_input")
    assert ask.input_slot == "confirm" and "ALICE-LT01" in (ask.prompt or "")
    # Bob said Windows but owns a Mac: offer what he has rather than nothing.
    bob = await h.run("device_actions", BOB, command="sync", os="windows")
    only(bob, "needs_input")
    assert [c.value for c in bob.choices] == ["dev-bob-mac"]
    if h.backend.standin:
        assert h.backend.standin.calls("POST", r"^/deviceManagement/managedDevices/dev-alice-laptop/syncDevice$")
        assert h.backend.standin.calls("POST", r"^/deviceManagement/managedDevices/dev-alice-phone/syncDevice$")


async def test_device_none_and_list(make: Factory) -> None:
    h = make()
    only(await h.run("device_actions", ERIN), "no_devices", ok=False)
    listed = await h.run("device_actions", command="list")
    only(listed, "listed", ok=True)
    assert len(listed.data["devices"]) == 2


async def test_device_command_throttled(make: Factory) -> None:
    h = make()
    h.backend.fail("device_command", "throttled")
    outcome = await h.run("device_actions", device="dev-alice-laptop", command="sync")
    only(outcome, "unavailable", ok=False)
    assert outcome.escalate and outcome.data["cause"] == "throttled"


# ----- set_out_of_office ------------------------------------------------------------------------


async def test_out_of_office_escapes_html(make: Factory) -> None:
    h = make()
    ask = await h.run("set_out_of_office")
    only(ask, "needs_input")
    assert ask.input_slot == "message"
    text = "Away <script>alert(1)</script> & back Monday\nCall Bob"
    done = await h.run("set_out_of_office", message=text, start="2026-10-01T08:00:00Z", end="2026-10-06")
    only(done, "done", ok=True)
    replies = await h.backend.directory.automatic_replies(ALICE.directory_id)
    assert replies.status == "scheduled"
    assert "<script>" not in replies.internal_html
    assert replies.internal_html == "Away &lt;script&gt;alert(1)&lt;/script&gt; &amp; back Monday<br>Call Bob"
    if h.backend.standin:
        body = h.backend.standin.calls("PATCH", r"/mailboxSettings$")[-1].json()["automaticRepliesSetting"]
        assert body["scheduledStartDateTime"] == {"dateTime": "2026-10-01T08:00:00", "timeZone": "UTC"}
        assert body["status"] == "scheduled"


async def test_out_of_office_off_and_bad_dates(make: Factory) -> None:
    h = make()
    only(
        await h.run("set_out_of_office", message="Away", start="2026-10-05", end="2026-10-01"), "needs_input"
    )
    only(await h.run("set_out_of_office", message="Away", end="next tuesday"), "needs_input")
    only(await h.run("set_out_of_office", status="off"), "done")
    assert (await h.backend.directory.automatic_replies(ALICE.directory_id)).status == "disabled"


async def test_out_of_office_permission_missing(make: Factory) -> None:
    h = make()
    h.backend.fail("set_automatic_replies", "permission")
    outcome = await h.run("set_out_of_office", message="Away")
    only(outcome, "permission_missing", ok=False)
    assert outcome.data["missing"].startswith("MailboxSettings.ReadWrite")


# ----- storage_quota ----------------------------------------------------------------------------


async def test_storage_quota_nearly_full_gives_advice(make: Factory) -> None:
    h = make()
    outcome = await h.run("storage_quota")
    only(outcome, "nearly_full", ok=True)
    assert outcome.data["mailbox"]["percent"] == pytest.approx(90.0, abs=0.5)
    assert "Deleted Items" in outcome.message
    if h.backend.standin:
        assert h.backend.standin.downloads_with_auth == 0  # no token sent to the download URL


async def test_storage_quota_ok_and_unknown(make: Factory) -> None:
    h = make()
    only(await h.run("storage_quota", BOB), "ok", ok=True)
    only(await h.run("storage_quota", ERIN), "unknown", ok=False)


async def test_storage_quota_partial_when_report_denied(make: Factory) -> None:
    h = make()
    h.backend.fail("mailbox_usage", "permission")
    outcome = await h.run("storage_quota", BOB)
    only(outcome, "mailbox_unknown", ok=True)
    assert "onedrive" in outcome.data and "mailbox" not in outcome.data
    assert "plenty of room" not in outcome.message and "can't see your mailbox size" in outcome.message


async def test_storage_quota_with_concealed_report_names_never_says_plenty_of_room() -> None:
    """Microsoft 365 conceals user names in usage reports by default: the alice's 90%-full mailbox
    can't be matched, so the bot says it can't see it rather than judging from OneDrive alone."""
    backend = make_backend("graph")
    assert backend.standin is not None
    backend.standin.conceal_report_names = True
    h = Harness(backend)
    try:
        outcome = await h.run("storage_quota", ALICE)
    finally:
        await backend.directory.aclose()
    assert outcome.code in ("mailbox_unknown", "nearly_full")
    assert "plenty of room" not in outcome.message and "mailbox" not in outcome.data
    assert "can't see your mailbox size" in outcome.message


async def test_storage_quota_protected_account_may_read(make: Factory) -> None:
    h = make()
    only(await h.run("storage_quota", ADA), "ok", ok=True)  # read-only: nothing is touched
