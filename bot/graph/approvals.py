"""Approve / Deny buttons: group access requests and technician identity checks.

The core routes every button value starting with `approval:` here:

    outcome = await runner.approvals.handle_approval(value, approver, ctx, session)

- `approval:<approve|deny>:acc-…` decides a group access request. Requests live in the events
  table: `access_requested` (written by the `request_group_access` action) and `access_decided`
  (written here), read back through the given `AsyncSession`; no other table is needed. Only a
  listed approver (or an admin) decides; nobody decides their own request; a request decides once
  and expires after `actions.request_expiry_hours`.
- `approval:<approve|deny>:ver-…` is a technician confirming a person's identity before a
  sensitive action. The pending check is in the shared_state table (see verification.py); on
  approval the person gets a short-lived grant and is told to ask again.

The outcome returned is for the approver; the requester is told through `ctx.notify`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.models import Address, Button, Person
from bot.core.ports import ActionContext, ActionOutcome
from bot.engine.state import V_APPROVAL_CONTINUE
from bot.graph.actions.base import Host, failure
from bot.graph.actions.registry import does
from bot.graph.directory import DirectoryError
from bot.graph.policy import ActionPolicy
from bot.store.tables import EventRow

log = logging.getLogger(__name__)

VALUE = re.compile(r"^approval:(approve|deny):((?:acc|ver)-[0-9a-f]{16})$")


@dataclass(frozen=True, slots=True)
class AccessRequest:
    id: str
    group_id: str
    group_name: str
    group_display_name: str
    requester_id: str
    requester_email: str
    requester_name: str
    approvers: tuple[str, ...]
    expires_at: datetime
    # The conversation the person asked in (Address.to_json), where the decision is told.
    reply_to: dict[str, Any] | None = None

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> AccessRequest:
        expires = datetime.fromisoformat(str(data["expires_at"]))
        return cls(
            id=str(data["access_request_id"]),
            group_id=str(data["group_id"]),
            group_name=str(data.get("group_name") or data["group_id"]),
            group_display_name=str(data.get("group_display_name") or data.get("group_name") or ""),
            requester_id=str(data["requester_id"]),
            requester_email=str(data["for"]),
            requester_name=str(data.get("requester_name") or data["for"]),
            approvers=tuple(str(a) for a in data.get("approvers") or ()),
            expires_at=expires if expires.tzinfo else expires.replace(tzinfo=UTC),
            reply_to=data.get("reply_to") if isinstance(data.get("reply_to"), dict) else None,
        )


async def _events(session: AsyncSession, type_: str) -> list[dict[str, Any]]:
    rows = await session.scalars(select(EventRow).where(EventRow.type == type_).order_by(EventRow.id.desc()))
    return [dict(row.data or {}) for row in rows]


async def find_request(session: AsyncSession, request_id: str) -> AccessRequest | None:
    for data in await _events(session, "access_requested"):
        if data.get("access_request_id") == request_id:
            try:
                return AccessRequest.from_event(data)
            except (KeyError, ValueError):
                log.error("access request %s: malformed event", request_id)
                return None
    return None


async def decided_ids(session: AsyncSession) -> set[str]:
    return {str(d.get("access_request_id")) for d in await _events(session, "access_decided")}


class Runner(Host, Protocol):
    """What the desk needs of the runner that owns it (runner.py's `SelfServiceRunner`): the
    directory, verification store, shared state and clock, and the policy to re-check at decision
    time."""

    policy: ActionPolicy


class ApprovalDesk:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.directory = runner.directory

    async def _tell_requester(self, ctx: ActionContext, request: AccessRequest, decision: str, text: str) -> None:
        """Record how the request ended (the waiting conversation reads it when it carries on) and
        tell the person in the conversation where they asked, with "Continue" to carry it on there."""
        await self.runner.verification.record_decision(self.runner.state_of(ctx), request.id, decision)
        buttons = (Button("Continue", V_APPROVAL_CONTINUE, "primary"),)
        notify_at = getattr(ctx, "notify_at", None)
        if request.reply_to and notify_at is not None:
            notify_at(Address.from_json(request.reply_to), text, buttons, who=request.requester_email)
        else:
            await ctx.notify(request.requester_email, text, buttons)

    async def handle_approval(
        self, value: str, approver: Person, ctx: ActionContext, session: AsyncSession
    ) -> ActionOutcome:
        match = VALUE.match(value.strip())
        if match is None:
            return ActionOutcome(ok=False, code="bad_request", message="I don't recognise that approval.")
        decision, request_id = match.group(1), match.group(2)
        if request_id.startswith("ver-"):
            return await self._verification(decision, request_id, approver, ctx)
        return await self._access(decision, request_id, approver, ctx, session)

    # ----- identity checks -----

    async def _verification(
        self, decision: str, request_id: str, approver: Person, ctx: ActionContext
    ) -> ActionOutcome:
        if not approver.is_technician:
            return ActionOutcome(
                ok=False, code="forbidden", message="Only technicians can confirm identities."
            )
        store = self.runner.verification
        state = self.runner.state_of(ctx)
        pending = await store.take_pending(state, request_id)
        if pending is None:
            return ActionOutcome(
                ok=False, code="expired", message="That identity check has expired or was already decided."
            )
        if pending.email.casefold() == approver.email.casefold():
            return ActionOutcome(ok=False, code="forbidden", message="You can't confirm your own identity.")
        approved = decision == "approve"
        if approved:
            await store.grant(state, pending.person_id, pending.action)
        await store.record_decision(state, request_id, "approved" if approved else "denied")
        ctx.emit(
            "verification_decided",
            verification_id=request_id,
            name=pending.action,
            decision="approved" if approved else "denied",
            method="technician_approval",
            **{"for": pending.email, "by": approver.email},
        )
        what = does(pending.action)
        # The conversation that asked is waiting at this step: "Continue" carries it on there (a
        # secret such as a temporary password is only ever shown in a live turn, never queued).
        if approved:
            text = f"A technician confirmed it's you. Press Continue and I'll {what} now."
        else:
            text = (f"A technician couldn't confirm your identity, so I won't {what}. "
                    f"Press Continue and I'll pass this to the IT team.")
        buttons = (Button("Continue", V_APPROVAL_CONTINUE, "primary"),)
        notify_at = getattr(ctx, "notify_at", None)
        if pending.reply_to and notify_at is not None:
            notify_at(Address.from_json(pending.reply_to), text, buttons, who=pending.email)
        else:
            await ctx.notify(pending.email, text, buttons)
        return ActionOutcome(
            ok=True,
            code="approved" if approved else "denied",
            message=f"Thanks, I've told {pending.display_name}.",
        )

    # ----- group access -----

    async def _access(
        self, decision: str, request_id: str, approver: Person, ctx: ActionContext, session: AsyncSession
    ) -> ActionOutcome:
        request = await find_request(session, request_id)
        if request is None:
            return ActionOutcome(ok=False, code="not_found", message="I can't find that access request.")
        if request_id in await decided_ids(session):
            return ActionOutcome(
                ok=False, code="already_decided", message="That request has already been decided."
            )
        listed = approver.email.casefold() in {a.casefold() for a in request.approvers}
        if not ((listed and approver.enabled) or approver.is_admin):
            return ActionOutcome(
                ok=False, code="forbidden", message="You're not an approver for this request."
            )
        if approver.email.casefold() == request.requester_email.casefold():
            return ActionOutcome(ok=False, code="forbidden", message="You can't approve your own request.")
        base = {
            "access_request_id": request_id,
            "group_id": request.group_id,
            "group_name": request.group_name,
            "for": request.requester_email,
            "by": approver.email,
        }
        group = request.group_display_name or request.group_name
        if self.runner.clock() >= request.expires_at:
            ctx.emit("access_decided", decision="expired", **base)
            await self._tell_requester(
                ctx, request, "expired",
                f"Your request to join {group} expired before anyone decided, so nothing was changed. "
                f"Press Continue and I can pass it to a technician.",
            )
            return ActionOutcome(ok=False, code="expired", message="That request had already expired.")
        if decision == "deny":
            ctx.emit("access_decided", decision="denied", **base)
            await self._tell_requester(
                ctx, request, "denied",
                f"{approver.display_name} declined your request to join {group}, so nothing was changed. "
                f"Press Continue if you'd like a technician to look at it.",
            )
            return ActionOutcome(
                ok=True, code="denied", message=f"Declined. I've told {request.requester_name}."
            )
        return await self._grant(request, approver, ctx, base, group)

    async def _grant(
        self, request: AccessRequest, approver: Person, ctx: ActionContext, base: dict[str, Any], group: str
    ) -> ActionOutcome:
        audit = {
            "name": "request_group_access",
            "for": request.requester_email,
            "by": approver.email,
            "group": request.group_name,
            "group_id": request.group_id,
            "access_request_id": request.id,
            "dry_run": self.runner.policy.dry_run,
        }
        try:
            # Re-check at decision time: the requester may have become protected since asking.
            memberships = await self.directory.memberships(request.requester_id)
            user = await self.directory.get_user(request.requester_id)
            if user is None or not user.enabled or self.runner.policy.protection(user, memberships):
                ctx.emit("access_decided", decision="refused", **base)
                ctx.emit("action", ok=False, code="protected", escalate=True, **audit)
                await self._tell_requester(
                    ctx, request, "protected",
                    f"Your request to join {group} was approved, but your account can't be changed by "
                    f"the bot. Press Continue and I'll pass it to a technician.",
                )
                return ActionOutcome(
                    ok=False,
                    code="protected",
                    escalate=True,
                    message="Approved, but that account is protected; a technician will add them.",
                )
            if self.runner.policy.dry_run:
                ctx.emit("access_decided", decision="approved", **base)
                ctx.emit("action", ok=True, code="dry_run", **audit)
                return ActionOutcome(
                    ok=True, code="dry_run", message="Dry run: approved, but nothing was changed."
                )
            ctx.emit("action_started", **audit)
            added, receipt = await self.directory.add_group_member(request.group_id, request.requester_id)
        except DirectoryError as exc:
            outcome = failure(exc, "request_group_access")
            ctx.emit("access_decided", decision="approved", applied=False, **base)
            ctx.emit(
                "action",
                ok=False,
                code=outcome.code,
                request_id=exc.request_id,
                escalate=True,
                cause=exc.cause,
                **audit,
            )
            await self._tell_requester(
                ctx, request, "failed",
                f"{approver.display_name} approved your request to join {group}, but I couldn't add "
                f"you myself. Press Continue and I'll pass it to a technician to finish.",
            )
            return ActionOutcome(
                ok=False,
                code=outcome.code,
                escalate=True,
                data=outcome.data,
                request_id=exc.request_id,
                message="Approved, but I couldn't add them; I'm passing it to a technician.",
            )
        code = "done" if added else "already_member"
        ctx.emit("access_decided", decision="approved", applied=True, **base)
        ctx.emit("action", ok=True, code=code, request_id=receipt.request_id, **audit)
        # Told only now that the membership exists: "you're now a member" is true.
        await self._tell_requester(
            ctx, request, "added" if added else "already_member",
            f"{approver.display_name} approved your request: you're now a member of {group}. "
            f"It can take up to an hour to show up everywhere. Press Continue to finish here.",
        )
        return ActionOutcome(
            ok=True,
            code="approved",
            request_id=receipt.request_id,
            message=f"Approved. {request.requester_name} is now a member of {group}.",
        )

    async def expire_pending(
        self, ctx: ActionContext, session: AsyncSession, now: datetime | None = None
    ) -> int:
        """Close every undecided request past its expiry and tell the requester. Returns how many."""
        now = now or self.runner.clock()
        decided = await decided_ids(session)
        count = 0
        for data in await _events(session, "access_requested"):
            try:
                request = AccessRequest.from_event(data)
            except (KeyError, ValueError):
                continue
            if request.id in decided or now < request.expires_at:
                continue
            ctx.emit(
                "access_decided",
                decision="expired",
                access_request_id=request.id,
                group_id=request.group_id,
                group_name=request.group_name,
                **{"for": request.requester_email, "by": "system"},
            )
            await self._tell_requester(
                ctx, request, "expired",
                f"Your request to join {request.group_display_name or request.group_name} expired "
                f"before anyone decided, so nothing was changed. Press Continue and I can pass it to a "
                f"technician.",
            )
            decided.add(request.id)
            count += 1
        return count
