"""Who may run which self-service action, whom it may never touch, how often, and which identity
check comes first. Pure decisions over settings and directory facts; no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.core.ports import SharedState
from bot.graph.actions.registry import ACTION_NAMES
from bot.graph.directory import DirectoryUser, Memberships
from bot.settings import ActionPolicySettings, ActionRule

VerificationMode = Literal["none", "email_code", "technician_approval"]


class PolicyError(ValueError):
    """Settings that would be unsafe (verification `none` against a real tenant)."""


@dataclass(frozen=True, slots=True)
class Protection:
    reason: str  # "listed" | "directory_role" | "protected_group"
    detail: str


class ActionPolicy:
    def __init__(
        self, settings: ActionPolicySettings, *, backend: str, allow_unverified: bool = False
    ) -> None:
        """`allow_unverified` lets tests run sensitive actions against the Graph stand-in without a
        check; the factory never sets it."""
        self.settings = settings
        self.backend = backend
        for name in settings.rules:
            if name not in ACTION_NAMES:
                raise PolicyError(
                    f"actions.rules.{name}: unknown action (known: {', '.join(sorted(ACTION_NAMES))})"
                )
        if backend != "demo" and not allow_unverified:
            for name in ACTION_NAMES:
                if name in settings.sensitive and self.verification_for(name) == "none":
                    raise PolicyError(
                        f"actions: verification 'none' for {name} is allowed only with the demo directory"
                    )
        self._protected_accounts = {a.casefold() for a in settings.protected_accounts}

    def rule(self, action: str) -> ActionRule:
        return self.settings.rules.get(action) or ActionRule()

    @property
    def dry_run(self) -> bool:
        return self.settings.dry_run

    def enabled(self, action: str) -> bool:
        return self.rule(action).enabled

    def verification_for(self, action: str) -> VerificationMode:
        if action not in self.settings.sensitive:
            return "none"
        mode = self.rule(action).verification or self.settings.verification
        if mode == "auto":
            return "none" if self.backend == "demo" else "email_code"
        return mode

    def may_run(self, action: str, memberships: Memberships) -> bool:
        allowed = self.rule(action).allowed_groups
        return not allowed or any(memberships.has_group(g) for g in allowed)

    def protection(self, user: DirectoryUser, memberships: Memberships) -> Protection | None:
        """Why this account must never be touched by self-service, or None."""
        if (
            user.id.casefold() in self._protected_accounts
            or user.email.casefold() in self._protected_accounts
            or (user.user_principal_name and user.user_principal_name.casefold() in self._protected_accounts)
        ):
            return Protection("listed", "listed in actions.protected_accounts")
        if self.settings.protect_directory_roles and memberships.directory_roles:
            return Protection("directory_role", "holds " + ", ".join(memberships.directory_roles))
        for name in self.settings.protected_groups:
            if memberships.has_group(name):
                return Protection("protected_group", f"member of {name}")
        for group in memberships.groups:
            if group.protected:
                return Protection("protected_group", f"member of {group.name}")
        return None

    def rate_limit(self, action: str) -> int:
        specific = self.rule(action).rate_limit_per_hour
        return self.settings.rate_limit_per_hour if specific is None else specific


class RateLimiter:
    """Sliding one-hour window per (person, action), in `SharedState`: every replica counts the
    same attempts, so N replicas still allow the setting, not N times it. The window is judged by
    `clock` (epoch seconds, the app's injected clock; no default)."""

    def __init__(self, clock: Callable[[], float], window_seconds: float = 3600.0) -> None:
        self._clock = clock
        self._window = window_seconds

    async def _hits(self, state: SharedState, key: str) -> list[float]:
        now = self._clock()
        entry = await state.get(key)
        return [float(t) for t in (entry or {}).get("hits", []) if now - float(t) < self._window]

    async def allow(self, state: SharedState, person_id: str, action: str, limit: int) -> bool:
        """Record an attempt if it is within the limit; a limit of 0 means unlimited."""
        if limit <= 0:
            return True
        key = f"rate:{person_id}:{action}"
        hits = await self._hits(state, key)
        if len(hits) >= limit:
            return False
        now = self._clock()
        hits.append(now)
        await state.put(key, {"hits": hits}, now + self._window)
        return True

    async def retry_after(self, state: SharedState, person_id: str, action: str) -> float:
        hits = await self._hits(state, f"rate:{person_id}:{action}")
        if not hits:
            return 0.0
        return max(0.0, self._window - (self._clock() - hits[0]))
