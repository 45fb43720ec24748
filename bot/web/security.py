"""Sessions, CSRF and response headers for the web console.

A session is a cookie holding `base64url(json).base64url(hmac_sha256)`: the person's email, how they
signed in, when it expires and the session's CSRF token. Nothing else is trusted from the browser:
roles are looked up from the `roles:` settings on every request (bot/web/console.py). The signing
key comes from HELPDESK_WEB__SESSION_SECRET, or is random per process (the demo).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "hd_console"
PRE_COOKIE = "hd_console_pre"  # CSRF token of the sign-in form, before there is a session
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 64 * 1024

# No inline script or style, nothing from another origin; the console is never framed.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    email: str
    method: str  # demo | entra | slack
    csrf: str
    expires: float


class SessionCodec:
    """Signs and checks session cookies; expiry follows the injected clock."""

    def __init__(self, secret: bytes, minutes: int, clock: Callable[[], datetime]) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        self._key = hashlib.sha256(b"helpdesk-console-session|" + secret).digest()
        self.minutes = minutes
        self.clock = clock

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self, email: str, method: str) -> tuple[str, Session]:
        now = self.clock().timestamp()
        session = Session(email.strip().lower(), method, secrets.token_urlsafe(24), now + self.minutes * 60)
        body = _b64(json.dumps({"e": session.email, "m": method, "c": session.csrf, "iat": int(now),
                                "exp": session.expires}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}", session

    def read(self, value: str | None) -> Session | None:
        """The session, or None when the cookie is missing, forged, malformed or expired."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(self._mac(body), mac):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["e"]), str(data["m"]), str(data["c"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if session.expires <= self.clock().timestamp() or not session.email:
            return None
        return session


def is_local(request: Request) -> bool:
    host = (request.url.hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1", "testserver") or host.endswith(".localhost")


def cookie_options(request: Request) -> dict[str, Any]:
    """HttpOnly and SameSite always; Secure everywhere but a developer's own machine."""
    return {"httponly": True, "samesite": "lax", "secure": not is_local(request) or request.url.scheme == "https",
            "path": "/console"}


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


class FormError(Exception):
    pass


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form, at most 64 KB, one value per name (the last wins)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise FormError("expected a form (application/x-www-form-urlencoded)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise FormError("the form is too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("the form is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError("the form is not UTF-8") from exc
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


class SecurityHeaders:
    """ASGI middleware: the headers above on every console response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.decode("latin-1").lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name not in present:
                        headers.append((name.encode("latin-1"), value.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
