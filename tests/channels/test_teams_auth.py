"""JWT validation of /api/messages with locally minted RS256 tokens (the JWKS fetch is patched,
never the network), and the anonymous development switch."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator

from bot.app import StartupError, build_app
from bot.channels.teams.connector import TokenSource
from bot.channels.teams.routes import teams_routes
from tests.channels.conftest import TeamsBot, make_bot, teams_settings
from tests.channels.teams_support import ALICE_CHAT, TENANT, personal_message
from tests.standins.bot_connector import BotConnectorStandIn

APP_ID = "11111111-2222-4333-8444-555555555555"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def mint(*, aud: str = APP_ID, iss: str = "https://api.botframework.com", expires_in: int = 3600,
         key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"aud": aud, "iss": iss, "iat": now - 10, "nbf": now - 10, "exp": now + expires_in, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "test-key"})


@pytest.fixture
async def secured(tmp_path: Path, standin: BotConnectorStandIn, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[TeamsBot]:
    public = jwt.PyJWK.from_dict({**jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True),
                                  "kid": "test-key", "alg": "RS256"})

    async def signing_key(self: Any, jwks_uri: str, header: dict[str, Any]) -> jwt.PyJWK:
        return public

    async def token(self: TokenSource) -> str:
        return "outgoing-test-token"

    monkeypatch.setattr(type(JwtTokenValidator._jwk_client_manager), "get_signing_key", signing_key)
    monkeypatch.setattr(TokenSource, "token", token)
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "not-a-real-secret")
    bot = await make_bot(teams_settings(tmp_path, allow_anonymous=False, app_id=APP_ID, tenant_id=TENANT),
                         standin)
    try:
        yield bot
    finally:
        await bot.client.aclose()
        await bot.app.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_right_audience_passes_and_reply_carries_bot_token(secured: TeamsBot) -> None:
    activity = personal_message(secured.standin.url, "hello")
    response = await secured.post(activity, bearer(mint(serviceurl=secured.standin.url)))
    assert response.status_code == 202
    posts = secured.standin.posts(ALICE_CHAT)
    assert posts and posts[-1].authorization == "Bearer outgoing-test-token"


@pytest.mark.parametrize("token", [
    pytest.param(lambda: mint(aud="someone-else"), id="wrong-audience"),
    pytest.param(lambda: mint(iss="https://evil.example.com"), id="wrong-issuer"),
    pytest.param(lambda: mint(expires_in=-3600), id="expired"),
    pytest.param(lambda: mint(key=OTHER_KEY), id="wrong-signature"),
    pytest.param(lambda: jwt.encode({"aud": APP_ID, "iss": "https://api.botframework.com",
                                     "exp": int(time.time()) + 600}, key=None, algorithm="none"), id="unsigned"),
    pytest.param(lambda: "not.a.jwt", id="garbage"),
])
async def test_bad_tokens_get_401(secured: TeamsBot, token: Any) -> None:
    response = await secured.post(personal_message(secured.standin.url, "hello"), bearer(token()))
    assert response.status_code == 401
    assert secured.standin.calls == []


async def test_missing_header_gets_401(secured: TeamsBot) -> None:
    response = await secured.post(personal_message(secured.standin.url, "hello"))
    assert response.status_code == 401


async def test_token_for_another_service_url_gets_401(secured: TeamsBot) -> None:
    token = mint(serviceurl="https://smba.trafficmanager.net/amer/")
    response = await secured.post(personal_message(secured.standin.url, "hello"), bearer(token))
    assert response.status_code == 401


async def test_anonymous_switch_refused_with_app_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "x")
    settings = teams_settings(tmp_path, allow_anonymous=True, app_id=APP_ID)
    app = await build_app(settings)
    try:
        with pytest.raises(StartupError, match="allow_anonymous"):
            teams_routes(app)
    finally:
        await app.aclose()


async def test_no_credentials_refused(tmp_path: Path) -> None:
    app = await build_app(teams_settings(tmp_path, allow_anonymous=False))
    try:
        with pytest.raises(StartupError, match="app_id"):
            teams_routes(app)
    finally:
        await app.aclose()
