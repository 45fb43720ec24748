"""Authenticity of incoming Teams requests, and the app's credentials for outgoing ones.

Incoming: the Bot Connector signs every request with an RS256 JWT in `Authorization: Bearer`.
The Agents SDK's `JwtTokenValidator` checks it (signing keys from the Bot Framework OpenID
metadata, audience = our app id, 300 s clock leeway, `tid`↔issuer binding for Entra issuers); we
switch on its issuer allow-list too (`https://api.botframework.com` and our tenant's Entra issuers).
Anything that does not validate (missing header, wrong audience or issuer, expired, unsigned,
unknown key) is a 401; nothing else about the token is ever logged.

Anonymous requests (Microsoft 365 Agents Playground, local tests) are a development switch,
`teams.allow_anonymous`, honoured only while no app id is configured: a configured app id with the
switch on refuses to start, so a production deployment cannot run unauthenticated by accident.
"""

from __future__ import annotations

import logging
from typing import Any

from microsoft_agents.hosting.core import AgentAuthConfiguration, ClaimsIdentity
from microsoft_agents.hosting.core.authorization import AuthTypes
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator

from bot.settings import Settings, TeamsSettings

log = logging.getLogger("bot.teams.auth")

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
BOT_FRAMEWORK_RESOURCE = "https://api.botframework.com"


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


def auth_configuration(settings: Settings) -> AgentAuthConfiguration:
    """The SDK's view of our app registration (used for validation and for outgoing tokens)."""
    teams: TeamsSettings = settings.teams
    kwargs: dict[str, Any] = {
        "client_id": teams.app_id or None,
        "tenant_id": teams.tenant_id or None,
        "anonymous_allowed": bool(teams.allow_anonymous and not teams.app_id),
        "validate_issuer": True,
        "connection_name": "SERVICE_CONNECTION",
    }
    if teams.certificate_path is not None:
        kwargs["auth_type"] = AuthTypes.certificate
        kwargs["cert_pfx_file"] = str(settings.path(teams.certificate_path))
    elif teams.app_password is not None:
        kwargs["auth_type"] = AuthTypes.client_secret
        kwargs["client_secret"] = teams.app_password.get_secret_value()
    return AgentAuthConfiguration(**kwargs)


class RequestAuthenticator:
    """Validates the Bot Connector's bearer token of one request."""

    def __init__(self, config: AgentAuthConfiguration) -> None:
        self.config = config
        self.validator = JwtTokenValidator(config)

    @property
    def anonymous(self) -> bool:
        return bool(self.config.ANONYMOUS_ALLOWED)

    async def authenticate(self, authorization: str | None) -> ClaimsIdentity:
        if not authorization:
            if self.anonymous:
                return self.validator.get_anonymous_claims()
            raise Unauthorized("Authorization header not found")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            raise Unauthorized("Invalid authorization header format")
        try:
            return await self.validator.validate_token(token)
        except Exception as exc:  # any failure (bad signature, unknown kid, malformed) is a 401
            log.warning("Teams request token rejected: %s", type(exc).__name__)
            raise Unauthorized("Invalid token or authentication failed.") from None
