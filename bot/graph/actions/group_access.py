"""request_group_access: ask a group's owners (or its configured approvers) to let the person in.
Only allowlisted, unprotected groups; pending is not done: nobody is added until an owner approves
(approvals.py adds them), and the conversation waits at this step for the decision."""

from __future__ import annotations

import secrets
from datetime import timedelta

from bot.core.models import Button, Person
from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run
from bot.graph.directory import DirectoryUser

# How much of a requester's typed reason an approver is shown (the notice stays readable).
REASON_LIMIT = 500


def _allowlisted(run: Run, key: str) -> bool:
    folded = key.casefold()
    return any(folded == a.casefold() for a in run.settings.group_access_allowlist)


async def run(run: Run) -> ActionOutcome:
    settings, directory = run.settings, run.directory
    asked = run.arg("approval_id")
    if asked.startswith("acc-"):
        return await _decided(run, asked)
    wanted = run.arg("group")
    if not wanted:
        choices = []
        for entry in settings.group_access_allowlist:
            group = await directory.find_group(entry)
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
    group = await directory.find_group(wanted)
    if group is None or not any(_allowlisted(run, k) for k in (group.id, group.name, group.display_name)):
        return ActionOutcome(
            ok=False,
            code="not_allowed",
            escalate=True,
            data={"group": wanted[:200]},
            message="That isn't a group I can grant myself. I'll pass your request to a technician.",
        )
    protected = group.protected or any(
        g.casefold() in (group.id.casefold(), group.name.casefold())
        for g in settings.protected_groups
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
    approvers = await _approvers(run, group.id, group.name, group.display_name, run.request.person)
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
    hours = settings.request_expiry_hours
    expires = run.host.clock() + timedelta(hours=hours)
    person = run.request.person
    reply_to = getattr(run.ctx, "reply_to", None)
    # Who approves and where the person asked, so the decision is told there and the waiting
    # conversation can say who it waits for.
    names = ", ".join(a.display_name for a in approvers)
    await run.host.verification.open_access_wait(run.state, request_id, group=group.display_name, approvers=names)
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


async def _decided(run: Run, request_id: str) -> ActionOutcome:
    """The conversation waits for an owner's decision on `request_id`: still waiting, added,
    declined or expired, as recorded by the approval desk."""
    verification = run.host.verification
    wait = await verification.access_wait(run.state, request_id)
    group = str(wait.get("group") or "the group") if wait else "the group"
    decision = await verification.decision(run.state, request_id)
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


async def _approvers(run: Run, group_id: str, name: str, display: str, requester: Person) -> list[DirectoryUser]:
    configured: list[str] = []
    for key, emails in run.settings.group_access_approvers.items():
        if key.casefold() in (group_id.casefold(), name.casefold(), display.casefold()):
            configured = emails
            break
    people: list[DirectoryUser] = []
    if configured:
        for email in configured:
            user = await run.directory.find_user_by_email(email)
            if user is not None:
                people.append(user)
    else:
        people = list(await run.directory.group_owners(group_id))
    # Nobody approves their own request.
    return [p for p in people if p.enabled and p.email.casefold() != requester.email.casefold()]


ACTION = Action(
    name="request_group_access",
    does="request access to a group",
    does_for="request access to a group",
    run=run,
    changes=True,
    needs=("group", "reason", "approval_id"),
    calls=(
        "GET /groups?$filter=...",
        "GET /groups/{id}/owners",
        "POST /groups/{id}/members/$ref (on approval, approvals.py)",
    ),
)
