"""The `ActionRunner` that guards every self-service action (registry.py lists them).

Every run goes through the same gate, in this order: the person's account exists and is enabled;
the action is enabled and the person may run it; the account is not protected (for actions that
change something); refusals the action knows up front; identity is verified for the sensitive
actions (identity.py); the rate limit allows it. Then the action emits `action_started`, calls the
directory, and the runner emits `action` with the result (name, ok, for, code, request_id).
Failures become a plain message, `escalate=True` and the collected facts for the ticket; the log
names the cause.

The secret (temporary password, Temporary Access Pass) is returned only in `ActionOutcome.secret`:
never in a message, event, log line or exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from bot.core.ports import ActionContext, ActionOutcome, ActionRequest, SharedState
from bot.graph.actions import identity
from bot.graph.actions.base import NOT_TERMINAL, Action, Run, Stop, failure
from bot.graph.actions.registry import ACTION_NAMES, BY_NAME
from bot.graph.approvals import ApprovalDesk
from bot.graph.directory import Directory, DirectoryError
from bot.graph.policy import ActionPolicy, RateLimiter
from bot.graph.verification import MemoryState, VerificationStore
from bot.settings import Settings

log = logging.getLogger(__name__)


class SelfServiceRunner:
    """`ActionRunner` for the registered self-service actions, against any `Directory`."""

    # A directory failure as a plain message, an escalation and the facts for the ticket.
    failure = staticmethod(failure)

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        *,
        policy: ActionPolicy | None = None,
        limiter: RateLimiter | None = None,
        verification: VerificationStore | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        # The app's injected clock (required, so the real clock cannot slip in behind a fake one):
        # access-request expiry, password ages, code and grant lifetimes, identity-approval expiry
        # and rate-limit windows are all judged by it, as is the periodic expiry job (simulate's
        # fake clock, tests' fixed one).
        self.clock: Callable[[], datetime] = clock

        def epoch() -> float:
            return self.clock().timestamp()

        self.settings = settings
        self.directory = directory
        self.actions = settings.actions
        self.policy = policy or ActionPolicy(settings.actions, backend=directory.backend)
        self.limiter = limiter or RateLimiter(epoch)
        # Where verification and rate-limit state lives when the context brings none (a context
        # from the core brings the shared_state table, in the turn's transaction).
        self._local_state = MemoryState(epoch)
        self.verification = verification or VerificationStore(
            code_ttl_seconds=settings.actions.code_ttl_minutes * 60,
            max_attempts=settings.actions.code_max_attempts,
            grant_seconds=settings.actions.verified_minutes * 60,
            approval_ttl_seconds=settings.actions.request_expiry_hours * 3600,
            clock=epoch,
        )
        self.approvals = ApprovalDesk(self)

    def names(self) -> frozenset[str]:
        return ACTION_NAMES

    async def aclose(self) -> None:
        await self.directory.aclose()

    # ----- the gate -----

    async def run(self, request: ActionRequest, ctx: ActionContext) -> ActionOutcome:
        action = BY_NAME.get(request.name)
        if action is None:
            return ActionOutcome(
                ok=False,
                code="unknown_action",
                escalate=True,
                message="I don't know how to do that myself; a technician can help.",
            )
        run: Run | None = None
        try:
            run = await self._admit(action, request, ctx)
            outcome = await action.run(run)
        except Stop as stop:
            outcome = stop.outcome
        except DirectoryError as exc:
            outcome = failure(exc, request.name)
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

    async def _admit(self, action: Action, request: ActionRequest, ctx: ActionContext) -> Run:
        person = request.person
        name = request.name
        user = await self.directory.get_user(person.directory_id)
        if user is None:
            raise Stop(
                ActionOutcome(
                    ok=False,
                    code="not_found",
                    escalate=True,
                    message="I can't find your account in the directory, so I'll pass this to a technician.",
                )
            )
        if not user.enabled and not action.for_disabled:
            log.warning("action %s refused: account %s is disabled", name, user.id)
            raise Stop(
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
            raise Stop(
                ActionOutcome(
                    ok=False,
                    code="not_enabled",
                    message="That isn't something I do here; I can open a ticket for a technician instead.",
                )
            )
        memberships = await self.directory.memberships(user.id)
        if not self.policy.may_run(name, memberships):
            raise Stop(
                ActionOutcome(
                    ok=False,
                    code="forbidden",
                    message="You're not allowed to do that through the help desk bot. A technician can help.",
                )
            )
        if action.changes:
            protection = self.policy.protection(user, memberships)
            if protection is not None:
                log.warning("action %s refused: %s is protected (%s)", name, user.id, protection.detail)
                raise Stop(
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
        refusal = action.refuse(user) if action.refuse is not None else None
        if refusal is not None:
            # Known up front, so refused before any identity check.
            raise Stop(refusal)
        dry = request.dry_run or self.policy.dry_run
        run = Run(self, request, ctx, user, memberships, dry)
        mode = self.policy.verification_for(name)
        if mode != "none" and not await self.verification.has_grant(run.state, user.id, name):
            if mode == "email_code":
                await identity.verify_by_code(run, self.settings, self.limiter)
            else:
                await identity.verify_by_technician(run, self.settings)
        return run

    def state_of(self, ctx: ActionContext) -> SharedState:
        """The context's shared state (every replica's), or this process's when it has none."""
        state = getattr(ctx, "state", None)
        return state if state is not None else self._local_state

    async def check_rate(self, run: Run) -> None:
        """Count this run against the action's hourly limit; stops it when the limit is used up."""
        limit = self.policy.rate_limit(run.name)
        if await self.limiter.allow(run.state, run.user.id, run.name, limit):
            return
        retry = await self.limiter.retry_after(run.state, run.user.id, run.name)
        minutes = max(1, int(retry // 60) + 1)
        raise Stop(
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
            data.update(run.audit())
            data["ok"], data["code"], data["request_id"] = outcome.ok, outcome.code, outcome.request_id
        if outcome.escalate:
            data["escalate"] = True
        for key in ("cause", "graph_code", "missing"):
            if key in outcome.data:
                data[key] = outcome.data[key]
        ctx.emit("action", **data)
