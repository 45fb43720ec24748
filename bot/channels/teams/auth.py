"""Authenticity of incoming Teams requests, and where the app's own token may go.

Incoming, as Microsoft documents it ("Authentication with the Bot Connector service") and as the
Bot Framework SDKs' `ChannelValidation` / `EmulatorValidation` implement it:

- **Bot Connector tokens**: issuer `teams.connector_issuer` (`https://api.botframework.com`), audience
  = our app id, signed (an algorithm the metadata's `id_token_signing_alg_values_supported` lists,
  RS256/384/512) by a key from the `jwks_uri` of the OpenID metadata at `teams.openid_metadata_url`
  whose `endorsements` (when the key has them) include the activity's `channelId`, a `serviceurl`
  claim exactly equal to the activity's `serviceUrl` (a missing claim is refused), and a lifetime
  (`exp` required, `nbf`) checked with 5 minutes' clock skew.
- **Entra-issued tokens** (Bot Framework Emulator, `teams.entra_issuers`, and our own tenant's
  issuers): only when they were issued *to this bot's own app*: audience = our app id and the
  authorized party (`appid` for v1.0 tokens, `azp` for v2.0) = our app id. A token for the bot
  from another app in the tenant is refused.
- Anything else (missing header, other issuer, unknown key, wrong audience, expired, unsigned) is
  a 401 before the activity is processed and before any outgoing call. Nothing about the token is
  logged but the reason's class.

Signing keys are READ from the configured OpenID metadata URL (public-cloud default; the national
cloud values are in docs/teams.md), cached for `teams.openid_cache_hours`, refreshed on an
unknown key id at most once per `teams.openid_refresh_min_seconds`, with a size cap (512 KB), a
key-count cap (100) and a 10 s timeout; a failed refresh keeps the keys already known.

Outgoing: the connector token is sent only to an https `serviceUrl` (http only under the
development switch `teams.allow_http`) whose host is in `teams.service_url_hosts` (Microsoft's
hosts by default), and only to service URLs a valid token vouched for (stored from authenticated
activities) or the configured `teams.service_url`.

Anonymous requests (Microsoft 365 Agents Playground, local tests) are a development switch,
`teams.allow_anonymous`, honoured only while no app id is configured: a configured app id with the
switch on refuses to start, so a production deployment cannot run unauthenticated by accident.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import jwt

from bot.settings import Settings, TeamsSettings

log = logging.getLogger("bot.teams.auth")

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
CLOCK_SKEW_SECONDS = 300
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
MAX_DOCUMENT_BYTES = 512 * 1024
MAX_KEYS = 100
FETCH_TIMEOUT = 10.0


class TeamsConfigError(Exception):
    """Teams settings that must not start (the message says what to change)."""


class Unauthorized(Exception):
    """The request is not from the Bot Connector for this app."""


def check_settings(settings: Settings) -> None:
    """Refuse contradictory or unsafe Teams settings before serving anything."""
    teams = settings.teams
    if teams.allow_anonymous and teams.app_id:
        raise TeamsConfigError(
            "teams.allow_anonymous is a development switch and is refused when teams.app_id is set "
            "(a configured app means a real deployment): unset HELPDESK_TEAMS__ALLOW_ANONYMOUS, or "
            "clear teams.app_id for local testing")
    if not teams.allow_anonymous and not teams.app_id:
        raise TeamsConfigError(
            "teams.enabled needs teams.app_id (HELPDESK_TEAMS__APP_ID) and HELPDESK_TEAMS__APP_PASSWORD "
            "or teams.certificate_path; for local testing without Microsoft set teams.allow_anonymous "
            "(and leave app_id empty)")
    if teams.app_id and teams.app_password is None and teams.certificate_path is None:
        raise TeamsConfigError(
            "teams.app_id is set but neither HELPDESK_TEAMS__APP_PASSWORD nor teams.certificate_path is: "
            "the bot could not answer")
    if teams.certificate_path is not None and not settings.path(teams.certificate_path).is_file():
        raise TeamsConfigError(f"teams.certificate_path: no such file {settings.path(teams.certificate_path)}")
    if teams.app_id:
        for name in ("openid_metadata_url", "entra_openid_metadata_url"):
            url = str(getattr(teams, name))
            if not _fetchable(url, allow_http=teams.allow_http):
                raise TeamsConfigError(f"teams.{name} must be an https URL (http only with teams.allow_http "
                                       f"or on a loopback host): {url!r}")
        if teams.service_url and not service_url_allowed(teams.service_url, teams):
            raise TeamsConfigError(f"teams.service_url {teams.service_url!r} is not https on a host in "
                                   "teams.service_url_hosts: the bot's token would not be sent there")
        if teams.proactive_install and not teams.catalog_app_id:
            raise TeamsConfigError("teams.proactive_install needs teams.catalog_app_id (the app's id in the Teams "
                                   "app catalog: Teams admin center, or Graph GET /appCatalogs/teamsApps)")
        if teams.proactive_install and settings.directory.backend != "graph":
            raise TeamsConfigError("teams.proactive_install installs the app through Microsoft Graph: it needs "
                                   "directory.backend: graph")
        if teams.allow_http:
            log.warning("teams.allow_http is on: the bot's connector token may be sent over plain http "
                        "(development only)")


def token_authority(teams: TeamsSettings) -> str:
    if teams.oauth_authority:
        return teams.oauth_authority.rstrip("/")
    return f"{teams.oauth_login_host.rstrip('/')}/{teams.tenant_id or 'botframework.com'}"


# ----- where the token may go ------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fetchable(url: str, *, allow_http: bool) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and (allow_http or _is_loopback(parts.hostname)))


def host_allowed(host: str, patterns: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().strip()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif fnmatch.fnmatchcase(host, pattern) if "*" in pattern else host == pattern:
            return True
    return False


def service_url_allowed(url: str, teams: TeamsSettings) -> bool:
    """May the bot's connector token be sent to this service URL? https (http only under
    `teams.allow_http`), no credentials in the URL, host in `teams.service_url_hosts`."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    if parts.scheme != "https" and not (parts.scheme == "http" and teams.allow_http):
        return False
    return host_allowed(host, list(teams.service_url_hosts))


# ----- signing keys from OpenID metadata ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: jwt.PyJWK
    endorsements: frozenset[str] | None
    algorithms: frozenset[str]


@dataclass(slots=True)
class _KeySet:
    keys: dict[str, SigningKey] = field(default_factory=dict)
    loaded_at: float | None = None
    attempted_at: float | None = None


class OpenIdKeys:
    """The signing keys published by one OpenID metadata document (`jwks_uri`)."""

    def __init__(self, metadata_url: str, *, allow_http: bool = False, cache_seconds: float = 86400.0,
                 refresh_min_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.metadata_url = metadata_url
        self.allow_http = allow_http
        self.cache_seconds = cache_seconds
        self.refresh_min_seconds = refresh_min_seconds
        self.clock = clock
        self.transport = transport
        self._set = _KeySet()
        self._lock = asyncio.Lock()

    async def find(self, kid: str) -> SigningKey | None:
        now = self.clock()
        state = self._set
        stale = state.loaded_at is None or now - state.loaded_at >= self.cache_seconds
        if not stale and kid in state.keys:
            return state.keys[kid]
        async with self._lock:
            state = self._set
            now = self.clock()
            stale = state.loaded_at is None or now - state.loaded_at >= self.cache_seconds
            if not stale and kid in state.keys:
                return state.keys[kid]
            # With no keys at all (a failed first read) try again sooner than the usual interval.
            interval = self.refresh_min_seconds if state.keys else min(self.refresh_min_seconds, 10.0)
            may_refresh = state.attempted_at is None or now - state.attempted_at >= interval
            if may_refresh:
                state.attempted_at = now
                try:
                    keys = await self._load()
                except Exception as exc:  # keep what we had; the token is judged with the known keys
                    log.warning("OpenID metadata %s not refreshed: %s", self.metadata_url, _reason(exc))
                else:
                    self._set = _KeySet(keys, now, now)
            return self._set.keys.get(kid)

    async def _get_json(self, client: httpx.AsyncClient, url: str) -> Any:
        if not _fetchable(url, allow_http=self.allow_http):
            raise ValueError(f"refusing to fetch {url!r}: not https")
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ValueError(f"{url} answered {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"{url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
        return json.loads(bytes(body))

    async def _load(self) -> dict[str, SigningKey]:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, trust_env=True, follow_redirects=False,
                                     transport=self.transport) as client:
            metadata = await self._get_json(client, self.metadata_url)
            if not isinstance(metadata, dict) or not isinstance(metadata.get("jwks_uri"), str):
                raise ValueError("OpenID metadata without jwks_uri")
            advertised = metadata.get("id_token_signing_alg_values_supported")
            algorithms = (ALLOWED_ALGORITHMS & {str(a) for a in advertised}
                          if isinstance(advertised, list) else frozenset({"RS256"}))
            jwks = await self._get_json(client, metadata["jwks_uri"])
        entries = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS without keys")
        keys: dict[str, SigningKey] = {}
        for entry in entries[:MAX_KEYS]:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("kty") != "RSA":
                continue
            if entry.get("use") not in (None, "sig"):
                continue
            try:
                public = jwt.PyJWK.from_dict({k: v for k, v in entry.items() if k != "endorsements"})
            except (jwt.PyJWKError, ValueError, TypeError):
                continue
            endorsements = entry.get("endorsements")
            keys[entry["kid"]] = SigningKey(
                public, frozenset(str(e) for e in endorsements) if isinstance(endorsements, list) else None,
                frozenset(algorithms))
        return keys


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


# ----- the request authenticator ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verified:
    """A token that passed every check that needs no activity; `bind` finishes with the activity."""

    source: Literal["connector", "entra", "anonymous"]
    claims: dict[str, Any]
    endorsements: frozenset[str] | None = None

    def claim(self, name: str) -> Any:
        return self.claims.get(name)


class RequestAuthenticator:
    """Validates the bearer token of one `POST /api/messages` and binds it to the activity."""

    def __init__(self, teams: TeamsSettings, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> None:
        """`now` is the wall clock (epoch seconds) token lifetimes are judged by; `clock` paces key refreshes."""
        self.teams = teams
        self.now = now
        self.app_id = teams.app_id
        self.anonymous = bool(teams.allow_anonymous and not teams.app_id)
        self.connector_keys, self.entra_keys = (
            OpenIdKeys(url, allow_http=teams.allow_http, cache_seconds=teams.openid_cache_hours * 3600,
                       refresh_min_seconds=teams.openid_refresh_min_seconds, clock=clock, transport=transport)
            for url in (teams.openid_metadata_url, teams.entra_openid_metadata_url))
        self.entra_issuers = {i for i in teams.entra_issuers if i}
        if teams.entra_tenant_issuers and teams.tenant_id:
            login = teams.oauth_login_host.rstrip("/")
            self.entra_issuers |= {f"https://sts.windows.net/{teams.tenant_id}/", f"{login}/{teams.tenant_id}/v2.0"}

    async def authenticate(self, authorization: str | None) -> Verified:
        """Everything the token alone shows: signature, issuer, audience, lifetime, own app."""
        if not authorization:
            if self.anonymous:
                return Verified("anonymous", {})
            raise Unauthorized("Authorization header not found")
        if self.anonymous:
            # Development mode has no app id to check a token against: a token is not trusted either.
            return Verified("anonymous", {})
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            raise Unauthorized("Invalid authorization header format")
        try:
            return await self._verify(token)
        except Unauthorized as exc:
            log.warning("Teams request token rejected: %s", exc)
            raise Unauthorized("Invalid token or authentication failed.") from None
        except Exception as exc:  # malformed token, bad signature, expired: all a 401
            log.warning("Teams request token rejected: %s", type(exc).__name__)
            raise Unauthorized("Invalid token or authentication failed.") from None

    async def _verify(self, token: str) -> Verified:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
        issuer = unverified.get("iss")
        if not isinstance(issuer, str):
            raise Unauthorized("no issuer")
        if issuer == self.teams.connector_issuer:
            source: Literal["connector", "entra"] = "connector"
            keys = self.connector_keys
        elif issuer in self.entra_issuers:
            source = "entra"
            keys = self.entra_keys
        else:
            raise Unauthorized("issuer not accepted")
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no key id")
        signing = await keys.find(kid)
        if signing is None:
            raise Unauthorized("signing key not in the OpenID metadata's keys")
        if alg not in signing.algorithms:
            raise Unauthorized("signing algorithm not allowed")
        claims: dict[str, Any] = jwt.decode(
            token, key=signing.key.key, algorithms=sorted(signing.algorithms), issuer=issuer,
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "require": ["exp", "iss", "aud"]})
        self._check_lifetime(claims)
        if claims.get("aud") != self.app_id:
            raise Unauthorized("audience is not this bot")
        if source == "entra":
            version = claims.get("ver")
            party = claims.get("appid") if version == "1.0" else claims.get("azp") if version == "2.0" else None
            if party != self.app_id:
                raise Unauthorized("Entra token not issued to this bot's own app")
        return Verified(source, claims, signing.endorsements)

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """`exp` (required) and `nbf` with 5 minutes' clock skew, by the injected wall clock."""
        now = self.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise Unauthorized("exp is not a number")
        if now > exp + CLOCK_SKEW_SECONDS:
            raise Unauthorized("token expired")
        if nbf is not None:
            if isinstance(nbf, bool) or not isinstance(nbf, int | float):
                raise Unauthorized("nbf is not a number")
            if now < nbf - CLOCK_SKEW_SECONDS:
                raise Unauthorized("token not yet valid")

    def bind(self, verified: Verified, *, channel_id: str | None, service_url: str | None) -> None:
        """The checks that need the activity: the key's endorsements and the `serviceurl` claim;
        then the service URL must be one the bot's token may be sent to."""
        if verified.source == "anonymous":
            return
        # Bot Connector keys must be endorsed for the channel (every published channel id requires
        # it by default); Entra keys carry no endorsements, but if one does it is honoured too.
        needs_endorsement = verified.source == "connector" or verified.endorsements is not None
        if needs_endorsement and (not channel_id or channel_id not in (verified.endorsements or ())):
            log.warning("Teams request refused: signing key not endorsed for channel %r", channel_id)
            raise Unauthorized("Invalid token or authentication failed.")
        if verified.source == "connector":
            claimed = verified.claim("serviceurl")
            if not isinstance(claimed, str) or not claimed or claimed != service_url:
                log.warning("Teams request refused: serviceurl claim %s the activity's serviceUrl",
                            "missing for" if not claimed else "does not match")
                raise Unauthorized("Service URL does not match the token")
        if not service_url or not service_url_allowed(service_url, self.teams):
            log.warning("Teams request refused: serviceUrl is not https on an allowed host (teams.service_url_hosts)")
            raise Unauthorized("Service URL not allowed")
