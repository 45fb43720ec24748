"""The identity check before a sensitive action (`actions.sensitive`): a code mailed to the
person's registered alternate email, or a technician confirming it's them. Each returns when the
person is verified; otherwise it stops the run with the next question, "still waiting", or a
refusal. Codes, grants and pending checks live in the shared state (verification.py)."""

from __future__ import annotations

import logging

from bot.core.models import Button
from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Run, Stop, mask_email
from bot.graph.actions.registry import BY_NAME
from bot.graph.directory import NotConfigured
from bot.graph.policy import RateLimiter
from bot.settings import Settings

log = logging.getLogger(__name__)


async def verify_by_code(run: Run, settings: Settings, limiter: RateLimiter) -> None:
    """Returns when verified; otherwise stops the run with the next question or a refusal."""
    user, name = run.user, run.name
    verification, directory, actions = run.host.verification, run.directory, run.settings
    typed = run.arg("verification_code")
    if typed:
        result = await verification.check_code(run.state, user.id, name, typed)
        if result == "ok":
            await verification.grant(run.state, user.id, name)
            run.ctx.emit(
                "verification",
                name=name,
                ok=True,
                method="email_code",
                **{"for": run.request.person.email},
            )
            return
        if result == "wrong":
            left = await verification.attempts_left(run.state, user.id, name)
            raise Stop(
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
            raise Stop(
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
    alternate = await directory.alternate_email(user.id)
    if not alternate:
        raise Stop(
            ActionOutcome(
                ok=False,
                code="no_verification_method",
                escalate=True,
                message="There's no personal email registered on your account, so I can't check it's you "
                "myself. I'll pass this to a technician, who will verify you another way.",
            )
        )
    sender = settings.graph.mail_sender or ("helpdesk@example.com" if directory.backend == "demo" else "")
    if not sender:
        raise NotConfigured("verification mail sender (graph.mail_sender) is not set", operation="send_mail")
    if not await limiter.allow(run.state, user.id, f"verify:{name}", actions.code_max_attempts + 2):
        raise Stop(
            ActionOutcome(
                ok=False,
                code="rate_limited",
                message="I've sent several codes already this hour. Please try later or ask for a "
                "technician.",
            )
        )
    code = await verification.issue_code(run.state, user.id, name)
    minutes = actions.code_ttl_minutes
    await directory.send_mail(
        sender,
        alternate,
        "Your help desk verification code",
        f"Your help desk verification code is {code}. It expires in {minutes} minutes.\n\n"
        f"You asked the help desk bot to {BY_NAME[name].does}. If that wasn't you, do not share "
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
    raise Stop(
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


async def verify_by_technician(run: Run, settings: Settings) -> None:
    user, name, person = run.user, run.name, run.request.person
    verification = run.host.verification
    waiting = await verification.pending_for(run.state, user.id, name)
    if waiting is not None:
        raise Stop(
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
        decision = await verification.decision(run.state, asked)
        what = BY_NAME[name].does
        if decision == "denied":
            raise Stop(
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
        raise Stop(
            ActionOutcome(
                ok=False,
                code="approval_expired",
                escalate=True,
                message="No technician confirmed it's you in time, so nothing was changed. I'm passing "
                "this to a technician so you don't have to ask again.",
            )
        )
    technicians = [t for t in settings.roles.technicians if t.casefold() != person.email.casefold()]
    if not technicians:
        raise Stop(
            ActionOutcome(
                ok=False,
                code="no_approver",
                escalate=True,
                message="No technician is set up to confirm your identity, so I'll open a ticket "
                "instead.",
            )
        )
    reply_to = getattr(run.ctx, "reply_to", None)
    pending = await verification.open_request(
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
        f"{person.display_name} ({person.email}) asked the help desk bot to {BY_NAME[name].does_for}. "
        f"Please confirm it's really them (for example, call them on a number on file) before approving."
    )
    buttons = (
        Button("Approve", f"approval:approve:{pending.id}", "primary"),
        Button("Deny", f"approval:deny:{pending.id}", "danger"),
    )
    for email in technicians:
        await run.ctx.notify(email, text, buttons)
    raise Stop(
        ActionOutcome(
            ok=True,
            code="pending_approval",
            message="For your safety a technician has to confirm it's you first. I've asked them and "
            "nothing has been changed yet. I'll tell you here as soon as they answer, and then carry on.",
            data={"verification_id": pending.id},
        )
    )
