"""The self-service actions and the `ActionRunner` that guards them.

Every run goes through the same gate, in this order: the person's account exists and is enabled;
the action is enabled and the person may run it; the account is not protected (for actions that
change something); identity is verified for the sensitive actions; the rate limit allows it. Then
the action emits `action_started`, calls the directory, and the runner emits `action` with the
result (name, ok, for, code, request_id). Failures become a plain message, `escalate=True` and
the collected facts for the ticket; the log names the cause.

The secret (temporary password, Temporary Access Pass) is returned only in `ActionOutcome.secret`:
never in a message, event, log line or exception.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.models import Button, Person
from bot.core.ports import ActionContext, ActionOutcome, ActionRequest, SharedState
from bot.graph.directory import (
    Audience,
    AutoReplies,
    Directory,
    DirectoryError,
    DirectoryUser,
    Memberships,
    NotConfigured,
    StorageUsage,
)
from bot.graph.passwords import generate_password
from bot.graph.policy import ACTION_NAMES, MUTATING, ActionPolicy, RateLimiter
from bot.graph.verification import MemoryState, VerificationStore
from bot.settings import Settings

log = logging.getLogger(__name__)

# How much of a requester's typed reason an approver is shown (the notice stays readable).
REASON_LIMIT = 500

DESCRIPTIONS: dict[str, str] = {
    "reset_password": "reset your password",
    "account_status": "check your account",
    "revoke_sessions": "sign you out of every session",
    "mfa_reset": "issue a Temporary Access Pass to register a new phone",
    "request_group_access": "request access to a group",
    "device_actions": "sync or restart one of your devices",
    "set_out_of_office": "set your automatic replies",
    "storage_quota": "check your mailbox and OneDrive storage",
}
# The same, said of the person to someone else (the technicians confirming their identity).
THIRD_PERSON: dict[str, str] = {
    "reset_password": "reset their password",
    "account_status": "check their account",
    "revoke_sessions": "sign them out of every session",
    "mfa_reset": "issue them a Temporary Access Pass to register a new phone",
    "request_group_access": "request access to a group",
    "device_actions": "sync or restart one of their devices",
    "set_out_of_office": "set their automatic replies",
    "storage_quota": "check their mailbox and OneDrive storage",
}
# Statuses that end a conversation step; `needs_input` does not and is not audited as an action.
NOT_TERMINAL = frozenset({"needs_input"})
AUTO_REPLY_MAX = 4000


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def os_family(operating_system: str) -> str:
    """`windows`, `mac`, `mobile` or `other` for an Intune device's operatingSystem
    ("Windows", "macOS", "iOS", "iPadOS", "Android", "AndroidForWork"...)."""
    name = operating_system.casefold()
    if "windows" in name:
        return "windows"
    if "mac" in name or "os x" in name:
        return "mac"
    if name.startswith(("ios", "ipados", "android")):
        return "mobile"
    return "other"


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(moment: datetime, *, end: bool = False) -> str:
    """A schedule boundary as people say it: a whole day is "27 Nov" (an end at midnight is the end
    of the day before), anything else "27 Nov 14:30 UTC"."""
    if moment.hour == moment.minute == moment.second == 0:
        return f"the end of {moment - timedelta(days=1):%d %b %Y}" if end else f"{moment:%d %b %Y}"
    return f"{moment:%d %b %Y %H:%M} UTC"


class _Stop(Exception):
    def __init__(self, outcome: ActionOutcome) -> None:
        super().__init__(outcome.code)
        self.outcome = outcome


@dataclass(slots=True)
class Run:
    """One execution of an action: the request, the person's directory facts, and the helpers
    that keep auditing uniform."""

    runner: SelfServiceRunner
    request: ActionRequest
    ctx: ActionContext
    user: DirectoryUser
    memberships: Memberships
    dry: bool
    details: dict[str, Any] = field(default_factory=dict)
    started: bool = False

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def state(self) -> SharedState:
        return self.runner.state_of(self.ctx)

    @property
    def args(self) -> Mapping[str, str]:
        return self.request.args

    def arg(self, key: str) -> str:
        return str(self.request.args.get(key) or "").strip()

    async def begin(self, **details: Any) -> None:
        """Before the action's main directory call: the rate limit, then `action_started`."""
        self.details.update(details)
        if self.started:
            return
        policy = self.runner.policy
        limit = policy.rate_limit(self.name)
        if not await self.runner.limiter.allow(self.state, self.user.id, self.name, limit):
            retry = await self.runner.limiter.retry_after(self.state, self.user.id, self.name)
            minutes = max(1, int(retry // 60) + 1)
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="rate_limited",
                    message=(
                        f"You've asked for this {limit} times in the last hour, which is my limit. "
                        f"Please try again in about {minutes} minutes, or ask for a technician."
                    ),
                    data={"limit_per_hour": limit},
                )
            )
        self.started = True
        self.ctx.emit("action_started", **self.runner.audit(self, {}))

    async def would(self, call: str) -> ActionOutcome:
        """Dry run: say and log what would have been called, change nothing."""
        await self.begin()
        log.info("dry run: %s for %s would call %s", self.name, self.user.id, call)
        return ActionOutcome(
            ok=True,
            code="dry_run",
            message=f"Dry run: nothing was changed. I would have called {call}.",
            data={"dry_run": True, "would_call": call},
        )


Handler = Callable[[Run], Awaitable[ActionOutcome]]


class SelfServiceRunner:
    """`ActionRunner` for the eight self-service actions, against any `Directory`."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        *,
        policy: ActionPolicy | None = None,
        limiter: RateLimiter | None = None,
        verification: VerificationStore | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        # The app's injected clock: access-request expiry and password ages are judged by the same
        # clock as the periodic expiry job (simulate's fake clock, tests' fixed one).
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.settings = settings
        self.directory = directory
        self.actions = settings.actions
        self.policy = policy or ActionPolicy(settings.actions, backend=directory.backend)
        self.limiter = limiter or RateLimiter()
        # Where verification and rate-limit state lives when the context brings none (a context
        # from the core brings the shared_state table, in the turn's transaction).
        self._local_state = MemoryState()
        self.verification = verification or VerificationStore(
            code_ttl_seconds=settings.actions.code_ttl_minutes * 60,
            max_attempts=settings.actions.code_max_attempts,
            grant_seconds=settings.actions.verified_minutes * 60,
            approval_ttl_seconds=settings.actions.request_expiry_hours * 3600,
        )
        self._handlers: dict[str, Handler] = {
            "reset_password": self._reset_password,
            "account_status": self._account_status,
            "revoke_sessions": self._revoke_sessions,
            "mfa_reset": self._mfa_reset,
            "request_group_access": self._request_group_access,
            "device_actions": self._device_actions,
            "set_out_of_office": self._set_out_of_office,
            "storage_quota": self._storage_quota,
        }
        from bot.graph.approvals import ApprovalDesk  # circular: the desk runs directory calls too

        self.approvals = ApprovalDesk(self)

    def names(self) -> frozenset[str]:
        return ACTION_NAMES

    async def aclose(self) -> None:
        await self.directory.aclose()

    # ----- the gate -----

    async def run(self, request: ActionRequest, ctx: ActionContext) -> ActionOutcome:
        handler = self._handlers.get(request.name)
        if handler is None:
            return ActionOutcome(
                ok=False,
                code="unknown_action",
                escalate=True,
                message="I don't know how to do that myself; a technician can help.",
            )
        run: Run | None = None
        try:
            run = await self._admit(request, ctx)
            outcome = await handler(run)
        except _Stop as stop:
            outcome = stop.outcome
        except DirectoryError as exc:
            outcome = self.failure(exc, request.name)
        except Exception:
            log.exception("action %s failed unexpectedly", request.name)
            outcome = ActionOutcome(
                ok=False,
                code="failed",
                escalate=True,
                message="Something went wrong on my side. I'll pass this to a technician with the details.",
                data={"cause": "internal_error"},
            )
        if outcome.code not in NOT_TERMINAL:
            await self._finish(request, run, ctx, outcome)
        return outcome

    async def _admit(self, request: ActionRequest, ctx: ActionContext) -> Run:
        person = request.person
        name = request.name
        user = await self.directory.get_user(person.directory_id)
        if user is None:
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="not_found",
                    escalate=True,
                    message="I can't find your account in the directory, so I'll pass this to a technician.",
                )
            )
        if not user.enabled and name != "account_status":
            log.warning("action %s refused: account %s is disabled", name, user.id)
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="account_disabled",
                    escalate=True,
                    message=(
                        "Your account is disabled. That can be a security measure, so I won't change "
                        "anything; "
                        "I'm passing this to the IT team."
                    ),
                    data={"security": True},
                )
            )
        if not self.policy.enabled(name):
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="not_enabled",
                    message="That isn't something I do here; I can open a ticket for a technician instead.",
                )
            )
        memberships = await self.directory.memberships(user.id)
        if not self.policy.may_run(name, memberships):
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="forbidden",
                    message="You're not allowed to do that through the help desk bot. A technician can help.",
                )
            )
        if name in MUTATING:
            protection = self.policy.protection(user, memberships)
            if protection is not None:
                log.warning("action %s refused: %s is protected (%s)", name, user.id, protection.detail)
                raise _Stop(
                    ActionOutcome(
                        ok=False,
                        code="protected",
                        escalate=True,
                        message=(
                            "Your account is protected (privileged or emergency access), so I never "
                            "change it "
                            "myself. I'm passing this to a technician."
                        ),
                        data={"protection": protection.reason},
                    )
                )
        if name == "reset_password" and user.on_premises_sync:
            # Known up front, so refused before any identity check: no code mailed and no
            # technician asked to confirm someone for a change that cannot be made.
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="not_cloud_account",
                    escalate=True,
                    message="Your password is managed by the on-premises directory, so I can't reset it from "
                    "here. I'm passing this to a technician.",
                )
            )
        dry = request.dry_run or self.policy.dry_run
        run = Run(self, request, ctx, user, memberships, dry)
        mode = self.policy.verification_for(name)
        if mode != "none" and not await self.verification.has_grant(run.state, user.id, name):
            if mode == "email_code":
                await self._verify_by_code(run)
            else:
                await self._verify_by_technician(run)
        return run

    def state_of(self, ctx: ActionContext) -> SharedState:
        """The context's shared state (every replica's), or this process's when it has none."""
        state = getattr(ctx, "state", None)
        return state if state is not None else self._local_state

    async def _finish(
        self, request: ActionRequest, run: Run | None, ctx: ActionContext, outcome: ActionOutcome
    ) -> None:
        sensitive = request.name in self.policy.settings.sensitive
        if run is not None and outcome.ok and sensitive and outcome.code != "pending_approval":
            # One verification, one change: asking again means verifying again.
            await self.verification.consume_grant(run.state, run.user.id, request.name)
        data = {
            "name": request.name,
            "ok": outcome.ok,
            "for": request.person.email,
            "by": request.person.email,
            "code": outcome.code,
            "request_id": outcome.request_id,
        }
        if run is not None:
            data.update(self.audit(run, {}))
            data["ok"], data["code"], data["request_id"] = outcome.ok, outcome.code, outcome.request_id
        if outcome.escalate:
            data["escalate"] = True
        for key in ("cause", "graph_code", "missing"):
            if key in outcome.data:
                data[key] = outcome.data[key]
        ctx.emit("action", **data)

    def audit(self, run: Run, extra: Mapping[str, Any]) -> dict[str, Any]:
        """Event fields for a run: who, which action, for whom, plus non-secret details."""
        data: dict[str, Any] = {
            "name": run.name,
            "for": run.request.person.email,
            "by": run.request.person.email,
            "directory_id": run.user.id,
            "conversation_key": run.request.conversation_key,
            "dry_run": run.dry,
        }
        data.update(run.details)
        data.update(extra)
        return data

    # ----- failures -----

    def failure(self, exc: DirectoryError, action: str) -> ActionOutcome:
        """A directory failure as a plain message, an escalation and the facts for the ticket."""
        missing = getattr(exc, "required", "") or ""
        log.error(
            "action %s: %s (%s) operation=%s graph_code=%s status=%s request_id=%s%s",
            action,
            exc.cause,
            exc.detail,
            exc.operation,
            exc.code,
            exc.status,
            exc.request_id,
            f" missing={missing}" if missing else "",
        )
        if exc.cause == "unavailable" and exc.status:
            # Microsoft 365 answered (a 5xx): an error from it, not "can't reach".
            exc_message = ("Microsoft 365 answered with an error, so I couldn't finish. "
                           "I'm passing it to a technician with the details.")
        else:
            exc_message = ""
        messages = {
            "permission_missing": (
                "The help desk bot isn't allowed to do that in our directory yet, so I couldn't finish. "
                "I'm passing it to a technician with the details."
            ),
            "throttled": (
                "Microsoft 365 is too busy to answer right now, so I couldn't finish. "
                "I'm passing it to a technician so you don't have to wait on me."
            ),
            "unavailable": (
                "I can't reach Microsoft 365 right now, so I couldn't finish. "
                "I'm passing it to a technician with the details."
            ),
            "token_failure": (
                "I can't sign in to our directory right now, so I couldn't finish. "
                "I'm passing it to a technician with the details."
            ),
            "not_configured": ("That isn't set up on the help desk bot yet. I'm passing it to a technician."),
            "not_found": ("I couldn't find what I needed in the directory. I'm passing it to a technician."),
        }
        code = {
            "permission_missing": "permission_missing",
            "throttled": "unavailable",
            "unavailable": "unavailable",
            "token_failure": "unavailable",
            "not_configured": "unavailable",
            "not_found": "not_found",
        }.get(exc.cause, "failed")
        data: dict[str, Any] = {"cause": exc.cause, "operation": exc.operation}
        if exc.code:
            data["graph_code"] = exc.code
        if exc.status:
            data["status"] = exc.status
        if missing:
            data["missing"] = missing
        return ActionOutcome(
            ok=False,
            code=code,
            message=exc_message or messages.get(
                exc.cause, "The directory refused the change. I'm passing it to a technician."
            ),
            data=data,
            escalate=True,
            request_id=exc.request_id,
        )

    # ----- identity verification -----

    async def _verify_by_code(self, run: Run) -> None:
        """Returns when verified; otherwise stops the run with the next question or a refusal."""
        user, name = run.user, run.name
        typed = run.arg("verification_code")
        if typed:
            result = await self.verification.check_code(run.state, user.id, name, typed)
            if result == "ok":
                await self.verification.grant(run.state, user.id, name)
                run.ctx.emit(
                    "verification",
                    name=name,
                    ok=True,
                    method="email_code",
                    **{"for": run.request.person.email},
                )
                return
            if result == "wrong":
                left = await self.verification.attempts_left(run.state, user.id, name)
                raise _Stop(
                    ActionOutcome(
                        ok=False,
                        code="needs_input",
                        input_slot="verification_code",
                        prompt=f"That code doesn't match. Please check the email and type the 6 digits "
                        f"({left} "
                        f"{'try' if left == 1 else 'tries'} left).",
                    )
                )
            if result == "locked":
                run.ctx.emit(
                    "verification",
                    name=name,
                    ok=False,
                    method="email_code",
                    reason="too_many_attempts",
                    **{"for": run.request.person.email},
                )
                log.warning("verification for %s on %s failed: too many wrong codes", user.id, name)
                raise _Stop(
                    ActionOutcome(
                        ok=False,
                        code="verification_failed",
                        escalate=True,
                        message="That code was wrong too many times, so I've stopped. A technician will "
                        "check "
                        "with you that everything is all right.",
                        data={"security": True},
                    )
                )
            # expired or unknown: send a fresh one below
        alternate = await self.directory.alternate_email(user.id)
        if not alternate:
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="no_verification_method",
                    escalate=True,
                    message="There's no personal email registered on your account, so I can't check it's you "
                    "myself. I'll pass this to a technician, who will verify you another way.",
                )
            )
        sender = self.settings.graph.mail_sender or (
            "helpdesk@example.com" if self.directory.backend == "demo" else ""
        )
        if not sender:
            raise NotConfigured(
                "verification mail sender (graph.mail_sender) is not set", operation="send_mail"
            )
        if not await self.limiter.allow(run.state, user.id, f"verify:{name}", self.actions.code_max_attempts + 2):
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="rate_limited",
                    message="I've sent several codes already this hour. Please try later or ask for a "
                    "technician.",
                )
            )
        code = await self.verification.issue_code(run.state, user.id, name)
        minutes = self.actions.code_ttl_minutes
        await self.directory.send_mail(
            sender,
            alternate,
            "Your help desk verification code",
            f"Your help desk verification code is {code}. It expires in {minutes} minutes.\n\n"
            f"You asked the help desk bot to {DESCRIPTIONS[name]}. If that wasn't you, do not share "
            f"this code and tell IT security.",
        )
        run.ctx.emit(
            "verification_sent",
            name=name,
            method="email_code",
            to=mask_email(alternate),
            **{"for": run.request.person.email},
        )
        again = "That code has expired, so " if typed else ""
        raise _Stop(
            ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="verification_code",
                prompt=f"{again}To make sure it's you, I've emailed a 6-digit code to "
                f"{mask_email(alternate)}. "
                f"Please type it here. It expires in {minutes} minutes.",
                data={"sent_to": mask_email(alternate)},
            )
        )

    async def _verify_by_technician(self, run: Run) -> None:
        user, name, person = run.user, run.name, run.request.person
        waiting = await self.verification.pending_for(run.state, user.id, name)
        if waiting is not None:
            raise _Stop(
                ActionOutcome(
                    ok=True,
                    code="pending_approval",
                    message="I'm still waiting for a technician to confirm it's you. I'll tell you here as "
                    "soon as they answer (or say cancel to stop).",
                    data={"verification_id": waiting.id},
                )
            )
        asked = run.arg("approval_id")
        if asked.startswith("ver-"):
            # The conversation was waiting for this check and there is no grant: refused or expired.
            decision = await self.verification.decision(run.state, asked)
            what = DESCRIPTIONS[name]
            if decision == "denied":
                raise _Stop(
                    ActionOutcome(
                        ok=False,
                        code="verification_denied",
                        escalate=True,
                        message=f"A technician couldn't confirm it's you, so I haven't done anything "
                        f"(I won't {what}). I'm passing this to the IT team so someone can help you "
                        f"another way.",
                        data={"security": True},
                    )
                )
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="approval_expired",
                    escalate=True,
                    message="No technician confirmed it's you in time, so nothing was changed. I'm passing "
                    "this to a technician so you don't have to ask again.",
                )
            )
        technicians = [t for t in self.settings.roles.technicians if t.casefold() != person.email.casefold()]
        if not technicians:
            raise _Stop(
                ActionOutcome(
                    ok=False,
                    code="no_approver",
                    escalate=True,
                    message="No technician is set up to confirm your identity, so I'll open a ticket "
                    "instead.",
                )
            )
        reply_to = getattr(run.ctx, "reply_to", None)
        pending = await self.verification.open_request(
            run.state, user.id, person.email, person.display_name, name,
            reply_to=reply_to.to_json() if reply_to is not None else None,
        )
        run.ctx.emit(
            "verification_requested",
            verification_id=pending.id,
            name=name,
            method="technician_approval",
            **{"for": person.email},
        )
        text = (
            f"{person.display_name} ({person.email}) asked the help desk bot to {THIRD_PERSON[name]}. "
            f"Please confirm it's really them (for example, call them on a number on file) before approving."
        )
        buttons = (
            Button("Approve", f"approval:approve:{pending.id}", "primary"),
            Button("Deny", f"approval:deny:{pending.id}", "danger"),
        )
        for email in technicians:
            await run.ctx.notify(email, text, buttons)
        raise _Stop(
            ActionOutcome(
                ok=True,
                code="pending_approval",
                message="For your safety a technician has to confirm it's you first. I've asked them and "
                "nothing has been changed yet. I'll tell you here as soon as they answer, and then carry on.",
                data={"verification_id": pending.id},
            )
        )

    # ----- the actions -----

    async def _reset_password(self, run: Run) -> ActionOutcome:
        # An on-premises synced account is refused in `_admit`, before any identity check.
        if run.dry:
            return await run.would("PATCH /users/{id} passwordProfile (forceChangePasswordNextSignIn)")
        await run.begin()
        password = generate_password(self.actions.password_length)
        receipt = await self.directory.reset_password(run.user.id, password, force_change=True)
        return ActionOutcome(
            ok=True,
            code="done",
            secret=password,
            request_id=receipt.request_id,
            message="Here is your temporary password. Only you can see it and it won't be shown again. "
            "You'll be asked to choose a new one when you sign in.",
            data={"force_change": True},
        )

    async def _account_status(self, run: Run) -> ActionOutcome:
        await run.begin()
        details = await self.directory.account_details(run.user.id)
        user = details.user
        now = self.clock()
        changed = user.last_password_change
        data: dict[str, Any] = {
            "enabled": user.enabled,
            "last_password_change": changed.isoformat() if changed else None,
            "password_age_days": (now - changed).days if changed else None,
            "licenses": list(details.licenses),
            "on_premises_sync": user.on_premises_sync,
            "sign_in_ready": user.enabled and bool(details.licenses),
        }
        if not user.enabled:
            log.warning("account_status: %s is disabled; escalating as a possible security matter", user.id)
            return ActionOutcome(
                ok=True,
                code="account_disabled",
                escalate=True,
                data={**data, "security": True},
                message="Your account is disabled. That is sometimes a security measure, so I won't "
                "re-enable it; I'm passing this to the IT team to look at.",
            )
        when = f"{changed:%d %b %Y}" if changed else "unknown"
        if not details.licenses:
            return ActionOutcome(
                ok=True,
                code="no_license",
                escalate=True,
                data=data,
                message=f"Your account is enabled (password last changed: {when}) but has no Microsoft 365 "
                f"licence, so apps like Outlook and Teams won't work. I'll pass this to a technician.",
            )
        return ActionOutcome(
            ok=True,
            code="ok",
            data=data,
            message=f"Your account is enabled and ready to sign in. Password last changed: {when}. "
            f"Licences: {', '.join(details.licenses)}.",
        )

    async def _revoke_sessions(self, run: Run) -> ActionOutcome:
        if run.dry:
            return await run.would("POST /users/{id}/revokeSignInSessions")
        await run.begin()
        receipt = await self.directory.revoke_sessions(run.user.id)
        return ActionOutcome(
            ok=True,
            code="done",
            request_id=receipt.request_id,
            message="I've signed you out everywhere. It can take a few minutes to reach every app and "
            "device; then sign in again with your password.",
        )

    async def _mfa_reset(self, run: Run) -> ActionOutcome:
        remove = run.arg("remove_method")
        chosen = None
        if self.actions.allow_mfa_method_removal and remove != "keep":
            methods = list(await self.directory.auth_methods(run.user.id))
            by_value = {f"{m.kind}:{m.id}": m for m in methods}
            if methods and remove not in by_value:
                choices = [Button(f"Remove {m.label}", key) for key, m in by_value.items()]
                choices.append(Button("Keep them all", "keep"))
                return ActionOutcome(
                    ok=False,
                    code="needs_input",
                    input_slot="remove_method",
                    choices=tuple(choices),
                    prompt="Is one of these the lost phone? I can remove it so it can't be used to sign in.",
                )
            chosen = by_value.get(remove)
        lifetime = self.actions.tap_lifetime_minutes
        once = self.actions.tap_usable_once
        if run.dry:
            return await run.would(
                "POST /users/{id}/authentication/temporaryAccessPassMethods"
                + (" and DELETE the chosen method" if chosen else "")
            )
        await run.begin(removal=chosen.kind if chosen else None)
        tap = await self.directory.create_temporary_access_pass(
            run.user.id, lifetime_minutes=lifetime, usable_once=once
        )
        removed: bool | None = None
        if chosen is not None:
            try:
                await self.directory.remove_auth_method(run.user.id, chosen)
                removed = True
            except DirectoryError as exc:
                removed = False
                log.error(
                    "mfa_reset: removing %s method for %s failed: %s (%s, request-id %s)",
                    chosen.kind,
                    run.user.id,
                    exc.cause,
                    exc.code,
                    exc.request_id,
                )
        message = (
            f"Here is your Temporary Access Pass. Only you can see it; it works for {lifetime} minutes"
            f"{', once' if once else ''}. Go to https://aka.ms/mysecurityinfo, sign in with it and register "
            f"your new phone."
        )
        if removed:
            message += f" I removed {chosen.label if chosen else 'the old method'}."
        elif removed is False:
            message += " I couldn't remove the old phone myself; a technician will."
        return ActionOutcome(
            ok=True,
            code="done",
            secret=tap.value,
            request_id=tap.request_id,
            message=message,
            escalate=removed is False,
            data={
                "secret_label": "Your Temporary Access Pass",
                "lifetime_minutes": tap.lifetime_minutes,
                "usable_once": tap.usable_once,
                "removed": removed,
            },
        )

    def _allowlisted(self, key: str) -> bool:
        folded = key.casefold()
        return any(folded == a.casefold() for a in self.actions.group_access_allowlist)

    async def _request_group_access(self, run: Run) -> ActionOutcome:
        asked = run.arg("approval_id")
        if asked.startswith("acc-"):
            return await self._group_access_decided(run, asked)
        wanted = run.arg("group")
        if not wanted:
            choices = []
            for entry in self.actions.group_access_allowlist:
                group = await self.directory.find_group(entry)
                if group is not None:
                    choices.append(Button(group.display_name, group.name))
            if not choices:
                return ActionOutcome(
                    ok=False,
                    code="not_allowed",
                    escalate=True,
                    message="There are no groups I can grant myself; I'll pass your request to a technician.",
                )
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="group",
                choices=tuple(choices),
                prompt="Which one do you need access to?",
            )
        group = await self.directory.find_group(wanted)
        if group is None or not any(self._allowlisted(k) for k in (group.id, group.name, group.display_name)):
            return ActionOutcome(
                ok=False,
                code="not_allowed",
                escalate=True,
                data={"group": wanted[:200]},
                message="That isn't a group I can grant myself. I'll pass your request to a technician.",
            )
        protected = group.protected or any(
            g.casefold() in (group.id.casefold(), group.name.casefold())
            for g in self.actions.protected_groups
        )
        if protected:
            return ActionOutcome(
                ok=False,
                code="not_allowed",
                escalate=True,
                data={"group": group.name},
                message="Access to that group is only granted by IT. I'll pass it on.",
            )
        run.details.update(group=group.name, group_id=group.id)
        if any(g.id == group.id for g in run.memberships.groups):
            return ActionOutcome(
                ok=True,
                code="already_member",
                data={"group": group.name},
                message=f"You're already a member of {group.display_name}.",
            )
        approvers = await self._approvers(group.id, group.name, group.display_name, run.request.person)
        if not approvers:
            return ActionOutcome(
                ok=False,
                code="no_approver",
                escalate=True,
                data={"group": group.name},
                message=f"{group.display_name} has no owner who could approve this, so I'll pass it to a "
                f"technician.",
            )
        if run.dry:
            return await run.would(
                f"notify {len(approvers)} approver(s); on approval POST /groups/{{id}}/members/$ref"
            )
        await run.begin()
        request_id = "acc-" + secrets.token_hex(8)
        hours = self.actions.request_expiry_hours
        expires = self.clock() + timedelta(hours=hours)
        person = run.request.person
        reply_to = getattr(run.ctx, "reply_to", None)
        # Who approves and where the person asked, so the decision is told there and the waiting
        # conversation can say who it waits for.
        names = ", ".join(a.display_name for a in approvers)
        await self.verification.open_access_wait(run.state, request_id, group=group.display_name, approvers=names)
        run.ctx.emit(
            "access_requested",
            access_request_id=request_id,
            reply_to=reply_to.to_json() if reply_to is not None else None,
            group_id=group.id,
            group_name=group.name,
            group_display_name=group.display_name,
            requester_id=run.user.id,
            requester_name=person.display_name,
            approvers=[a.email for a in approvers],
            expires_at=expires.isoformat(),
            conversation_key=run.request.conversation_key,
            **{"for": person.email, "by": person.email},
        )
        reason = " ".join(run.arg("reason").split())
        if len(reason) > REASON_LIMIT:
            reason = reason[: REASON_LIMIT - 1].rstrip() + "…"
        text = (
            f"{person.display_name} ({person.email}) asks to join {group.display_name}. "
            + (f'Their reason: "{reason}". ' if reason else "They gave no reason. ")
            + f"You're listed as an approver. This request expires in {hours} hours."
        )
        buttons = (
            Button("Approve", f"approval:approve:{request_id}", "primary"),
            Button("Deny", f"approval:deny:{request_id}", "danger"),
        )
        for approver in approvers:
            await run.ctx.notify(approver.email, text, buttons)
        # Pending is not done: nobody is added until an owner approves. The conversation waits at
        # this step (`approval_id`) and carries on when the decision is told in it.
        return ActionOutcome(
            ok=True,
            code="pending_approval",
            data={"access_request_id": request_id, "approval_id": request_id, "group": group.name,
                  "approvers": len(approvers)},
            message=f"I've asked {names} to approve your access to {group.display_name}; nothing has "
            f"changed yet. I'll tell you here when they answer (the request expires in {hours} hours).",
        )

    async def _group_access_decided(self, run: Run, request_id: str) -> ActionOutcome:
        """The conversation waits for an owner's decision on `request_id`: still waiting, added,
        declined or expired, as recorded by the approval desk."""
        wait = await self.verification.access_wait(run.state, request_id)
        group = str(wait.get("group") or "the group") if wait else "the group"
        decision = await self.verification.decision(run.state, request_id)
        data = {"access_request_id": request_id}
        if decision is None and wait is not None:
            who = str(wait.get("approvers") or "the owner")
            return ActionOutcome(
                ok=True,
                code="pending_approval",
                data={**data, "approval_id": request_id},
                message=f"I'm still waiting for {who} to approve your access to {group}; nothing has "
                f"changed yet. I'll tell you here when they answer (or say cancel to stop).",
            )
        if decision in ("added", "already_member"):
            return ActionOutcome(
                ok=True,
                code="done" if decision == "added" else "already_member",
                data=data,
                message=f"You're now a member of {group}.",
            )
        if decision == "denied":
            return ActionOutcome(
                ok=False,
                code="access_denied",
                data=data,
                message=f"The owner declined your request to join {group}, so nothing was changed.",
            )
        if decision in ("failed", "protected"):
            # Approved, but the bot could not add them: a technician finishes it (a ticket).
            return ActionOutcome(
                ok=False,
                code="approved_not_applied",
                escalate=True,
                data=data,
                message=f"Your request to join {group} was approved, but I couldn't add you myself. "
                f"I'm passing it to a technician to finish.",
            )
        return ActionOutcome(
            ok=False,
            code="access_expired",
            data=data,
            message=f"Nobody decided on your request to join {group} in time, so it expired and nothing "
            f"was changed.",
        )

    async def _approvers(
        self, group_id: str, name: str, display: str, requester: Person
    ) -> list[DirectoryUser]:
        configured: list[str] = []
        for key, emails in self.actions.group_access_approvers.items():
            if key.casefold() in (group_id.casefold(), name.casefold(), display.casefold()):
                configured = emails
                break
        people: list[DirectoryUser] = []
        if configured:
            for email in configured:
                user = await self.directory.find_user_by_email(email)
                if user is not None:
                    people.append(user)
        else:
            people = list(await self.directory.group_owners(group_id))
        # Nobody approves their own request.
        return [p for p in people if p.enabled and p.email.casefold() != requester.email.casefold()]

    async def _device_actions(self, run: Run) -> ActionOutcome:
        devices = list(await self.directory.managed_devices(run.user.id))
        if not devices:
            return ActionOutcome(
                ok=False,
                code="no_devices",
                message="I can't find any company-managed device registered to you. "
                "A technician can check your device's enrolment.",
            )
        # The flow says which kind of device the person means ("Windows laptop", "my phone"): offer
        # only those, and pick the one if there is exactly one. If none matches (they said Windows
        # but own a Mac), offer every device rather than none.
        wanted = run.arg("device")
        kind = run.arg("os").lower()
        if kind and not wanted and run.arg("command").lower() != "list":
            matching = [d for d in devices if os_family(d.operating_system) == kind]
            if matching:
                devices = matching
                if len(matching) == 1:
                    wanted = matching[0].id
        listing = [
            {
                "id": d.id,
                "name": d.name,
                "os": d.operating_system,
                "os_version": d.os_version,
                "compliance": d.compliance,
                "last_sync": d.last_sync.isoformat() if d.last_sync else None,
            }
            for d in devices
        ]
        command = run.arg("command").lower()
        if command == "list":
            await run.begin()
            return ActionOutcome(
                ok=True,
                code="listed",
                data={"devices": listing},
                message="Your devices: "
                + "; ".join(f"{d.name} ({d.operating_system})" for d in devices)
                + ".",
            )
        by_id = {d.id: d for d in devices}
        device = by_id.get(wanted)
        if device is None:
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="device",
                data={"devices": listing},
                prompt="Which device?" if not wanted else "That isn't one of your devices. Which one?",
                choices=tuple(Button(f"{d.name} ({d.operating_system})", d.id) for d in devices),
            )
        if command not in ("sync", "restart"):
            return ActionOutcome(
                ok=False,
                code="needs_input",
                input_slot="command",
                prompt=f"What should I do with {device.name}?",
                choices=(Button("Sync with Intune", "sync"), Button("Restart it", "restart")),
            )
        if command == "restart":
            confirm = run.arg("confirm").lower()
            if confirm not in ("yes", "no"):
                return ActionOutcome(
                    ok=False,
                    code="needs_input",
                    input_slot="confirm",
                    prompt=f"Restart {device.name} now? Unsaved work on it will be lost.",
                    choices=(Button("Yes, restart", "yes", "danger"), Button("No", "no")),
                )
            if confirm == "no":
                return ActionOutcome(ok=True, code="cancelled", message="OK, I won't restart it.")
        graph_action = "syncDevice" if command == "sync" else "rebootNow"
        run.details.update(device_id=device.id, device=device.name, command=command)
        if run.dry:
            return await run.would(f"POST /deviceManagement/managedDevices/{{id}}/{graph_action}")
        await run.begin()
        receipt = await self.directory.device_command(device.id, "sync" if command == "sync" else "restart")
        message = (
            f"I've asked {device.name} to check in with Intune. If it's on and online it syncs within a "
            f"few minutes."
            if command == "sync"
            else f"{device.name} will restart in a few minutes if it's on and online."
        )
        return ActionOutcome(
            ok=True,
            code="done",
            request_id=receipt.request_id,
            message=message,
            data={"device": device.name, "command": command},
        )

    async def _set_out_of_office(self, run: Run) -> ActionOutcome:
        status = run.arg("status").lower()
        if status in ("off", "disable", "disabled"):
            replies = AutoReplies(status="disabled")
        else:
            text = run.arg("message")
            if not text:
                return ActionOutcome(
                    ok=False,
                    code="needs_input",
                    input_slot="message",
                    prompt="What should your automatic reply say?",
                )
            if len(text) > AUTO_REPLY_MAX:
                return ActionOutcome(
                    ok=False,
                    code="needs_input",
                    input_slot="message",
                    prompt=f"That's a bit long; please keep it under {AUTO_REPLY_MAX} characters.",
                )
            start, end = parse_when(run.arg("start")), parse_when(run.arg("end"))
            if end is not None and _DATE_ONLY.match(run.arg("end").strip()):
                # "Until 2026-12-04" includes the 4th: the replies stop at the end of that day.
                end += timedelta(days=1)
            if (
                (run.arg("start") and start is None)
                or (run.arg("end") and end is None)
                or (start and end and end <= start)
            ):
                return ActionOutcome(
                    ok=False,
                    code="needs_input",
                    input_slot="end",
                    prompt="When should the automatic reply stop? (for example 2026-10-05)",
                )
            audiences: dict[str, Audience] = {"none": "none", "contactsOnly": "contactsOnly", "all": "all"}
            audience = audiences.get(run.arg("audience"), "all")
            # The reply is HTML in Outlook: the person's text is escaped, never interpreted.
            body = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")
            if start and end:
                replies = AutoReplies(
                    status="scheduled",
                    internal_html=body,
                    external_html=body,
                    external_audience=audience,
                    start=start,
                    end=end,
                )
            else:
                replies = AutoReplies(
                    status="alwaysEnabled", internal_html=body, external_html=body, external_audience=audience
                )
        run.details.update(status=replies.status)
        if run.dry:
            return await run.would("PATCH /users/{id}/mailboxSettings automaticRepliesSetting")
        await run.begin()
        receipt = await self.directory.set_automatic_replies(run.user.id, replies)
        data = {
            "status": replies.status,
            "start": replies.start.isoformat() if replies.start else None,
            "end": replies.end.isoformat() if replies.end else None,
            "audience": replies.external_audience,
        }
        if replies.status == "disabled":
            message = "Your automatic replies are off."
        elif replies.status == "scheduled" and replies.start and replies.end:
            message = f"Your automatic replies are set from {_when(replies.start)} to {_when(replies.end, end=True)}."

        else:
            message = "Your automatic replies are on until you turn them off."
        return ActionOutcome(ok=True, code="done", request_id=receipt.request_id, message=message, data=data)

    async def _storage_quota(self, run: Run) -> ActionOutcome:
        await run.begin()
        errors: list[DirectoryError] = []
        usages: list[StorageUsage] = []
        try:
            mailbox = await self.directory.mailbox_usage(run.user)
            if mailbox:
                usages.append(mailbox)
        except DirectoryError as exc:
            errors.append(exc)
        try:
            drive = await self.directory.onedrive_usage(run.user.id)
            if drive:
                usages.append(drive)
        except DirectoryError as exc:
            errors.append(exc)
        if not usages:
            if errors:
                return self.failure(errors[0], run.name)
            return ActionOutcome(
                ok=False,
                code="unknown",
                message="I couldn't find storage figures for your account. A technician can check.",
            )
        for error in errors:
            log.warning(
                "storage_quota: partial result, %s failed: %s (%s)", error.operation, error.cause, error.code
            )
        warn = self.actions.storage_warn_percent
        data: dict[str, Any] = {}
        lines: list[str] = []
        full: list[StorageUsage] = []
        for usage in usages:
            label = "Mailbox" if usage.kind == "mailbox" else "OneDrive"
            data[usage.kind] = {
                "used_bytes": usage.used_bytes,
                "total_bytes": usage.total_bytes,
                "percent": round(usage.percent, 1),
                "state": usage.state,
            }
            lines.append(
                f"{label}: {human_bytes(usage.used_bytes)} of {human_bytes(usage.total_bytes)} "
                f"({usage.percent:.0f}%)"
            )
            if usage.percent >= warn or usage.state in ("nearing", "critical", "exceeded"):
                full.append(usage)
        message = ". ".join(lines) + "."
        if "mailbox" not in data:
            # Say only what we know: OneDrive's figure says nothing about the mailbox (reports that
            # conceal user names, or a report we may not read, leave it unseen).
            message += (" I can't see your mailbox size, so I can't tell whether your mailbox is full. "
                        "Outlook shows it under File > Info (Mailbox settings), or a technician can check.")
            data["mailbox_visible"] = False
        if not full:
            if "mailbox" not in data:
                return ActionOutcome(ok=True, code="mailbox_unknown", data=data, message=message)
            return ActionOutcome(ok=True, code="ok", data=data, message=message + " You have plenty of room.")
        advice = []
        for usage in full:
            if usage.kind == "mailbox":
                advice.append(
                    "For the mailbox: empty Deleted Items and Junk, delete or archive old mail with "
                    "large attachments (search for size:>10MB), and use the Online Archive if you have one."
                )
            else:
                advice.append(
                    "For OneDrive: delete or move large files you no longer need and empty the "
                    "OneDrive recycle bin."
                )
        return ActionOutcome(
            ok=True,
            code="nearly_full",
            data=data,
            message=message + " That's nearly full. " + " ".join(advice),
        )
