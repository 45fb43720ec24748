"""Web console security: sessions, roles on every request and action, CSRF, headers, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.web.auth import demo_allowed
from bot.web.security import CSP, SESSION_COOKIE, SessionCodec
from tests.web.console_harness import (
    ADMIN,
    EMPLOYEE,
    SECRET,
    TECH,
    Clock,
    ConsoleHarness,
    console_settings,
)


async def test_no_session_is_sent_to_sign_in(console: ConsoleHarness) -> None:
    for path in ("/console/", "/console/queue", "/console/reports", "/console/outages", "/console/tickets/HD-1001"):
        response = await console.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/signin?next=")
    htmx = await console.client.get("/console/queue/rows", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/console/signin")
    posted = await console.client.post("/console/tickets/HD-1001/claim", data={"csrf": "x"})
    assert posted.status_code == 303 and "/console/signin" in posted.headers["location"]


async def test_an_employee_is_refused_everywhere(console: ConsoleHarness) -> None:
    await console.sign_in(EMPLOYEE)
    for path in ("/console/", "/console/queue", "/console/reports", "/console/knowledge", "/console/flows"):
        response = await console.client.get(path)
        assert response.status_code == 403, path
        assert "for help desk technicians and admins" in response.text


async def test_a_technician_cannot_post_notices_but_an_admin_can(console: ConsoleHarness) -> None:
    await console.sign_in(TECH)
    token = await console.csrf("/console/outages")
    page = await console.client.get("/console/outages")
    assert "Post a notice" not in page.text and "Only admins" in page.text
    refused = await console.client.post("/console/outages", data={"csrf": token, "service": "VPN"})
    assert refused.status_code == 403 and "Only admins" in refused.text
    async with console.app.sessions() as session:
        assert await console.app.services["outages"].current(session) == []

    console.client.cookies.clear()
    await console.sign_in(ADMIN)
    token = await console.csrf("/console/outages")
    done = await console.client.post("/console/outages", data={"csrf": token, "service": "VPN",
                                                               "summary": "Remote access is down"})
    assert done.status_code == 303 and "Notice+%231+posted" in done.headers["location"]


async def test_missing_or_wrong_csrf_token_is_403_and_changes_nothing(console: ConsoleHarness) -> None:
    ref = await console.open_ticket("Printer on floor 2 jams")
    await console.sign_in(TECH)
    for data in ({}, {"csrf": "forged"}):
        response = await console.client.post(f"/console/tickets/{ref}/claim", data=data)
        assert response.status_code == 403 and "security token" in response.text
    page = await console.client.get(f"/console/tickets/{ref}")
    assert 'id="assignee">nobody<' in page.text
    # The token of another session is not this session's token.
    other = console.console.codec.issue(TECH, "demo")[1].csrf
    response = await console.client.post(f"/console/tickets/{ref}/claim", data={"csrf": other})
    assert response.status_code == 403
    # The sign-in form has its own token too.
    console.client.cookies.clear()
    response = await console.client.post("/console/signin/demo", data={"email": TECH})
    assert response.status_code == 403 and SESSION_COOKIE not in response.cookies


async def test_forged_and_expired_sessions_are_refused(console: ConsoleHarness, clock: Clock) -> None:
    await console.sign_in(TECH)
    assert (await console.client.get("/console/queue")).status_code == 200
    value = console.client.cookies[SESSION_COOKIE]
    body, mac = value.split(".")
    # Another person's email with the old signature; a cookie signed with another key.
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["e"] = ADMIN
    forged_body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    other_key = SessionCodec(b"another-secret-entirely-0123456789", 60, clock).issue(ADMIN, "demo")[0]
    for forged in (f"{forged_body}.{mac}", other_key, "garbage", f"{body}.", ""):
        console.client.cookies.set(SESSION_COOKIE, forged, domain="127.0.0.1", path="/console")
        response = await console.client.get("/console/queue")
        assert response.status_code == 303, forged
        console.client.cookies.clear()
    await console.sign_in(TECH)
    clock.advance(minutes=console.app.settings.web.session_minutes + 1)
    response = await console.client.get("/console/queue")
    assert response.status_code == 303 and "/console/signin" in response.headers["location"]


async def test_cookies_and_headers(console: ConsoleHarness) -> None:
    response = await console.sign_in(TECH)
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # a developer's own machine (127.0.0.1) over http
    page = await console.client.get("/console/queue")
    assert page.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text.replace('<script type="application/json"', "")
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page.text)
    assert " style=" not in page.text and " on" + "click=" not in page.text


async def test_session_cookie_is_secure_off_localhost(tmp_path: Path, clock: Clock) -> None:
    import httpx

    from bot.app import build_app
    from bot.channels.serve import build_asgi
    from bot.store.migrate import upgrade
    from bot.web.console import Console, ConsoleMount

    settings = console_settings(tmp_path)
    await upgrade(settings.database_url)
    app = await build_app(settings, clock=clock)
    try:
        asgi = build_asgi(app, [ConsoleMount(app, Console(app, secret=SECRET))])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi),
                                     base_url="https://helpdesk.example.com") as client:
            page = await client.get("/console/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token
            response = await client.post("/console/signin/demo", data={"csrf": token.group(1), "email": TECH})
            cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
            assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await app.aclose()


async def test_employee_html_and_script_are_shown_as_text(console: ConsoleHarness) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)> & <b>bold</b>'
    ref = await console.open_ticket(attack)
    await console.sign_in(TECH)
    for path in ("/console/queue", f"/console/tickets/{ref}"):
        page = await console.client.get(path)
        assert attack not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text


async def test_demo_sign_in_is_refused_with_a_real_directory(tmp_path: Path) -> None:
    graph = console_settings(tmp_path, directory={"backend": "graph"}, web={"sign_in": "demo"})
    assert not demo_allowed(graph)
    assert not demo_allowed(console_settings(tmp_path, directory={"backend": "graph"}))
    assert demo_allowed(console_settings(tmp_path))


async def test_sign_out_ends_the_session(console: ConsoleHarness) -> None:
    await console.sign_in(TECH)
    token = await console.csrf()
    refused = await console.client.post("/console/signout", data={})
    assert refused.status_code == 403
    response = await console.client.post("/console/signout", data={"csrf": token})
    assert response.status_code == 303
    assert (await console.client.get("/console/queue")).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/x", "/elsewhere"])
async def test_sign_in_never_redirects_off_the_console(console: ConsoleHarness, target: str) -> None:
    page = await console.client.get("/console/signin", params={"next": target})
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    response = await console.client.post("/console/signin/demo", data={"csrf": token.group(1), "email": TECH,
                                                                        "next": target})
    assert response.headers["location"] == "/console/"
