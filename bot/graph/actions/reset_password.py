"""reset_password: a temporary password, changed at next sign-in, shown once to its owner."""

from __future__ import annotations

from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run
from bot.graph.directory import DirectoryUser
from bot.graph.passwords import generate_password


def refuse(user: DirectoryUser) -> ActionOutcome | None:
    """An on-premises synced account: known up front, so refused before any identity check (no code
    mailed and no technician asked to confirm someone for a change that cannot be made)."""
    if not user.on_premises_sync:
        return None
    return ActionOutcome(
        ok=False,
        code="not_cloud_account",
        escalate=True,
        message="Your password is managed by the on-premises directory, so I can't reset it from "
        "here. I'm passing this to a technician.",
    )


async def run(run: Run) -> ActionOutcome:
    if run.dry:
        return await run.would("PATCH /users/{id} passwordProfile (forceChangePasswordNextSignIn)")
    await run.begin()
    password = generate_password(run.settings.password_length)
    receipt = await run.directory.reset_password(run.user.id, password, force_change=True)
    return ActionOutcome(
        ok=True,
        code="done",
        secret=password,
        request_id=receipt.request_id,
        message="Here is your temporary password. Only you can see it and it won't be shown again. "
        "You'll be asked to choose a new one when you sign in.",
        data={"force_change": True},
    )


ACTION = Action(
    name="reset_password",
    does="reset your password",
    does_for="reset their password",
    run=run,
    changes=True,
    calls=("PATCH /users/{id} passwordProfile",),
    refuse=refuse,
)
