"""Sign-in for the web console: Microsoft Entra ID (OpenID Connect, authorization code + PKCE through
MSAL) or Sign in with Slack (OpenID Connect) in production, and a local demo sign-in only with the demo
directory.

Both OpenID Connect sign-ins have one shape, used by the console's one flow mechanism (state kept
server-side, used once): `start(redirect_uri)` gives the flow (with `state` and `auth_uri`, where the
browser goes next) and `finish(flow, answer)` gives the platform user the provider vouches for.

Neither validates the ID token's signature: it comes straight from the provider's token endpoint over
TLS in exchange for our client secret (OpenID Connect Core 3.1.3.7, item 6). We check what matters
here: our client as the audience, the issuer, the tenant or workspace, the nonce, and the times.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from bot.core.models import Platform, PlatformUser
from bot.core.ports import AccountUnavailable, PlatformAccounts
from bot.settings import Settings

log = logging.getLogger("bot.web.auth")


class SignInError(Exception):
    """Sign-in failed; the message is safe to show (no codes, tokens or secrets)."""


SLACK_ISSUER = "https://slack.com"
CLOCK_SKEW_SECONDS = 120
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def slack_is_the_platform(settings: Settings) -> bool:
    """Slack is the deployment's chat platform: Slack is enabled and Teams is not."""
    return settings.slack.enabled and not settings.teams.enabled


def sign_in_method(settings: Settings) -> str:
    """demo | entra | slack (problems, if any, are shown on the console's sign-in page)."""
    chosen = settings.web.sign_in
    if chosen == "auto":
        if settings.directory.backend == "demo":
            return "demo"
        if slack_is_the_platform(settings) and settings.web.slack_client_id:
            return "slack"
        return "entra"
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


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def slack_token_url(settings: Settings) -> str:
    return urljoin(settings.slack.api_url.rstrip("/") + "/", "openid.connect.token")


def slack_problems(settings: Settings) -> list[str]:
    """What Sign in with Slack still needs; `helpdesk serve` refuses to start while any is left."""
    if sign_in_method(settings) != "slack":
        return []
    web = settings.web
    missing = []
    if not web.slack_client_id:
        missing.append("web.slack_client_id")
    if not _secret(web.slack_client_secret):
        missing.append("HELPDESK_WEB__SLACK_CLIENT_SECRET")
    if not web.slack_team_id:
        missing.append("web.slack_team_id (the workspace's id, T...)")
    if not _secret(settings.slack.bot_token):
        missing.append("HELPDESK_SLACK__BOT_TOKEN (finds the person from their Slack account)")
    problems = []
    if missing:
        problems.append(f"web console Sign in with Slack needs {', '.join(missing)} (see docs/console.md)")
    token_url = urlsplit(slack_token_url(settings))
    if token_url.scheme != "https" and token_url.hostname not in LOOPBACK:
        problems.append("web console Sign in with Slack needs slack.api_url over https:// (the ID token is "
                        "trusted because it comes straight from Slack over TLS)")
    return problems


def sign_in_problems(settings: Settings) -> list[str]:
    return entra_problems(settings) + slack_problems(settings)


class EntraSignIn:
    """Authorization code flow with PKCE against the tenant's Entra ID authority."""

    method = "entra"
    provider = "Microsoft"

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

    def _finish(self, flow: Mapping[str, Any], response: Mapping[str, str]) -> PlatformUser:
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

    def check_claims(self, claims: Mapping[str, Any]) -> PlatformUser:
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
        return PlatformUser(Platform.CONSOLE, email, email=email)

    async def finish(self, flow: Mapping[str, Any], response: Mapping[str, str]) -> PlatformUser:
        return await asyncio.to_thread(self._finish, flow, response)

    def close(self) -> None:
        if self._owns_http and self._http is not None:
            self._http.close()
            self._http = None


def _jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a compact JWT (header.payload.signature), unverified (see the module docstring)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise SignInError("Slack's answer had no valid ID token; please sign in again.")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise SignInError("Slack's answer had no valid ID token; please sign in again.") from None
    if not isinstance(claims, dict):
        raise SignInError("Slack's answer had no valid ID token; please sign in again.")
    return claims


SLACK_ERRORS = {
    "invalid_code": "Slack did not accept the sign-in code (it expired or was already used); please sign in "
                    "again.",
    "bad_redirect_uri": "Slack refused the sign-in: the console's address is not a redirect URL of the Slack app "
                        "(see docs/console.md).",
    "invalid_client_id": "Slack refused the sign-in: the console's Slack app settings are wrong; tell an admin.",
    "bad_client_secret": "Slack refused the sign-in: the console's Slack app settings are wrong; tell an admin.",
}


class SlackSignIn:
    """Sign in with Slack: OpenID Connect authorization code flow against slack.com.

    Slack's OpenID configuration (https://slack.com/.well-known/openid-configuration) advertises no
    PKCE (`code_challenge_methods_supported`), so none is sent: the one-time `state`, the `nonce` in
    the ID token and the client secret (client_secret_post) protect the flow. The person is found from
    the Slack user id in the ID token the way the bot finds message senders (users.info with the bot
    token → profile email → directory), never from anything the person typed.
    """

    method = "slack"
    provider = "Slack"

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime],
                 http_client: httpx.AsyncClient | None = None, accounts: PlatformAccounts | None = None) -> None:
        self.settings = settings
        self.client_id = settings.web.slack_client_id
        self._secret = _secret(settings.web.slack_client_secret)
        self.team_id = settings.web.slack_team_id
        self.token_url = slack_token_url(settings)
        self.authorize_url = urljoin(settings.slack.api_url, "/openid/connect/authorize")
        self.clock = clock
        self._http = http_client
        self._owns_http = http_client is None
        self._accounts = accounts

    async def start(self, redirect_uri: str) -> dict[str, Any]:
        """The flow (kept server-side) with `auth_uri`, where the browser goes next."""
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        query = {"response_type": "code", "scope": "openid", "client_id": self.client_id, "state": state,
                 "nonce": nonce, "redirect_uri": redirect_uri, "team": self.team_id}
        return {"state": state, "nonce": nonce, "redirect_uri": redirect_uri,
                "auth_uri": f"{self.authorize_url}?{urlencode(query)}"}

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.slack.api_timeout_seconds, trust_env=True)
        return self._http

    async def _token(self, code: str, redirect_uri: str) -> dict[str, Any]:
        """openid.connect.token: HTTP 200 with `ok: true` and the `id_token`, or `ok: false` and `error`."""
        form = {"client_id": self.client_id, "client_secret": self._secret, "code": code,
                "redirect_uri": redirect_uri, "grant_type": "authorization_code"}
        try:
            answer = await self._client().post(self.token_url, data=form)
        except httpx.HTTPError as exc:
            log.warning("Slack openid.connect.token unreachable: %s", type(exc).__name__)
            raise SignInError("Slack sign-in is unreachable right now; try again in a minute.") from None
        if answer.status_code == 429 or answer.status_code >= 500:
            log.warning("Slack openid.connect.token answered HTTP %s", answer.status_code)
            raise SignInError("Slack is busy right now; try again in a minute.")
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log.warning("Slack openid.connect.token answered HTTP %s without JSON", answer.status_code)
            raise SignInError("Slack sign-in is unreachable right now; try again in a minute.")
        if not body.get("ok"):
            error = str(body.get("error") or "unknown")[:60]
            log.warning("Sign in with Slack refused by Slack: %s", error)
            raise SignInError(SLACK_ERRORS.get(error, f"Slack refused the sign-in ({error}); please sign in again."))
        return body

    def check_claims(self, claims: Mapping[str, Any], nonce: str) -> str:
        """The Slack user id from ID token claims, or SignInError."""
        audience = claims.get("aud")
        if audience != self.client_id and not (isinstance(audience, list) and self.client_id in audience):
            raise SignInError("The sign-in token was not issued to this console.")
        if claims.get("iss") != SLACK_ISSUER:
            raise SignInError("The sign-in token came from an unexpected issuer.")
        if not nonce or not hmac.compare_digest(str(claims.get("nonce", "")), str(nonce)):
            raise SignInError("The sign-in answer did not match this browser's request; please sign in again.")
        now = self.clock().timestamp()
        try:
            expires, issued = float(claims["exp"]), float(claims.get("iat", 0))
        except (KeyError, TypeError, ValueError):
            raise SignInError("The sign-in token has no valid expiry; please sign in again.") from None
        if expires + CLOCK_SKEW_SECONDS < now:
            raise SignInError("The sign-in token has expired; please sign in again.")
        if issued - CLOCK_SKEW_SECONDS > now:
            raise SignInError("The sign-in token is dated in the future; check this server's clock.")
        if str(claims.get("https://slack.com/team_id", "")) != self.team_id:
            raise SignInError("That Slack account belongs to another workspace; sign in with your account in "
                              "this organisation's Slack.")
        user_id = str(claims.get("https://slack.com/user_id") or claims.get("sub") or "")
        if not user_id:
            raise SignInError("The sign-in token names no Slack user; please sign in again.")
        return user_id

    async def _person_of(self, user_id: str) -> PlatformUser:
        if self._accounts is None:  # `helpdesk serve` refuses Sign in with Slack without a bot token
            raise SignInError("Slack sign-in cannot look people up: the Slack bot token is not configured.")
        try:
            return await self._accounts.account(user_id)
        except AccountUnavailable:
            raise SignInError("Slack is busy right now; try again in a minute.") from None

    async def finish(self, flow: Mapping[str, Any], response: Mapping[str, str]) -> PlatformUser:
        if not hmac.compare_digest(str(response.get("state", "")), str(flow.get("state", ""))):
            raise SignInError("The sign-in answer did not match this browser's request; please sign in again.")
        code = str(response.get("code", ""))
        if not code:
            raise SignInError("Slack's answer had no sign-in code; please sign in again.")
        body = await self._token(code, str(flow.get("redirect_uri", "")))
        user_id = self.check_claims(_jwt_claims(str(body.get("id_token", ""))), str(flow.get("nonce", "")))
        return await self._person_of(user_id)

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None
