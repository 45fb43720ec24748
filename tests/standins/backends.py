"""Both directory backends behind one test harness: the demo directory, and the Graph directory
talking to the stand-in through `httpx.MockTransport` (MSAL included). Failure injection is by
directory operation, so one test runs unchanged against both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import yaml

from bot.core.models import Button
from bot.graph.demo import DemoDirectory
from bot.graph.directory import Directory, PermissionMissing, Throttled, Unavailable
from bot.graph.factory import build_directory
from bot.settings import Settings, load_settings
from tests.standins.graph import DEMO_FILE, GraphStandIn

# Where each directory operation lands on the wire (method, path regex without /v1.0).
OPERATION_PATHS: dict[str, tuple[str, str]] = {
    "reset_password": ("PATCH", r"^/users/[^/]+$"),
    "revoke_sessions": ("POST", r"/revokeSignInSessions$"),
    "create_tap": ("POST", r"/temporaryAccessPassMethods$"),
    "remove_auth_method": ("DELETE", r"/authentication/(phoneMethods|microsoftAuthenticatorMethods)/"),
    "add_group_member": ("POST", r"/members/\$ref$"),
    "device_command": ("POST", r"^/deviceManagement/managedDevices/[^/]+/(syncDevice|rebootNow)$"),
    "set_automatic_replies": ("PATCH", r"/mailboxSettings$"),
    "send_mail": ("POST", r"/sendMail$"),
    "memberships": ("GET", r"/transitiveMemberOf$"),
    "managed_devices": ("GET", r"/managedDevices$"),
    "onedrive_usage": ("GET", r"/drive$"),
    "mailbox_usage": ("GET", r"^/reports/"),
}


def settings_for(kind: str, **actions: Any) -> Settings:
    graph = {
        "tenant_id": "11111111-2222-4333-8444-555555555555",
        "client_id": "66666666-7777-4888-8999-000000000000",
        "retry_budget_seconds": 5,
        "mail_sender": "helpdesk@example.com" if kind == "graph" else "",
    }
    overrides: dict[str, Any] = {"directory": {"backend": kind}, "graph": graph}
    if actions:
        overrides["actions"] = actions
    if kind == "graph":
        # The Graph stand-in serves the demo organisation's people, so it gets the demo's roles and
        # policy too (config/demo.yaml is laid over the settings only for the demo backend).
        demo = yaml.safe_load((DEMO_FILE.parent / "demo.yaml").read_text(encoding="utf-8")) or {}
        for section, values in demo.items():
            for key, value in values.items():
                overrides.setdefault(section, {}).setdefault(key, value)
    settings = load_settings(None, **overrides)
    if kind == "graph":
        from pydantic import SecretStr

        settings.graph.client_secret = SecretStr("standin-client-secret")
    return settings


@dataclass
class Backend:
    kind: str
    directory: Directory
    settings: Settings
    standin: GraphStandIn | None = None

    @property
    def demo(self) -> DemoDirectory:
        assert isinstance(self.directory, DemoDirectory)
        return self.directory

    def sent_mail(self) -> list[tuple[str, str, str]]:
        if self.standin is not None:
            return [(m.to, m.subject, m.text) for m in self.standin.sent_mail]
        return [(m.to, m.subject, m.text) for m in self.demo.sent_mail]

    def fail(self, operation: str, kind: str) -> None:
        """Make the next `operation` fail: permission (403), throttled (429 past the budget),
        unavailable (503)."""
        if self.standin is not None:
            method, path = OPERATION_PATHS[operation]
            if kind == "permission":
                self.standin.fail(
                    method,
                    path,
                    403,
                    "Authorization_RequestDenied",
                    message="Insufficient privileges to complete the operation.",
                )
            elif kind == "throttled":
                self.standin.fail(method, path, 429, "TooManyRequests", retry_after="3600", times=50)
            elif kind == "server_error":
                self.standin.fail(method, path, 500, "generalException", times=50)
            else:
                self.standin.fail(method, path, 503, "serviceNotAvailable", times=50)
            return
        from bot.graph.graph_directory import REQUIRED

        error = {
            "permission": PermissionMissing(
                "denied",
                required=REQUIRED.get(operation, ""),
                status=403,
                code="Authorization_RequestDenied",
                operation=operation,
            ),
            "throttled": Throttled("throttled", status=429, code="TooManyRequests", operation=operation),
            "unavailable": Unavailable("down", status=503, code="serviceNotAvailable", operation=operation),
            "server_error": Unavailable("error", status=500, code="generalException", operation=operation),
        }[kind]
        self.demo.fail_next(operation, error)


def make_backend(kind: str, **actions: Any) -> Backend:
    settings = settings_for(kind, **actions)
    if kind == "demo":
        return Backend(kind, DemoDirectory.from_file(DEMO_FILE), settings)
    standin = GraphStandIn(page_size=2)  # small pages: every listing exercises nextLink
    directory = build_directory(
        settings,
        transport=standin.transport(),
        msal_http_client=httpx.Client(transport=standin.transport()),
    )
    # No real sleeping on Retry-After / backoff in tests.
    client = directory.client  # type: ignore[attr-defined]

    async def no_sleep(_: float) -> None:
        return None

    client._sleep = no_sleep
    return Backend(kind, directory, settings, standin)


@dataclass
class Notice:
    email: str
    text: str
    buttons: tuple[Button, ...]


@dataclass
class RecordingContext:
    """An `ActionContext` that keeps what it is given, and optionally writes events to a session
    like the core does (type + data), so approvals can read them back."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    session: Any = None

    def emit(self, type: str, **data: Any) -> None:
        self.events.append((type, dict(data)))
        if self.session is not None:
            from bot.store.tables import EventRow

            self.session.add(
                EventRow(
                    at=datetime.now(UTC),
                    type=type,
                    data=dict(data),
                    actor=data.get("by"),
                    subject=data.get("for"),
                    result=str(data.get("code") or data.get("decision") or "")[:64] or None,
                )
            )

    async def notify(self, email: str, text: str, buttons: Sequence[Button] = ()) -> None:
        self.notices.append(Notice(email, text, tuple(buttons)))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == type_]
