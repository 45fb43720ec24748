"""Sign-in for the web console: Microsoft Entra ID (OpenID Connect, authorization code + PKCE through
MSAL) in production, and a local demo sign-in only with the demo directory.

MSAL (1.38+) no longer validates the ID token; we check what matters here: it came straight from
the configured token endpoint over TLS (OpenID Connect Core 3.1.3.7), it names our client as the
audience, the configured tenant, the issuer from the tenant's metadata, and it has not expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import httpx

from bot.settings import Settings

log = logging.getLogger("bot.web.auth")


class SignInError(Exception):
    """Sign-in failed; the message is safe to show (no codes, tokens or secrets)."""


def sign_in_method(settings: Settings) -> str:
    """demo | entra | none (with the reason in the console's sign-in page)."""
    chosen = settings.web.sign_in
    if chosen == "auto":
        return "demo" if settings.directory.backend == "demo" else "entra"
    return chosen


def demo_allowed(settings: Settings) -> bool:
    """The local demo sign-in: only in the embedded default, never with a real directory."""
    return settings.directory.backend == "demo" and sign_in_method(settings) == "demo"


def entra_problems(settings: Settings) -> list[str]:
    if sign_in_method(settings) != "entra":
        return []
    missing = []
    if not settings.graph.tenant_id:
        missing.append("graph.tenant_id")
    if not (settings.web.entra_client_id or settings.graph.client_id):
        missing.append("web.entra_client_id (or graph.client_id)")
    if not (settings.web.entra_client_secret or settings.graph.client_secret):
        missing.append("HELPDESK_WEB__ENTRA_CLIENT_SECRET (or HELPDESK_GRAPH__CLIENT_SECRET)")
    return [f"web console sign-in with Entra ID needs {', '.join(missing)} (see docs/console.md)"] if missing else []


class EntraSignIn:
    """Authorization code flow with PKCE against the tenant's Entra ID authority."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime],
                 http_client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.tenant = settings.graph.tenant_id
        self.client_id = settings.web.entra_client_id or settings.graph.client_id
        secret = settings.web.entra_client_secret or settings.graph.client_secret
        self._secret = secret.get_secret_value() if secret is not None else ""
        self.authority = f"{settings.graph.authority_host.rstrip('/')}/{self.tenant}"
        self.clock = clock
        self._http = http_client
        self._owns_http = http_client is None
        self._msal: Any = None

    def _app(self) -> Any:
        if self._msal is None:
            import msal

            from bot.graph.graph_client import MsalHttpClient

            if self._http is None:
                self._http = httpx.Client(timeout=self.settings.graph.timeout_seconds, trust_env=True)
            self._msal = msal.ConfidentialClientApplication(
                self.client_id, client_credential=self._secret, authority=self.authority,
                instance_discovery=False, http_client=MsalHttpClient(self._http))
        return self._msal

    def _start(self, redirect_uri: str) -> dict[str, Any]:
        try:
            flow = self._app().initiate_auth_code_flow(scopes=[], redirect_uri=redirect_uri, response_mode="form_post",
                                                       prompt="select_account")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("Entra ID sign-in could not start: %s", type(exc).__name__)
            raise SignInError("Microsoft sign-in is unreachable right now; try again in a minute.") from None
        return dict(flow)

    async def start(self, redirect_uri: str) -> dict[str, Any]:
        """The MSAL flow (kept server-side) with `auth_uri`, where the browser goes next."""
        return await asyncio.to_thread(self._start, redirect_uri)

    def _finish(self, flow: Mapping[str, Any], response: Mapping[str, str]) -> str:
        try:
            result = self._app().acquire_token_by_auth_code_flow(dict(flow), dict(response))
        except ValueError as exc:  # state or nonce mismatch
            log.warning("Entra ID sign-in refused: %s", str(exc)[:120])
            raise SignInError("The sign-in answer did not match this browser's request; please sign in again.") \
                from None
        except httpx.HTTPError as exc:
            log.warning("Entra ID token endpoint unreachable: %s", type(exc).__name__)
            raise SignInError("Microsoft sign-in is unreachable right now; try again in a minute.") from None
        if not isinstance(result, dict) or "error" in result:
            error = result.get("error", "unknown") if isinstance(result, dict) else "unknown"
            log.warning("Entra ID sign-in refused by the identity platform: %s", error)
            raise SignInError(f"Microsoft refused the sign-in ({error}); please try again.")
        claims = result.get("id_token_claims") or {}
        return self.check_claims(claims)

    def check_claims(self, claims: Mapping[str, Any]) -> str:
        """The signed-in person's email from ID token claims, or SignInError."""
        audience = claims.get("aud")
        if audience != self.client_id and not (isinstance(audience, list) and self.client_id in audience):
            raise SignInError("The sign-in token was not issued to this console.")
        if str(claims.get("tid", "")) != self.tenant:
            raise SignInError("The account belongs to another organisation.")
        issuer = f"{self.authority}/v2.0"
        configured = getattr(self._app(), "authority", None)
        expected = getattr(configured, "_issuer", None) or issuer
        if claims.get("iss") not in (expected, issuer):
            raise SignInError("The sign-in token came from an unexpected issuer.")
        now = self.clock().timestamp()
        if float(claims.get("exp", 0)) + 120 < now:
            raise SignInError("The sign-in token has expired; please sign in again.")
        email = str(claims.get("preferred_username") or claims.get("email") or "").strip().lower()
        if "@" not in email:
            raise SignInError("The account has no email address the help desk knows.")
        return email

    async def finish(self, flow: Mapping[str, Any], response: Mapping[str, str]) -> str:
        return await asyncio.to_thread(self._finish, flow, response)

    def close(self) -> None:
        if self._owns_http and self._http is not None:
            self._http.close()
            self._http = None
