"""The `Directory` port: what self-service needs from the identity platform, as plain data.

Two implementations pass one contract suite (tests/integration/test_directory_contract.py):
`GraphDirectory` (Microsoft Graph through MSAL + httpx) and `DemoDirectory` (a YAML file).

Errors are `DirectoryError` subclasses chosen from Graph's `error.code` and HTTP status, never from
message text. Nothing here carries a secret except `TemporaryAccessPass.value` and the password
argument of `reset_password`, which are never logged (their `repr` hides them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

DeviceCommand = Literal["sync", "restart"]
Audience = Literal["none", "contactsOnly", "all"]
StorageState = Literal["normal", "nearing", "critical", "exceeded", "unknown"]


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    id: str
    email: str
    display_name: str
    user_principal_name: str = ""
    enabled: bool = True
    department: str | None = None
    job_title: str | None = None
    last_password_change: datetime | None = None
    # Synced from on-premises AD: a cloud password reset would not reach the real account.
    on_premises_sync: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str  # mailNickname in Graph
    display_name: str
    protected: bool = False  # demo only: a role-assignable / privileged group
    description: str = ""


@dataclass(frozen=True, slots=True)
class Memberships:
    """Transitive group memberships and Entra directory roles held."""

    groups: tuple[Group, ...] = ()
    directory_roles: tuple[str, ...] = ()

    def has_group(self, name_or_id: str) -> bool:
        key = name_or_id.casefold()
        return any(
            key in (g.id.casefold(), g.name.casefold(), g.display_name.casefold()) for g in self.groups
        )


@dataclass(frozen=True, slots=True)
class AccountDetails:
    user: DirectoryUser
    licenses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthMethod:
    """A registered sign-in method that can be removed (a lost phone)."""

    id: str
    kind: Literal["phone", "authenticator"]
    label: str  # "mobile +1 555 0100" (masked as Graph returns it), "Authenticator on Pixel 8"


@dataclass(frozen=True, slots=True)
class TemporaryAccessPass:
    value: str = field(repr=False)
    lifetime_minutes: int
    usable_once: bool
    starts: datetime | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ManagedDevice:
    id: str
    name: str
    operating_system: str
    os_version: str = ""
    compliance: str = "unknown"
    last_sync: datetime | None = None


@dataclass(frozen=True, slots=True)
class StorageUsage:
    kind: Literal["mailbox", "onedrive"]
    used_bytes: int
    total_bytes: int
    state: StorageState = "unknown"

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True, slots=True)
class AutoReplies:
    status: Literal["disabled", "alwaysEnabled", "scheduled"]
    internal_html: str = ""
    external_html: str = ""
    external_audience: Audience = "none"
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a change call returns: Graph's request id, for the audit trail."""

    request_id: str | None = None


# ----- errors -----------------------------------------------------------------------------------


class DirectoryError(Exception):
    """A directory call failed. `cause` is a stable machine name; `code` is Graph's error.code."""

    cause = "failed"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status
        self.request_id = request_id
        self.operation = operation


class NotFound(DirectoryError):
    cause = "not_found"


class BadRequest(DirectoryError):
    cause = "bad_request"


class PermissionMissing(DirectoryError):
    """403: the app lacks a Graph permission or an Entra role (or a licence / conditional access)."""

    cause = "permission_missing"

    def __init__(
        self,
        detail: str,
        *,
        required: str = "",
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(detail, code=code, status=status, request_id=request_id, operation=operation)
        self.required = required


class Throttled(DirectoryError):
    """Still throttled (429) when the retry budget ran out."""

    cause = "throttled"


class Unavailable(DirectoryError):
    """Graph unreachable, 5xx, or timed out."""

    cause = "unavailable"


class TokenFailure(DirectoryError):
    """The identity platform refused a token (bad secret, expired certificate, unknown tenant)."""

    cause = "token_failure"


class NotConfigured(DirectoryError):
    cause = "not_configured"


# ----- the port ---------------------------------------------------------------------------------


class Directory(Protocol):
    """The people, groups, devices and mailboxes self-service acts on. Every method is a few Graph
    calls at most; nothing is cached here (the resolver caches people)."""

    backend: str

    async def get_user(self, user_id: str) -> DirectoryUser | None: ...

    async def find_user_by_email(self, email: str) -> DirectoryUser | None: ...

    async def account_details(self, user_id: str) -> AccountDetails: ...

    async def memberships(self, user_id: str) -> Memberships: ...

    async def alternate_email(self, user_id: str) -> str | None:
        """The email registered for verification (authentication email method, else otherMails)."""
        ...

    async def find_group(self, name_or_id: str) -> Group | None: ...

    async def search_groups(self, words: Sequence[str], *, limit: int = 25) -> Sequence[Group]:
        """Groups whose display name, mail nickname or description has a word starting with one of
        `words` (Graph `$search`, tokenised prefix match); the caller ranks them (fuzzy)."""
        ...

    async def group_owners(self, group_id: str) -> Sequence[DirectoryUser]: ...

    async def add_group_member(self, group_id: str, user_id: str) -> tuple[bool, Receipt]:
        """Add a member. Returns (False, receipt) when the user already was one: that is success."""
        ...

    async def reset_password(self, user_id: str, password: str, *, force_change: bool = True) -> Receipt: ...

    async def revoke_sessions(self, user_id: str) -> Receipt: ...

    async def create_temporary_access_pass(
        self, user_id: str, *, lifetime_minutes: int, usable_once: bool
    ) -> TemporaryAccessPass: ...

    async def auth_methods(self, user_id: str) -> Sequence[AuthMethod]: ...

    async def remove_auth_method(self, user_id: str, method: AuthMethod) -> Receipt: ...

    async def managed_devices(self, user_id: str) -> Sequence[ManagedDevice]: ...

    async def device_command(self, device_id: str, command: DeviceCommand) -> Receipt: ...

    async def automatic_replies(self, user_id: str) -> AutoReplies: ...

    async def set_automatic_replies(self, user_id: str, replies: AutoReplies) -> Receipt: ...

    async def mailbox_usage(self, user: DirectoryUser) -> StorageUsage | None: ...

    async def onedrive_usage(self, user_id: str) -> StorageUsage | None: ...

    async def send_mail(self, sender: str, to: str, subject: str, text: str) -> Receipt: ...

    async def aclose(self) -> None: ...
