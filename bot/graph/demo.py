"""`Directory` from `config/demo_directory.yaml`: a fictional organisation with the same semantics
as Graph (already-a-member is success, disabled accounts, privileged accounts, weak passwords
refused, unknown objects not found), so every self-service path works with no tenant.

State changes live in memory for the life of the process. Secrets are never kept: a password reset
records only that it happened; a Temporary Access Pass is returned and forgotten. `sent_mail`
records verification mails so tests (and only tests) can read the code.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bot.graph.directory import (
    AccountDetails,
    AuthMethod,
    AutoReplies,
    BadRequest,
    DeviceCommand,
    DirectoryError,
    DirectoryUser,
    Group,
    ManagedDevice,
    Memberships,
    NotFound,
    Receipt,
    StorageState,
    StorageUsage,
    TemporaryAccessPass,
)

MB = 1024 * 1024


@dataclass(slots=True)
class DemoPerson:
    user: DirectoryUser
    alternate_email: str | None = None
    groups: set[str] = field(default_factory=set)  # group ids
    licenses: tuple[str, ...] = ()
    directory_roles: tuple[str, ...] = ()
    mailbox: tuple[int, int] | None = None  # used, quota (bytes)
    onedrive: tuple[int, int] | None = None
    devices: list[ManagedDevice] = field(default_factory=list)
    auth_methods: list[AuthMethod] = field(default_factory=list)
    auto_replies: AutoReplies = field(default_factory=lambda: AutoReplies(status="disabled"))


@dataclass(frozen=True, slots=True)
class SentMail:
    sender: str
    to: str
    subject: str
    text: str


def password_meets_policy(password: str) -> bool:
    """Entra's rule for cloud accounts: 8-256 characters, three of four character classes."""
    classes = sum(
        bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^a-zA-Z0-9]")
    )
    return 8 <= len(password) <= 256 and classes >= 3


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _storage(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, dict):
        return None
    return int(value.get("used_mb", 0)) * MB, int(value.get("quota_mb", 0)) * MB


def _state(used: int, total: int) -> StorageState:
    if not total:
        return "unknown"
    ratio = used / total
    if ratio >= 1:
        return "exceeded"
    if ratio >= 0.98:
        return "critical"
    if ratio >= 0.90:
        return "nearing"
    return "normal"


def _rid() -> str:
    return str(uuid.uuid4())


class DemoDirectory:
    backend = "demo"

    def __init__(self, data: dict[str, Any]) -> None:
        self.groups: dict[str, Group] = {}
        self.owners: dict[str, list[str]] = {}  # group id -> user ids
        self.people: dict[str, DemoPerson] = {}
        self.sent_mail: list[SentMail] = []
        # Audit of what the demo "did", without secrets: (operation, target id).
        self.calls: list[tuple[str, str]] = []
        self._failures: dict[str, list[DirectoryError]] = {}
        by_name: dict[str, str] = {}
        for raw in data.get("groups") or []:
            group = Group(
                id=str(raw["id"]),
                name=str(raw["name"]),
                display_name=str(raw.get("display_name") or raw["name"]),
                protected=bool(raw.get("protected", False)),
                description=str(raw.get("description") or ""),
            )
            self.groups[group.id] = group
            by_name[group.name.casefold()] = group.id
        email_to_id: dict[str, str] = {}
        for raw in data.get("users") or []:
            email = str(raw["email"])
            user = DirectoryUser(
                id=str(raw["id"]),
                email=email,
                display_name=str(raw.get("display_name") or email),
                user_principal_name=str(raw.get("upn") or email),
                enabled=bool(raw.get("enabled", True)),
                department=raw.get("department"),
                job_title=raw.get("job_title"),
                last_password_change=_time(raw.get("last_password_change")),
                on_premises_sync=bool(raw.get("on_premises_sync", False)),
            )
            roles = tuple(str(r) for r in raw.get("directory_roles") or ())
            if raw.get("protected") and not roles:
                roles = ("Privileged account",)
            person = DemoPerson(
                user=user,
                alternate_email=raw.get("alternate_email"),
                groups={by_name[g.casefold()] for g in raw.get("groups") or () if g.casefold() in by_name},
                licenses=tuple(str(x) for x in raw.get("licenses") or ()),
                directory_roles=roles,
                mailbox=_storage(raw.get("mailbox")),
                onedrive=_storage(raw.get("onedrive")),
                devices=[
                    ManagedDevice(
                        id=str(d["id"]),
                        name=str(d.get("name") or d["id"]),
                        operating_system=str(d.get("os") or ""),
                        os_version=str(d.get("os_version") or ""),
                        compliance=str(d.get("compliance") or "unknown"),
                        last_sync=_time(d.get("last_sync")),
                    )
                    for d in raw.get("devices") or ()
                ],
                auth_methods=[
                    AuthMethod(id=str(m["id"]), kind=m["kind"], label=str(m.get("label") or m["kind"]))
                    for m in raw.get("auth_methods") or ()
                ],
            )
            self.people[user.id] = person
            email_to_id[email.casefold()] = user.id
        for raw in data.get("groups") or []:
            self.owners[str(raw["id"])] = [
                email_to_id[o.casefold()] for o in raw.get("owners") or () if o.casefold() in email_to_id
            ]

    @classmethod
    def from_file(cls, path: str | Path) -> DemoDirectory:
        with open(path, encoding="utf-8") as handle:
            return cls(yaml.safe_load(handle) or {})

    async def aclose(self) -> None:
        return None

    # ----- test hooks -----

    def fail_next(self, operation: str, error: DirectoryError) -> None:
        """Make the next call of `operation` raise `error` (tests and failure demos)."""
        self._failures.setdefault(operation, []).append(error)

    def _enter(self, operation: str, target: str = "") -> None:
        queue = self._failures.get(operation)
        if queue:
            raise queue.pop(0)
        self.calls.append((operation, target))

    def _person(self, user_id: str, operation: str) -> DemoPerson:
        person = self.people.get(user_id)
        if person is None:
            raise NotFound(
                f"{operation}: no user {user_id}",
                code="Request_ResourceNotFound",
                status=404,
                operation=operation,
            )
        return person

    # ----- people -----

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        self._enter("get_user", user_id)
        person = self.people.get(user_id)
        if person is None:  # Graph also accepts the UPN in the path
            person = next(
                (
                    p
                    for p in self.people.values()
                    if p.user.user_principal_name.casefold() == user_id.casefold()
                ),
                None,
            )
        return person.user if person else None

    async def find_user_by_email(self, email: str) -> DirectoryUser | None:
        self._enter("find_user", email)
        wanted = email.strip().casefold()
        for person in self.people.values():
            if wanted in (person.user.email.casefold(), person.user.user_principal_name.casefold()):
                return person.user
        return None

    async def account_details(self, user_id: str) -> AccountDetails:
        self._enter("account_details", user_id)
        person = self._person(user_id, "account_details")
        return AccountDetails(user=person.user, licenses=person.licenses)

    async def memberships(self, user_id: str) -> Memberships:
        self._enter("memberships", user_id)
        person = self._person(user_id, "memberships")
        groups = tuple(self.groups[g] for g in sorted(person.groups) if g in self.groups)
        return Memberships(groups=groups, directory_roles=person.directory_roles)

    async def alternate_email(self, user_id: str) -> str | None:
        self._enter("alternate_email", user_id)
        return self._person(user_id, "alternate_email").alternate_email

    # ----- groups -----

    async def find_group(self, name_or_id: str) -> Group | None:
        self._enter("find_group", name_or_id)
        key = name_or_id.casefold()
        for group in self.groups.values():
            if key in (group.id.casefold(), group.name.casefold(), group.display_name.casefold()):
                return group
        return None

    async def search_groups(self, words: Sequence[str], *, limit: int = 25) -> Sequence[Group]:
        self._enter("search_groups", " ".join(words))
        prefixes = [w.casefold() for w in words if w]
        found = []
        for group in self.groups.values():
            tokens = re.split(r"[^\w]+", f"{group.display_name} {group.name} {group.description}".casefold())
            if any(t.startswith(p) for t in tokens if t for p in prefixes):
                found.append(group)
        return found[:limit]

    async def group_owners(self, group_id: str) -> Sequence[DirectoryUser]:
        self._enter("group_owners", group_id)
        if group_id not in self.groups:
            raise NotFound(
                f"group_owners: no group {group_id}",
                code="Request_ResourceNotFound",
                status=404,
                operation="group_owners",
            )
        return [self.people[uid].user for uid in self.owners.get(group_id, [])]

    async def add_group_member(self, group_id: str, user_id: str) -> tuple[bool, Receipt]:
        self._enter("add_group_member", f"{group_id}:{user_id}")
        if group_id not in self.groups:
            raise NotFound(
                "add_group_member: no such group",
                code="Request_ResourceNotFound",
                status=404,
                operation="add_group_member",
            )
        person = self._person(user_id, "add_group_member")
        if group_id in person.groups:
            return False, Receipt(_rid())
        person.groups.add(group_id)
        return True, Receipt(_rid())

    # ----- credentials and sessions -----

    async def reset_password(self, user_id: str, password: str, *, force_change: bool = True) -> Receipt:
        self._enter("reset_password", user_id)
        person = self._person(user_id, "reset_password")
        if not password_meets_policy(password):
            raise BadRequest(
                "reset_password: password does not meet the complexity policy",
                code="Request_BadRequest",
                status=400,
                operation="reset_password",
            )
        # The directory's own clock, as Entra stamps lastPasswordChangeDateTime server-side (the demo
        # directory stands in for the server; it is not code governed by the app's clock).
        person.user = replace(person.user, last_password_change=datetime.now(UTC))
        return Receipt(_rid())

    async def revoke_sessions(self, user_id: str) -> Receipt:
        self._enter("revoke_sessions", user_id)
        self._person(user_id, "revoke_sessions")
        return Receipt(_rid())

    async def create_temporary_access_pass(
        self, user_id: str, *, lifetime_minutes: int, usable_once: bool
    ) -> TemporaryAccessPass:
        self._enter("create_tap", user_id)
        self._person(user_id, "create_tap")
        if not 10 <= lifetime_minutes <= 43200:
            raise BadRequest(
                "create_tap: lifetime out of range", code="badRequest", status=400, operation="create_tap"
            )
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789@#$%&"
        value = "".join(secrets.choice(alphabet) for _ in range(12))
        return TemporaryAccessPass(
            value=value,
            lifetime_minutes=lifetime_minutes,
            usable_once=usable_once,
            starts=datetime.now(UTC),  # Entra's startDateTime: the directory server's clock
            request_id=_rid(),
        )

    async def auth_methods(self, user_id: str) -> Sequence[AuthMethod]:
        self._enter("auth_methods", user_id)
        return list(self._person(user_id, "auth_methods").auth_methods)

    async def remove_auth_method(self, user_id: str, method: AuthMethod) -> Receipt:
        self._enter("remove_auth_method", f"{user_id}:{method.id}")
        person = self._person(user_id, "remove_auth_method")
        kept = [m for m in person.auth_methods if not (m.id == method.id and m.kind == method.kind)]
        if len(kept) == len(person.auth_methods):
            raise NotFound(
                "remove_auth_method: no such method",
                code="itemNotFound",
                status=404,
                operation="remove_auth_method",
            )
        person.auth_methods = kept
        return Receipt(_rid())

    # ----- devices -----

    async def managed_devices(self, user_id: str) -> Sequence[ManagedDevice]:
        self._enter("managed_devices", user_id)
        return list(self._person(user_id, "managed_devices").devices)

    async def device_command(self, device_id: str, command: DeviceCommand) -> Receipt:
        self._enter("device_command", f"{device_id}:{command}")
        if not any(d.id == device_id for p in self.people.values() for d in p.devices):
            raise NotFound(
                "device_command: no such device",
                code="ResourceNotFound",
                status=404,
                operation="device_command",
            )
        return Receipt(_rid())

    # ----- mailbox -----

    async def automatic_replies(self, user_id: str) -> AutoReplies:
        self._enter("automatic_replies", user_id)
        return self._person(user_id, "automatic_replies").auto_replies

    async def set_automatic_replies(self, user_id: str, replies: AutoReplies) -> Receipt:
        self._enter("set_automatic_replies", user_id)
        self._person(user_id, "set_automatic_replies").auto_replies = replies
        return Receipt(_rid())

    async def mailbox_usage(self, user: DirectoryUser) -> StorageUsage | None:
        self._enter("mailbox_usage", user.id)
        person = self.people.get(user.id)
        if person is None or person.mailbox is None:
            return None
        used, total = person.mailbox
        return StorageUsage("mailbox", used, total, _state(used, total))

    async def onedrive_usage(self, user_id: str) -> StorageUsage | None:
        self._enter("onedrive_usage", user_id)
        person = self.people.get(user_id)
        if person is None or person.onedrive is None:
            return None
        used, total = person.onedrive
        return StorageUsage("onedrive", used, total, _state(used, total))

    async def send_mail(self, sender: str, to: str, subject: str, text: str) -> Receipt:
        self._enter("send_mail", to)
        self.sent_mail.append(SentMail(sender=sender, to=to, subject=subject, text=text))
        return Receipt(_rid())
