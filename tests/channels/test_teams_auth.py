"""JWT validation of /api/messages as Microsoft documents it ("Authentication with the Bot Connector
service"), with the project's own signing keys published by the Bot Connector stand-in's OpenID
metadata (the bot reads it from `teams.openid_metadata_url`; nothing in the SDK is patched), and
the anonymous development switch.

Every refused case checks the three things that matter: a 401, nothing processed (no conversation
reference, no event, no outbox row) and no outgoing call to the connector."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from bot.app import StartupError, build_app
from bot.channels.teams.auth import RequestAuthenticator, Unauthorized, service_url_allowed
from bot.channels.teams.connector import ConnectorError, TeamsConnector, TokenSource
from bot.channels.teams.routes import teams_routes
from bot.settings import TeamsSettings
from bot.store.tables import EventRow, OutboxRow, TeamsConversationRow
from tests.channels.conftest import TeamsBot, make_bot, teams_settings
from tests.channels.teams_support import ALICE_CHAT, TENANT, personal_message
from tests.standins.bot_connector import BotConnectorStandIn
from tests.standins.graph import GraphStandIn, serve_https

APP_ID = "11111111-2222-4333-8444-555555555555"
OTHER_APP = "99999999-2222-4333-8444-555555555555"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SLACK_ONLY_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ENTRA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
UNENDORSED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CONNECTOR = "https://api.botframework.com"
EMULATOR_V1 = "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/"
TENANT_V2 = f"https://login.microsoftonline.com/{TENANT}/v2.0"


def mint(*, aud: str = APP_ID, iss: str = CONNECTOR, expires_in: int = 3600, key: Any = KEY,
         kid: str = "test-key", now: float | None = None, **claims: Any) -> str:
    issued = int(now if now is not None else time.time())
    body = {"aud": aud, "iss": iss, "iat": issued - 10, "nbf": issued - 10, "exp": issued + expires_in, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def publish_keys(standin: BotConnectorStandIn) -> None:
    standin.publish(KEY.public_key(), "test-key", endorsements=["msteams", "webchat"])
    standin.publish(SLACK_ONLY_KEY.public_key(), "slack-key", endorsements=["slack"])
    standin.publish(ENTRA_KEY.public_key(), "entra-key", document="entra")
    standin.publish(UNENDORSED_KEY.public_key(), "unendorsed-key")


def secured_settings(tmp_path: Path, standin: BotConnectorStandIn, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "allow_anonymous": False, "app_id": APP_ID, "tenant_id": TENANT,
        "openid_metadata_url": standin.openid_metadata_url, "entra_openid_metadata_url": standin.entra_metadata_url,
        "service_url_hosts": ["127.0.0.1"], "allow_http": True, "service_url": standin.url}
    values.update(changes)
    return teams_settings(tmp_path, **values)


async def _outgoing_token(self: TokenSource) -> str:
    return "outgoing-test-token"


class _FixedToken:
    async def token(self) -> str:
        return "outgoing-test-token"

    def close(self) -> None:
        return None


@pytest.fixture
async def secured(tmp_path: Path, standin: BotConnectorStandIn, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[TeamsBot]:
    # Our own outgoing token source stands in for MSAL (no identity platform here); the incoming
    # side is the real thing against the stand-in's metadata.
    monkeypatch.setattr(TokenSource, "token", _outgoing_token)
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "not-a-real-secret")
    publish_keys(standin)
    bot = await make_bot(secured_settings(tmp_path, standin), standin)
    try:
        yield bot
    finally:
        await bot.client.aclose()
        await bot.app.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def nothing_processed(bot: TeamsBot) -> None:
    assert bot.standin.calls == [], "no outgoing call"
    async with bot.app.sessions() as session:
        for table in (TeamsConversationRow, EventRow, OutboxRow):
            count = (await session.execute(select(func.count()).select_from(table))).scalar_one()
            assert count == 0, f"{table.__tablename__} written for a refused request"


async def test_valid_connector_token_passes_and_reply_carries_bot_token(secured: TeamsBot) -> None:
    activity = personal_message(secured.standin.url, "hello")
    response = await secured.post(activity, bearer(mint(serviceurl=secured.standin.url)))
    assert response.status_code == 202
    posts = secured.standin.posts(ALICE_CHAT)
    assert posts and posts[-1].authorization == "Bearer outgoing-test-token"
    # The keys were read from the configured metadata URL, then its jwks_uri.
    assert secured.standin.openid_requests[:2] == ["/v1/.well-known/openidconfiguration", "/v1/.well-known/keys"]


async def test_keys_are_cached_between_requests(secured: TeamsBot) -> None:
    for text in ("hello", "thanks"):
        response = await secured.post(personal_message(secured.standin.url, text),
                                      bearer(mint(serviceurl=secured.standin.url)))
        assert response.status_code == 202
    assert secured.standin.openid_requests.count("/v1/.well-known/keys") == 1


# Issue 14, cases 1-5: each refused with 401, nothing processed and no outgoing call.
CASES = {
    # 1. Our own tenant issued it to another app (aud = the bot, azp/appid = another app, no serviceurl).
    "entra-token-for-another-app-v2": lambda url: mint(iss=TENANT_V2, key=ENTRA_KEY, kid="entra-key",
                                                       ver="2.0", azp=OTHER_APP, tid=TENANT),
    "entra-token-for-another-app-v1": lambda url: mint(iss=f"https://sts.windows.net/{TENANT}/", key=ENTRA_KEY,
                                                       kid="entra-key", ver="1.0", appid=OTHER_APP, tid=TENANT),
    "entra-token-without-version": lambda url: mint(iss=EMULATOR_V1, key=ENTRA_KEY, kid="entra-key",
                                                    appid=APP_ID),
    # 2. Bot Framework-signed, no serviceurl claim.
    "no-serviceurl-claim": lambda url: mint(),
    # 3. serviceurl for another region of the same host.
    "serviceurl-other-path-same-host": lambda url: mint(serviceurl=url + "emea/"),
    "serviceurl-other-host": lambda url: mint(serviceurl="https://smba.trafficmanager.net/amer/"),
    # 4. A key endorsed only for slack signing an msteams activity.
    "key-not-endorsed-for-msteams": lambda url: mint(serviceurl=url, key=SLACK_ONLY_KEY, kid="slack-key"),
    "connector-key-without-endorsements": lambda url: mint(serviceurl=url, key=UNENDORSED_KEY, kid="unendorsed-key"),
    # Lifetime and the rest of the documented checks.
    "expired-beyond-skew": lambda url: mint(serviceurl=url, expires_in=-301),
    "not-yet-valid-beyond-skew": lambda url: mint(serviceurl=url, now=time.time() + 400),
    "no-exp": lambda url: mint(serviceurl=url, exp=None),
    "wrong-audience": lambda url: mint(serviceurl=url, aud="someone-else"),
    "wrong-issuer": lambda url: mint(serviceurl=url, iss="https://evil.example.com"),
    "entra-key-for-connector-issuer": lambda url: mint(serviceurl=url, key=ENTRA_KEY, kid="entra-key"),
    "wrong-signature": lambda url: mint(serviceurl=url, key=OTHER_KEY),
    "unknown-kid": lambda url: mint(serviceurl=url, kid="nobody-published-this"),
    "unsigned": lambda url: jwt.encode({"aud": APP_ID, "iss": CONNECTOR, "serviceurl": url,
                                        "exp": int(time.time()) + 600}, key=None, algorithm="none"),
    "hs256-with-public-key-confusion": lambda url: jwt.encode(
        {"aud": APP_ID, "iss": CONNECTOR, "serviceurl": url, "exp": int(time.time()) + 600},
        key="x" * 32, algorithm="HS256", headers={"kid": "test-key"}),
    "garbage": lambda url: "not.a.jwt",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_before_anything_is_processed(secured: TeamsBot, case: str) -> None:
    activity = personal_message(secured.standin.url, "I forgot my password")
    response = await secured.post(activity, bearer(CASES[case](secured.standin.url)))
    assert response.status_code == 401
    await nothing_processed(secured)


async def test_within_five_minutes_skew_passes(secured: TeamsBot) -> None:
    token = mint(serviceurl=secured.standin.url, expires_in=-200)
    response = await secured.post(personal_message(secured.standin.url, "hello"), bearer(token))
    assert response.status_code == 202


async def test_endorsed_key_for_another_channel_id_refused(secured: TeamsBot) -> None:
    activity = personal_message(secured.standin.url, "hello")
    activity["channelId"] = "skype"
    response = await secured.post(activity, bearer(mint(serviceurl=secured.standin.url)))
    assert response.status_code == 401
    await nothing_processed(secured)


async def test_entra_token_from_the_bots_own_app_is_accepted(secured: TeamsBot) -> None:
    """Microsoft allows Entra-issued tokens (the Emulator; the bot's own tenant) only when the
    authorized party is the bot itself."""
    for token in (mint(iss=EMULATOR_V1, key=ENTRA_KEY, kid="entra-key", ver="1.0", appid=APP_ID),
                  mint(iss=TENANT_V2, key=ENTRA_KEY, kid="entra-key", ver="2.0", azp=APP_ID, tid=TENANT)):
        response = await secured.post(personal_message(secured.standin.url, "hello"), bearer(token))
        assert response.status_code == 202
    assert "/botframework.com/v2.0/.well-known/openid-configuration" in secured.standin.openid_requests


async def test_missing_header_gets_401(secured: TeamsBot) -> None:
    response = await secured.post(personal_message(secured.standin.url, "hello"))
    assert response.status_code == 401
    await nothing_processed(secured)


async def test_plain_http_service_url_refused_without_the_development_switch(
        tmp_path: Path, standin: BotConnectorStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 5: a validly signed token for an http serviceUrl; the bot's token never goes there."""
    monkeypatch.setattr(TokenSource, "token", _outgoing_token)
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "not-a-real-secret")
    publish_keys(standin)
    settings = secured_settings(tmp_path, standin, allow_http=False, service_url="https://smba.trafficmanager.net/teams/",
                                service_url_hosts=["127.0.0.1", "smba.trafficmanager.net"])
    bot = await make_bot(settings, standin)
    try:
        response = await bot.post(personal_message(standin.url, "hello"), bearer(mint(serviceurl=standin.url)))
        assert response.status_code == 401
        await nothing_processed(bot)
        # The metadata still came from the configured (loopback) URL.
        assert standin.openid_requests[0] == "/v1/.well-known/openidconfiguration"
    finally:
        await bot.client.aclose()
        await bot.app.aclose()


async def test_host_not_allowed_refused(tmp_path: Path, standin: BotConnectorStandIn,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenSource, "token", _outgoing_token)
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "not-a-real-secret")
    publish_keys(standin)
    bot = await make_bot(secured_settings(tmp_path, standin, service_url_hosts=["smba.trafficmanager.net"],
                                          service_url="https://smba.trafficmanager.net/teams/"), standin)
    try:
        response = await bot.post(personal_message(standin.url, "hello"), bearer(mint(serviceurl=standin.url)))
        assert response.status_code == 401
        await nothing_processed(bot)
    finally:
        await bot.client.aclose()
        await bot.app.aclose()


def test_service_url_allow_list() -> None:
    teams = TeamsSettings()
    assert service_url_allowed("https://smba.trafficmanager.net/amer/", teams)
    assert service_url_allowed("https://smba.trafficmanager.net/emea/aaaa-tenant/", teams)
    assert service_url_allowed("https://webchat.botframework.com/", teams)
    assert not service_url_allowed("http://smba.trafficmanager.net/amer/", teams)
    assert not service_url_allowed("https://smba.trafficmanager.net.evil.example/amer/", teams)
    assert not service_url_allowed("https://evilbotframework.com/", teams)
    assert not service_url_allowed("https://user:pw@smba.trafficmanager.net/amer/", teams)
    assert not service_url_allowed("https://attacker.example.com/", teams)


async def test_connector_refuses_to_send_token_to_unlisted_host() -> None:
    """Defence in depth: even a stored reference cannot steer the token elsewhere."""
    connector = TeamsConnector(TokenSource(_FixedToken()), settings=TeamsSettings())  # type: ignore[arg-type]
    with pytest.raises(ConnectorError) as caught:
        await connector.post("https://attacker.example.com/", "a:1", {"type": "message", "text": "x"})
    assert caught.value.refused and caught.value.unreachable and not caught.value.transient
    with pytest.raises(ConnectorError):
        await connector.post("http://smba.trafficmanager.net/amer/", "a:1", {"type": "message", "text": "x"})
    await connector.aclose()


async def test_unknown_kid_refreshes_the_keys_at_most_once_per_interval(standin: BotConnectorStandIn) -> None:
    publish_keys(standin)
    now = [1000.0]
    teams = TeamsSettings(app_id=APP_ID, openid_metadata_url=standin.openid_metadata_url,
                          service_url_hosts=["127.0.0.1"], allow_http=True, openid_refresh_min_seconds=300)
    auth = RequestAuthenticator(teams, clock=lambda: now[0])
    await auth.authenticate(f"Bearer {mint(serviceurl=standin.url)}")
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    standin.publish(rotated.public_key(), "rotated", endorsements=["msteams"])
    token = mint(serviceurl=standin.url, key=rotated, kid="rotated")
    now[0] += 10  # too soon after the last fetch: not fetched again, refused
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {token}")
    assert standin.openid_requests.count("/v1/.well-known/keys") == 1
    now[0] += 300  # a new key id after the interval: read again, accepted
    verified = await auth.authenticate(f"Bearer {token}")
    assert verified.source == "connector"
    assert standin.openid_requests.count("/v1/.well-known/keys") == 2


async def test_token_lifetime_follows_the_injected_clock(standin: BotConnectorStandIn) -> None:
    publish_keys(standin)
    issued = 1_900_000_000.0  # not today: the authenticator judges by its clock, not the machine's
    teams = TeamsSettings(app_id=APP_ID, openid_metadata_url=standin.openid_metadata_url)
    auth = RequestAuthenticator(teams, now=lambda: issued + 3600 + 299)
    assert (await auth.authenticate(f"Bearer {mint(serviceurl=standin.url, now=issued)}")).source == "connector"
    late = RequestAuthenticator(teams, now=lambda: issued + 3600 + 301)
    with pytest.raises(Unauthorized):
        await late.authenticate(f"Bearer {mint(serviceurl=standin.url, now=issued)}")


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


async def test_http_metadata_url_off_loopback_refused_at_start(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "x")
    settings = teams_settings(tmp_path, allow_anonymous=False, app_id=APP_ID,
                              openid_metadata_url="http://login.botframework.com/v1/.well-known/openidconfiguration")
    app = await build_app(settings)
    try:
        with pytest.raises(StartupError, match="openid_metadata_url"):
            teams_routes(app)
    finally:
        await app.aclose()


async def test_as_in_production_without_any_patch(tmp_path: Path, standin: BotConnectorStandIn,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings only: incoming keys from the stand-in's OpenID metadata, the outgoing token from an
    identity platform stand-in over loopback HTTPS (`teams.oauth_login_host`, trust from
    SSL_CERT_FILE), and that token is what the connector receives."""
    graph = GraphStandIn(tenant_id=TENANT, client_id=APP_ID, client_secret="teams-app-secret")
    publish_keys(standin)
    with serve_https(graph, tmp_path) as (origin, ca_file):
        for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "teams-app-secret")
        bot = await make_bot(secured_settings(tmp_path, standin, oauth_login_host=origin), standin)
        try:
            response = await bot.post(personal_message(standin.url, "hello"), bearer(mint(serviceurl=standin.url)))
            assert response.status_code == 202
            posts = standin.posts(ALICE_CHAT)
            assert posts and (posts[-1].authorization or "").removeprefix("Bearer ") in graph.tokens
            token_calls = [r for r in graph.requests if r.path.endswith("/oauth2/v2.0/token")]
            assert token_calls and "scope=https%3A%2F%2Fapi.botframework.com%2F.default" in token_calls[0].body
        finally:
            await bot.client.aclose()
            await bot.app.aclose()
