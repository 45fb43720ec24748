"""Identity verification state: one-time codes, technician approvals and the short-lived grant a
passed check gives, kept in `SharedState` so every replica sees it.

In production that is the `shared_state` table, written in the turn's transaction
(`bot.store.repos.SqlSharedState`): a code emailed by one replica is checked by whichever replica
receives the person's answer, and a technician's Approve finds its request wherever it lands.
`MemoryState` serves a single process with no database (tests, scripts).

A code is never stored: only a salted scrypt hash of it (n=2^14, r=8, about 50 ms per try), so a
leaked row cannot be turned back into the code by trying all million codes within its 10 minutes.
Times are wall-clock epoch seconds, the one clock replicas share, read from the app's injected
clock (`App.clock`, through the runner): nothing here has a default clock, so a fake clock in tests
or `helpdesk simulate` governs codes, grants and approvals exactly as it governs everything else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bot.core.ports import SharedState

CheckResult = Literal["ok", "wrong", "locked", "none"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _hash(code: str, salt: bytes) -> bytes:
    return hashlib.scrypt(code.strip().encode(), salt=salt, **_SCRYPT)


class MemoryState:
    """`SharedState` in this process's memory (one process, or tests)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._values: dict[str, tuple[dict[str, Any], float]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        found = self._values.get(key)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._values[key]
            return None
        return dict(found[0])

    async def put(self, key: str, value: dict[str, Any], expires: float) -> None:
        self._values[key] = (dict(value), expires)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)


@dataclass(frozen=True, slots=True)
class PendingVerification:
    id: str
    person_id: str
    email: str
    display_name: str
    action: str
    expires: float
    # Where the person asked (an `Address` as JSON), so the decision is told in that chat.
    reply_to: dict[str, Any] | None = None


class VerificationStore:
    """The rules (code life, attempts, grant length, approval expiry) over a `SharedState`."""

    def __init__(
        self,
        *,
        code_ttl_seconds: float = 600,
        max_attempts: int = 3,
        grant_seconds: float = 900,
        approval_ttl_seconds: float = 3600,
        clock: Callable[[], float],
    ) -> None:
        self._code_ttl = code_ttl_seconds
        self._max_attempts = max_attempts
        self._grant_seconds = grant_seconds
        self._approval_ttl = approval_ttl_seconds
        self._clock = clock

    # ----- one-time codes -----

    async def issue_code(self, state: SharedState, person_id: str, action: str) -> str:
        """A fresh 6-digit code; any earlier one for this person and action stops working."""
        code = f"{secrets.randbelow(1_000_000):06d}"
        salt = secrets.token_bytes(16)
        expires = self._clock() + self._code_ttl
        value = {"salt": salt.hex(), "hash": _hash(code, salt).hex(), "attempts_left": self._max_attempts,
                 "expires": expires}
        await state.put(f"code:{person_id}:{action}", value, expires)
        return code

    async def check_code(self, state: SharedState, person_id: str, action: str, code: str) -> CheckResult:
        """`ok` (the code is used up), `wrong` (attempts remain), `locked` (none remain), or `none`
        (no code, or it expired)."""
        key = f"code:{person_id}:{action}"
        entry = await state.get(key)
        if entry is None:
            return "none"
        if hmac.compare_digest(bytes.fromhex(entry["hash"]), _hash(code, bytes.fromhex(entry["salt"]))):
            await state.delete(key)
            return "ok"
        left = int(entry["attempts_left"]) - 1
        if left <= 0:
            await state.delete(key)
            return "locked"
        # A wrong try does not extend the code's life: it keeps the expiry it was issued with.
        await state.put(key, {**entry, "attempts_left": left}, float(entry["expires"]))
        return "wrong"

    async def attempts_left(self, state: SharedState, person_id: str, action: str) -> int:
        entry = await state.get(f"code:{person_id}:{action}")
        return int(entry["attempts_left"]) if entry else 0

    # ----- grants -----

    async def grant(self, state: SharedState, person_id: str, action: str) -> None:
        until = self._clock() + self._grant_seconds
        await state.put(f"grant:{person_id}:{action}", {"until": until}, until)

    async def has_grant(self, state: SharedState, person_id: str, action: str) -> bool:
        return await state.get(f"grant:{person_id}:{action}") is not None

    async def consume_grant(self, state: SharedState, person_id: str, action: str) -> None:
        await state.delete(f"grant:{person_id}:{action}")

    # ----- technician approval -----

    async def open_request(
        self, state: SharedState, person_id: str, email: str, display_name: str, action: str,
        reply_to: dict[str, Any] | None = None,
    ) -> PendingVerification:
        pending = PendingVerification(
            id="ver-" + secrets.token_hex(8),
            person_id=person_id,
            email=email,
            display_name=display_name,
            action=action,
            expires=self._clock() + self._approval_ttl,
            reply_to=reply_to,
        )
        await state.put(f"pending:{pending.id}", asdict(pending), pending.expires)
        await state.put(f"pending-for:{person_id}:{action}", {"id": pending.id}, pending.expires)
        return pending

    async def pending_for(self, state: SharedState, person_id: str, action: str) -> PendingVerification | None:
        index = await state.get(f"pending-for:{person_id}:{action}")
        if index is None:
            return None
        found = await state.get(f"pending:{index['id']}")
        return PendingVerification(**found) if found else None

    async def record_decision(self, state: SharedState, request_id: str, decision: str) -> None:
        """Remember how a check was decided, so the waiting conversation can tell approved, refused
        and expired apart when it carries on (kept as long as a grant lasts)."""
        until = self._clock() + max(self._grant_seconds, self._approval_ttl)
        await state.put(f"decided:{request_id}", {"decision": decision}, until)

    async def decision(self, state: SharedState, request_id: str) -> str | None:
        found = await state.get(f"decided:{request_id}")
        return str(found["decision"]) if found else None

    # ----- group access waiting for an owner -----

    async def open_access_wait(self, state: SharedState, request_id: str, *, group: str, approvers: str) -> None:
        """What a conversation waiting for an owner's decision needs to say where it stands. Kept
        past the request's own expiry so that asking later still hears how it ended."""
        await state.put(f"access-wait:{request_id}", {"group": group, "approvers": approvers},
                        self._clock() + 2 * self._approval_ttl)

    async def access_wait(self, state: SharedState, request_id: str) -> dict[str, Any] | None:
        return await state.get(f"access-wait:{request_id}")

    async def take_pending(self, state: SharedState, request_id: str) -> PendingVerification | None:
        """The undecided request, removed so that a second decision finds nothing."""
        found = await state.get(f"pending:{request_id}")
        if found is None:
            return None
        pending = PendingVerification(**found)
        await state.delete(f"pending:{request_id}")
        await state.delete(f"pending-for:{pending.person_id}:{pending.action}")
        return pending
