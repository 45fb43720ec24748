"""Identity verification state: one-time codes, technician approvals and the short-lived grant a
passed check gives. Kept in this process's memory only: codes are stored as keyed hashes, never
in the database, and vanish on restart (the person simply asks for a new code)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

CheckResult = Literal["ok", "wrong", "locked", "expired", "none"]


@dataclass(slots=True)
class _Code:
    digest: bytes
    expires: float
    attempts_left: int


@dataclass(frozen=True, slots=True)
class PendingVerification:
    id: str
    person_id: str
    email: str
    display_name: str
    action: str
    expires: float


class VerificationStore:
    def __init__(
        self,
        *,
        code_ttl_seconds: float = 600,
        max_attempts: int = 3,
        grant_seconds: float = 900,
        approval_ttl_seconds: float = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._code_ttl = code_ttl_seconds
        self._max_attempts = max_attempts
        self._grant_seconds = grant_seconds
        self._approval_ttl = approval_ttl_seconds
        self._clock = clock
        self._codes: dict[tuple[str, str], _Code] = {}
        self._grants: dict[tuple[str, str], float] = {}
        self._pending: dict[str, PendingVerification] = {}

    def _digest(self, person_id: str, action: str, code: str) -> bytes:
        message = f"{person_id}\x00{action}\x00{code.strip()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    # ----- one-time codes -----

    def issue_code(self, person_id: str, action: str) -> str:
        """A fresh 6-digit code; any earlier one for this person and action stops working."""
        code = f"{secrets.randbelow(1_000_000):06d}"
        self._codes[(person_id, action)] = _Code(
            self._digest(person_id, action, code), self._clock() + self._code_ttl, self._max_attempts
        )
        return code

    def check_code(self, person_id: str, action: str, code: str) -> CheckResult:
        entry = self._codes.get((person_id, action))
        if entry is None:
            return "none"
        if self._clock() >= entry.expires:
            del self._codes[(person_id, action)]
            return "expired"
        if hmac.compare_digest(entry.digest, self._digest(person_id, action, code)):
            del self._codes[(person_id, action)]
            return "ok"
        entry.attempts_left -= 1
        if entry.attempts_left <= 0:
            del self._codes[(person_id, action)]
            return "locked"
        return "wrong"

    def attempts_left(self, person_id: str, action: str) -> int:
        entry = self._codes.get((person_id, action))
        return entry.attempts_left if entry else 0

    # ----- grants -----

    def grant(self, person_id: str, action: str) -> None:
        self._grants[(person_id, action)] = self._clock() + self._grant_seconds

    def has_grant(self, person_id: str, action: str) -> bool:
        until = self._grants.get((person_id, action))
        if until is None:
            return False
        if self._clock() >= until:
            del self._grants[(person_id, action)]
            return False
        return True

    def consume_grant(self, person_id: str, action: str) -> None:
        self._grants.pop((person_id, action), None)

    # ----- technician approval -----

    def open_request(self, person_id: str, email: str, display_name: str, action: str) -> PendingVerification:
        pending = PendingVerification(
            id="ver-" + secrets.token_hex(8),
            person_id=person_id,
            email=email,
            display_name=display_name,
            action=action,
            expires=self._clock() + self._approval_ttl,
        )
        self._pending[pending.id] = pending
        return pending

    def pending_for(self, person_id: str, action: str) -> PendingVerification | None:
        now = self._clock()
        for pending in list(self._pending.values()):
            if now >= pending.expires:
                del self._pending[pending.id]
            elif pending.person_id == person_id and pending.action == action:
                return pending
        return None

    def take_pending(self, request_id: str) -> PendingVerification | None:
        pending = self._pending.pop(request_id, None)
        if pending is None or self._clock() >= pending.expires:
            return None
        return pending
