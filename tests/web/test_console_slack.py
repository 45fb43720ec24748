"""Sign in with Slack (OpenID Connect) against the Slack stand-in (tests/standins/slack_api.py): the whole
round trip (authorize, openid.connect.token, the person from users.info and the directory), and what is
refused: employees, another workspace, a wrong state or nonce, an expired ID token, Slack's own errors,
a missing client secret. Nothing secret reaches the logs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.settings import Settings
from bot.web.auth import sign_in_method, slack_problems
from bot.web.security import SESSION_COOKIE
from tests.standins.slack_api import TEAM, SlackStandIn
from tests.web.console_harness import SECRET, Clock, console_settings

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

BASE = "http://127.0.0.1:3000"
TECH_ID, ADMIN_ID, EMPLOYEE_ID, STRANGER_ID = "U0TECH0001", "U0ADMN0001", "U0USER0001", "U0STRANGER"


@dataclass
class SlackSignInHarness:
    client: httpx.AsyncClient
    slack: SlackStandIn
    clock: Clock

    async def start(self, next_path: str = "/console/queue") -> str:
        """The console's redirect to Slack's authorize endpoint."""
        start = await self.client.get("/console/auth/slack", params={"next": next_path})
        assert start.status_code == 303, start.text
        return start.headers["location"]

    async def back(self, redirect: str) -> httpx.Response:
        """The browser follows Slack's redirect to the console's callback (a GET: response_mode=query)."""
        parts = urlsplit(redirect)
        assert f"{parts.scheme}://{parts.netloc}" == BASE
        return await self.client.get(f"{parts.path}?{parts.query}")

    async def sign_in(self, user_id: str) -> httpx.Response:
        return await self.back(self.slack.authorize(await self.start(), user_id))

    async def error_shown(self, done: httpx.Response) -> str:
        assert done.status_code == 303 and done.headers["location"].startswith("/console/signin?error=")
        assert SESSION_COOKIE not in self.client.cookies
        page = await self.client.get(done.headers["location"])
        return page.text


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def _settings(tmp_path: Path, slack: SlackStandIn, **web: str) -> Settings:
    return console_settings(tmp_path, web={"sign_in": "slack", "slack_client_id": slack.oidc_client_id,
                                           "slack_team_id": TEAM, **web},
                            slack={"api_url": slack.url})


@pytest.fixture
async def siws(tmp_path: Path, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[SlackSignInHarness]:
    from bot.app import build_app
    from bot.channels.serve import build_asgi
    from bot.store.migrate import upgrade
    from bot.web.console import Console, ConsoleMount

    clock = Clock()
    slack.oidc_clock = lambda: clock().timestamp()
    monkeypatch.setenv("HELPDESK_WEB__SLACK_CLIENT_SECRET", slack.oidc_client_secret)
    monkeypatch.setenv("HELPDESK_SLACK__BOT_TOKEN", slack.token)
    # The demo directory resolves people (roles from `roles:`); sign-in is Slack's, as in production.
    settings = _settings(tmp_path, slack)
    await upgrade(settings.database_url)
    app = await build_app(settings, clock=clock)
    web = Console(app, secret=SECRET)
    assert web.slack is not None and web.oidc is web.slack and not web.problems
    asgi = build_asgi(app, [ConsoleMount(app, web)])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE)
    try:
        yield SlackSignInHarness(client, slack, clock)
    finally:
        await client.aclose()
        await app.aclose()


async def test_the_sign_in_page_offers_slack_and_the_request_is_slacks(siws: SlackSignInHarness) -> None:
    page = await siws.client.get("/console/signin")
    assert "Sign in with Slack" in page.text and "Demo sign-in" not in page.text
    assert "Sign in with Microsoft" not in page.text
    authorize = await siws.start()
    parts = urlsplit(authorize)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert authorize.startswith(f"http://127.0.0.1:{siws.slack.port}/openid/connect/authorize?")
    assert query["response_type"] == "code" and query["scope"] == "openid"
    assert query["client_id"] == siws.slack.oidc_client_id and query["team"] == TEAM
    assert query["redirect_uri"] == f"{BASE}/console/auth/callback"
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and query["state"] != query["nonce"]
    assert "code_challenge" not in query  # Slack advertises no PKCE (docs/console.md)
    # The Microsoft route is not this deployment's sign-in.
    assert (await siws.client.get("/console/auth/entra")).status_code == 404


@pytest.mark.parametrize(("user_id", "shown"), [(TECH_ID, "Tom"), (ADMIN_ID, "Ada")])
async def test_technicians_and_admins_sign_in_with_slack(siws: SlackSignInHarness, user_id: str,
                                                         shown: str) -> None:
    done = await siws.sign_in(user_id)
    assert done.status_code == 303 and done.headers["location"] == "/console/queue"
    assert SESSION_COOKIE in siws.client.cookies
    queue = await siws.client.get("/console/queue")
    assert queue.status_code == 200 and shown in queue.text
    # The code went to Slack with the client secret (client_secret_post) and the same redirect URI.
    token = siws.slack.calls_to("openid.connect.token")[-1]
    assert token.params["client_id"] == siws.slack.oidc_client_id
    assert token.params["redirect_uri"] == f"{BASE}/console/auth/callback"
    assert token.params["grant_type"] == "authorization_code"
    # The person came from the Slack account (users.info with the bot token), as for messages.
    assert siws.slack.calls_to("users.info")[-1].params["user"] == user_id
    outages = await siws.client.get("/console/outages")
    assert outages.status_code == 200
    # The demo sign-in stays refused.
    assert (await siws.client.post("/console/signin/demo", data={"email": "ada.admin@example.com",
                                                                 "csrf": "x"})).status_code == 403


async def test_an_admin_signed_in_with_slack_may_act_as_admin(siws: SlackSignInHarness) -> None:
    await siws.sign_in(ADMIN_ID)
    flows = await siws.client.get("/console/flows")
    assert flows.status_code == 200 and "Ada" in flows.text


async def test_an_employee_signed_in_with_slack_is_refused_the_console(siws: SlackSignInHarness) -> None:
    done = await siws.sign_in(EMPLOYEE_ID)
    assert done.status_code == 303
    refused = await siws.client.get("/console/queue")
    assert refused.status_code == 403 and "write to the help desk bot in chat" in refused.text


async def test_someone_not_in_the_directory_is_refused(siws: SlackSignInHarness) -> None:
    text = await siws.error_shown(await siws.sign_in(STRANGER_ID))
    assert "Your Slack account is not in the help desk" in text


async def test_an_account_of_another_workspace_is_refused(siws: SlackSignInHarness) -> None:
    siws.slack.oidc_claims = {"https://slack.com/team_id": "T0OTHER999"}
    text = await siws.error_shown(await siws.sign_in(TECH_ID))
    assert "belongs to another workspace" in text


async def test_a_wrong_nonce_is_refused(siws: SlackSignInHarness) -> None:
    siws.slack.oidc_claims = {"nonce": "an-attacker-s-nonce"}
    text = await siws.error_shown(await siws.sign_in(TECH_ID))
    assert "did not match this browser" in text


async def test_a_token_for_another_app_or_issuer_is_refused(siws: SlackSignInHarness) -> None:
    siws.slack.oidc_claims = {"aud": "1111.2222"}
    assert "not issued to this console" in await siws.error_shown(await siws.sign_in(TECH_ID))
    siws.slack.oidc_claims = {"iss": "https://evil.example"}
    assert "unexpected issuer" in await siws.error_shown(await siws.sign_in(TECH_ID))


async def test_an_expired_id_token_is_refused(siws: SlackSignInHarness) -> None:
    # Slack's ID tokens live 300 s; this one was issued ten minutes before the console's clock.
    siws.slack.oidc_clock = lambda: siws.clock().timestamp() - 600
    text = await siws.error_shown(await siws.sign_in(TECH_ID))
    assert "has expired" in text


async def test_a_wrong_replayed_or_forged_state_is_refused(siws: SlackSignInHarness) -> None:
    redirect = siws.slack.authorize(await siws.start(), TECH_ID)
    first = await siws.back(redirect)
    assert first.status_code == 303 and first.headers["location"] == "/console/queue"
    siws.client.cookies.clear()
    text = await siws.error_shown(await siws.back(redirect))  # the state is used up
    assert "expired or was already used" in text
    forged = await siws.client.get("/console/auth/callback", params={"code": "1.2.abc", "state": "made-up"})
    assert "expired or was already used" in await siws.error_shown(forged)
    # Slack's answer for another browser's request: its state is unknown here.
    other = siws.slack.authorize(await siws.start(), TECH_ID)
    swapped = other.replace(parse_qs(urlsplit(other).query)["state"][0], "x" * 43)
    assert "expired or was already used" in await siws.error_shown(await siws.back(swapped))


async def test_slack_s_invalid_code_gives_a_clear_refusal(siws: SlackSignInHarness) -> None:
    redirect = siws.slack.authorize(await siws.start(), TECH_ID)
    siws.slack.oidc_codes.clear()  # the code expired at Slack (or was redeemed already)
    text = await siws.error_shown(await siws.back(redirect))
    assert "Slack did not accept the sign-in code" in text
    assert siws.slack.calls_to("openid.connect.token", ok_only=False)[-1].ok is False


async def test_slack_refusing_the_app_or_being_busy_is_said_plainly(siws: SlackSignInHarness) -> None:
    siws.slack.fail("openid.connect.token", "bad_client_secret")
    assert "settings are wrong; tell an admin" in await siws.error_shown(await siws.sign_in(TECH_ID))
    siws.slack.rate_limit("openid.connect.token", retry_after=30)
    assert "Slack is busy right now" in await siws.error_shown(await siws.sign_in(TECH_ID))
    siws.slack.fail("openid.connect.token", "something_new")
    assert "Slack refused the sign-in (something_new)" in await siws.error_shown(await siws.sign_in(TECH_ID))


async def test_the_person_cancelling_at_slack_is_told(siws: SlackSignInHarness) -> None:
    authorize = await siws.start()
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    done = await siws.client.get("/console/auth/callback", params={"error": "access_denied", "state": state})
    assert "Slack sign-in did not complete (access_denied)" in await siws.error_shown(done)


async def test_no_code_token_or_secret_is_logged_or_shown(siws: SlackSignInHarness,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    redirect = siws.slack.authorize(await siws.start(), TECH_ID)
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    await siws.back(redirect)
    shown = (await siws.client.get("/console/queue")).text
    siws.client.cookies.clear()
    failing = siws.slack.authorize(await siws.start(), TECH_ID)
    failed_code = parse_qs(urlsplit(failing).query)["code"][0]
    siws.slack.oidc_codes.clear()
    shown += await siws.error_shown(await siws.back(failing))
    siws.slack.oidc_claims = {"nonce": "wrong"}
    shown += await siws.error_shown(await siws.sign_in(TECH_ID))
    token = siws.slack.calls_to("openid.connect.token")[0]
    assert token.params["client_secret"] == siws.slack.oidc_client_secret  # it was sent, to Slack only
    # What the console (and the libraries it uses) logged; the simulated browser's own request lines
    # (httpx logging the callback URL it fetched, code included) are the browser's, not the server's.
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not (r.name.startswith("httpx") and BASE in r.getMessage()))
    assert "Sign in with Slack refused by Slack: invalid_code" in logged
    for secret in (siws.slack.oidc_client_secret, code, failed_code, siws.slack.token, "eyJ", "xoxp-"):
        assert secret not in logged, secret
        assert secret not in shown, secret


def test_startup_is_refused_without_the_client_secret(tmp_path: Path, slack: SlackStandIn,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.channels.serve import settings_problems

    monkeypatch.delenv("HELPDESK_WEB__SLACK_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("HELPDESK_SLACK__BOT_TOKEN", slack.token)
    problems = settings_problems(_settings(tmp_path, slack))
    assert problems == ["web console Sign in with Slack needs HELPDESK_WEB__SLACK_CLIENT_SECRET "
                        "(see docs/console.md)"]
    monkeypatch.setenv("HELPDESK_WEB__SLACK_CLIENT_SECRET", slack.oidc_client_secret)
    assert settings_problems(_settings(tmp_path, slack)) == []
    # The team and the bot token (to find the person) are needed too; the token endpoint must be TLS.
    monkeypatch.delenv("HELPDESK_SLACK__BOT_TOKEN")
    missing = slack_problems(console_settings(tmp_path, web={"sign_in": "slack", "slack_client_id": "1.2"},
                                              slack={"api_url": "http://slack.example/api/"}))
    assert "web.slack_team_id" in missing[0] and "HELPDESK_SLACK__BOT_TOKEN" in missing[0]
    assert "https://" in missing[1]


async def test_serve_refuses_to_start_without_the_client_secret(tmp_path: Path, slack: SlackStandIn,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.app import StartupError
    from bot.channels.serve import serve

    monkeypatch.delenv("HELPDESK_WEB__SLACK_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("HELPDESK_SLACK__BOT_TOKEN", slack.token)
    with pytest.raises(StartupError, match="HELPDESK_WEB__SLACK_CLIENT_SECRET"):
        await serve(_settings(tmp_path, slack))


def test_auto_picks_slack_only_where_slack_is_the_platform(tmp_path: Path) -> None:
    graph = {"backend": "graph"}
    slack_only = {"enabled": True}
    assert sign_in_method(console_settings(tmp_path, web={"slack_client_id": "1.2"}, slack=slack_only)) == "demo"
    assert sign_in_method(console_settings(tmp_path, directory=graph, web={"slack_client_id": "1.2"},
                                           slack=slack_only)) == "slack"
    # Teams too, or no Slack app for sign-in: Microsoft Entra ID, as before.
    assert sign_in_method(console_settings(tmp_path, directory=graph, web={"slack_client_id": "1.2"},
                                           slack=slack_only, teams={"enabled": True})) == "entra"
    assert sign_in_method(console_settings(tmp_path, directory=graph, slack=slack_only)) == "entra"
    assert sign_in_method(console_settings(tmp_path, directory=graph, web={"sign_in": "slack"})) == "slack"


def test_sign_in_with_slack_over_real_http(tmp_path: Path) -> None:
    """The redirects a browser follows, over real HTTP: uvicorn serving the console, the stand-in's
    authorize endpoint answering 302 back with the code (tests/web/served.py; the browser test does
    the same in chromium)."""
    from tests.web.served import serving

    with serving(tmp_path, "slack") as served, httpx.Client(base_url=served.url, follow_redirects=True) as browser:
        served.standin.oidc_signed_in = ADMIN_ID
        page = browser.get("/console/queue")
        assert "Sign in with Slack" in page.text and "Demo sign-in" not in page.text
        done = browser.get("/console/auth/slack", params={"next": "/console/outages"})
        assert done.status_code == 200 and str(done.url) == served.url + "/console/outages"
        assert [r.status_code for r in done.history] == [303, 302, 303]
        assert "Ada" in done.text and SESSION_COOKIE in browser.cookies
