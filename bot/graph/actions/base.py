"""What every self-service action is built from: its declaration (`Action`), one execution of it
(`Run`), the way a check stops a run with an answer (`Stop`), and the plain message for a directory
failure (`failure`).

An action module declares one `Action`: what it needs (the inputs it reads, `needs`), what it may
touch (`changes`: protected accounts are never touched by an action that changes something), what it
calls (`calls`, the Graph requests) and what it says (its `does` texts and the messages its `run`
returns). The runner (runner.py) guards every run the same way; registry.py lists the actions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.core.ports import ActionContext, ActionOutcome, ActionRequest, SharedState
from bot.graph.directory import Directory, DirectoryError, DirectoryUser, Memberships
from bot.graph.verification import VerificationStore
from bot.settings import ActionPolicySettings

log = logging.getLogger(__name__)

# Statuses that end a conversation step; `needs_input` does not and is not audited as an action.
NOT_TERMINAL = frozenset({"needs_input"})


class Host(Protocol):
    """What a run reaches through its runner: the directory, the `actions:` settings, the
    verification store, the clock, the shared state and the rate limit."""

    directory: Directory
    actions: ActionPolicySettings
    verification: VerificationStore
    clock: Callable[[], datetime]

    def state_of(self, ctx: ActionContext) -> SharedState: ...

    async def check_rate(self, run: Run) -> None:
        """Count this run against the action's hourly limit; raises `Stop` when it is used up."""
        ...


class Stop(Exception):
    """Ends a run with `outcome` (a refusal, a question, or "still waiting")."""

    def __init__(self, outcome: ActionOutcome) -> None:
        super().__init__(outcome.code)
        self.outcome = outcome


@dataclass(slots=True)
class Run:
    """One execution of an action: the request, the person's directory facts, and the helpers
    that keep auditing uniform."""

    host: Host
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
        return self.host.state_of(self.ctx)

    @property
    def directory(self) -> Directory:
        return self.host.directory

    @property
    def settings(self) -> ActionPolicySettings:
        """The `actions:` settings."""
        return self.host.actions

    @property
    def args(self) -> Mapping[str, str]:
        return self.request.args

    def arg(self, key: str) -> str:
        return str(self.request.args.get(key) or "").strip()

    def audit(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Event fields for this run: who, which action, for whom, plus non-secret details."""
        data: dict[str, Any] = {
            "name": self.name,
            "for": self.request.person.email,
            "by": self.request.person.email,
            "directory_id": self.user.id,
            "conversation_key": self.request.conversation_key,
            "dry_run": self.dry,
        }
        data.update(self.details)
        data.update(extra or {})
        return data

    async def begin(self, **details: Any) -> None:
        """Before the action's main directory call: the rate limit, then `action_started`."""
        self.details.update(details)
        if self.started:
            return
        await self.host.check_rate(self)
        self.started = True
        self.ctx.emit("action_started", **self.audit())

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
Refusal = Callable[[DirectoryUser], ActionOutcome | None]


@dataclass(frozen=True, slots=True)
class Action:
    """One self-service action, as its module declares it.

    - `name`: what flows call it (`action:` in flows/*.yaml) and what settings name it
      (`actions.rules.<name>`, `actions.sensitive`).
    - `does` / `does_for`: what it does, said to the person ("reset your password") and of them to
      someone else ("reset their password"); used in verification mail and approval requests.
    - `needs`: the inputs (request args, filled by the flow's slots) it reads.
    - `changes`: whether it changes the account or devices; such an action never touches a
      protected account.
    - `calls`: the Graph requests it makes (documentation; docs/graph.md has the permissions).
    - `for_disabled`: it runs for a disabled account too (every other action refuses one).
    - `refuse`: a refusal known from the directory user alone, said before any identity check.
    - `run`: the work, after the runner's gate has admitted the run.
    """

    name: str
    does: str
    does_for: str
    run: Handler
    changes: bool
    needs: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    for_disabled: bool = False
    refuse: Refusal | None = None


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def failure(exc: DirectoryError, action: str) -> ActionOutcome:
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
