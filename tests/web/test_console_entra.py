"""Sign-in with Microsoft Entra ID (OpenID Connect, authorization code + PKCE through MSAL) against the
local identity-platform stand-in: the whole round trip, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.web.security import SESSION_COOKIE
from tests.standins.graph import GraphStandIn
from tests.web.console_harness import ADMIN, EMPLOYEE, SECRET, TECH, Clock, console_settings

AUTHORITY = "https://login.standin.test"
Entra = tuple[httpx.AsyncClient, GraphStandIn]


@pytest.fixture
async def entra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Entra]:
    from bot.app import build_app
    from bot.channels.serve import build_asgi
    from bot.store.migrate import upgrade
    from bot.web.console import Console, ConsoleMount

    graph = GraphStandIn()
    clock = Clock()
    graph.id_token_clock = lambda: clock().timestamp()
    monkeypatch.setenv("HELPDESK_WEB__ENTRA_CLIENT_SECRET", graph.client_secret)
    # The demo directory resolves people (roles from `roles:`); sign-in is Entra ID, as in production.
    settings = console_settings(tmp_path, web={"sign_in": "entra"},
                                graph={"tenant_id": graph.tenant_id, "authority_host": AUTHORITY},
                                )
    settings.web.entra_client_id = graph.client_id
    await upgrade(settings.database_url)
    app = await build_app(settings, clock=clock)
    web = Console(app, secret=SECRET, http_client=httpx.Client(transport=graph.transport()))
    assert web.entra is not None and not web.problems
    asgi = build_asgi(app, [ConsoleMount(app, web)])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:3000")
    try:
        yield client, graph
    finally:
        await client.aclose()
        await app.aclose()


async def _sign_in(client: httpx.AsyncClient, graph: GraphStandIn, email: str) -> httpx.Response:
    page = await client.get("/console/signin")
    assert "Sign in with Microsoft" in page.text and "Demo sign-in" not in page.text
    start = await client.get("/console/auth/entra", params={"next": "/console/queue"})
    assert start.status_code == 303
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{AUTHORITY}/{graph.tenant_id}/oauth2/v2.0/authorize")
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [
        "http://127.0.0.1:3000/console/auth/callback"]
    assert query["response_mode"] == ["form_post"]
    return await _post_back(client, graph.authorize(authorize, email))


async def _post_back(client: httpx.AsyncClient, redirect: str) -> httpx.Response:
    """The browser posts Microsoft's answer (response_mode=form_post) to the redirect URI."""
    parts = urlsplit(redirect)
    fields = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return await client.post(parts.path, data=fields)


async def test_a_technician_signs_in_with_entra_id(entra: Entra) -> None:
    client, graph = entra
    done = await _sign_in(client, graph, TECH)
    assert done.status_code == 303 and done.headers["location"] == "/console/queue"
    assert SESSION_COOKIE in client.cookies
    queue = await client.get("/console/queue")
    assert queue.status_code == 200 and "Tom" in queue.text
    # The demo sign-in is not offered, and refused if tried.
    assert (await client.post("/console/signin/demo", data={"email": ADMIN, "csrf": "x"})).status_code == 403


async def test_an_employee_signed_in_with_entra_is_refused(entra: Entra) -> None:
    client, graph = entra
    await _sign_in(client, graph, EMPLOYEE)
    assert (await client.get("/console/queue")).status_code == 403


async def test_a_replayed_or_forged_callback_is_refused(entra: Entra) -> None:
    client, graph = entra
    start = await client.get("/console/auth/entra")
    redirect = graph.authorize(start.headers["location"], TECH)
    first = await _post_back(client, redirect)
    assert first.status_code == 303 and SESSION_COOKIE in client.cookies
    client.cookies.clear()
    again = await _post_back(client, redirect)  # the state is used up
    assert again.status_code == 303 and "error=" in again.headers["location"] and SESSION_COOKIE not in client.cookies
    forged = await client.get("/console/auth/callback", params={"code": "x", "state": "made-up"})
    assert "error=" in forged.headers["location"]


async def test_a_code_redeemed_with_the_wrong_verifier_is_refused(entra: Entra) -> None:
    client, graph = entra
    start = await client.get("/console/auth/entra")
    redirect = graph.authorize(start.headers["location"], TECH)
    for grant in graph.codes.values():
        grant["challenge"] = "not-the-challenge"  # as if an attacker swapped the code in
    done = await _post_back(client, redirect)
    assert "error=" in done.headers["location"] and SESSION_COOKIE not in client.cookies
    page = await client.get(done.headers["location"])
    assert "Microsoft refused the sign-in (invalid_grant)" in page.text
