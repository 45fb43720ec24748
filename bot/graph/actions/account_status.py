"""account_status: enabled or not, last password change, licences. Read-only; a disabled account is
escalated as a possible security matter, never re-enabled."""

from __future__ import annotations

import logging
from typing import Any

from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run

log = logging.getLogger(__name__)


async def run(run: Run) -> ActionOutcome:
    await run.begin()
    details = await run.directory.account_details(run.user.id)
    user = details.user
    now = run.host.clock()
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


ACTION = Action(
    name="account_status",
    does="check your account",
    does_for="check their account",
    run=run,
    changes=False,
    calls=("$batch: GET /users/{id} + GET /users/{id}/licenseDetails",),
    for_disabled=True,
)
