"""mfa_reset: a Temporary Access Pass to register a new phone, shown once to its owner; optionally
the lost phone's method removed so it can't be used to sign in."""

from __future__ import annotations

import logging

from bot.core.models import Button
from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run
from bot.graph.directory import DirectoryError

log = logging.getLogger(__name__)


async def run(run: Run) -> ActionOutcome:
    settings, directory = run.settings, run.directory
    remove = run.arg("remove_method")
    chosen = None
    if settings.allow_mfa_method_removal and remove != "keep":
        methods = list(await directory.auth_methods(run.user.id))
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
    lifetime = settings.tap_lifetime_minutes
    once = settings.tap_usable_once
    if run.dry:
        return await run.would(
            "POST /users/{id}/authentication/temporaryAccessPassMethods"
            + (" and DELETE the chosen method" if chosen else "")
        )
    await run.begin(removal=chosen.kind if chosen else None)
    tap = await directory.create_temporary_access_pass(run.user.id, lifetime_minutes=lifetime, usable_once=once)
    removed: bool | None = None
    if chosen is not None:
        try:
            await directory.remove_auth_method(run.user.id, chosen)
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


ACTION = Action(
    name="mfa_reset",
    does="issue a Temporary Access Pass to register a new phone",
    does_for="issue them a Temporary Access Pass to register a new phone",
    run=run,
    changes=True,
    needs=("remove_method",),
    calls=(
        "POST /users/{id}/authentication/temporaryAccessPassMethods",
        "GET/DELETE /users/{id}/authentication/phoneMethods, .../microsoftAuthenticatorMethods",
    ),
)
