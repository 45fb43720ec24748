"""The one list of self-service actions. Adding an action: write its module (an `Action` named
`ACTION`, see base.py) and add it here; the runner, the policy's checks of `actions.rules`, the
verification texts and the flows' `action:` steps all read this list."""

from __future__ import annotations

from bot.graph.actions import (
    account_status,
    device_actions,
    group_access,
    mfa_reset,
    out_of_office,
    reset_password,
    revoke_sessions,
    storage_quota,
)
from bot.graph.actions.base import Action

ACTIONS: tuple[Action, ...] = (
    reset_password.ACTION,
    account_status.ACTION,
    revoke_sessions.ACTION,
    mfa_reset.ACTION,
    group_access.ACTION,
    device_actions.ACTION,
    out_of_office.ACTION,
    storage_quota.ACTION,
)

BY_NAME: dict[str, Action] = {action.name: action for action in ACTIONS}
ACTION_NAMES: frozenset[str] = frozenset(BY_NAME)
# Actions that change the person's account or devices; protected accounts are never touched by
# these. The read-only ones (status, quota) are harmless for anyone.
MUTATING: frozenset[str] = frozenset(action.name for action in ACTIONS if action.changes)


def does(name: str) -> str:
    """What the action does, said to the person ("reset your password"); the name if unknown."""
    action = BY_NAME.get(name)
    return action.does if action is not None else name
