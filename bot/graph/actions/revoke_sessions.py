"""revoke_sessions: sign the person out of every session (lost device, suspected compromise)."""

from __future__ import annotations

from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run


async def run(run: Run) -> ActionOutcome:
    if run.dry:
        return await run.would("POST /users/{id}/revokeSignInSessions")
    await run.begin()
    receipt = await run.directory.revoke_sessions(run.user.id)
    return ActionOutcome(
        ok=True,
        code="done",
        request_id=receipt.request_id,
        message="I've signed you out everywhere. It can take a few minutes to reach every app and "
        "device; then sign in again with your password.",
    )


ACTION = Action(
    name="revoke_sessions",
    does="sign you out of every session",
    does_for="sign them out of every session",
    run=run,
    changes=True,
    calls=("POST /users/{id}/revokeSignInSessions",),
)
