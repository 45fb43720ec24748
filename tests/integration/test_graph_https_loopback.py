"""The bot configured as in production, only pointed at the stand-in on loopback HTTPS: settings
from HELPDESK_GRAPH__* variables, trust from SSL_CERT_FILE, no transport injected anywhere."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.channels.console.simulate import FakeClock
from bot.core.models import Person, Platform, PlatformUser
from bot.core.ports import ActionRequest
from bot.graph import build_action_runner, build_directory, build_resolver
from bot.settings import load_settings
from tests.standins.backends import RecordingContext
from tests.standins.graph import GraphStandIn, serve_https

# The injected clock the runner judges codes, grants, approvals and rate limits by.
CLOCK = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


async def test_graph_backend_over_loopback_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    standin = GraphStandIn()
    with serve_https(standin, tmp_path) as (origin, ca_file):
        for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        monkeypatch.setenv("HELPDESK_DIRECTORY__BACKEND", "graph")
        monkeypatch.setenv("HELPDESK_GRAPH__TENANT_ID", standin.tenant_id)
        monkeypatch.setenv("HELPDESK_GRAPH__CLIENT_ID", standin.client_id)
        monkeypatch.setenv("HELPDESK_GRAPH__CLIENT_SECRET", standin.client_secret)
        monkeypatch.setenv("HELPDESK_GRAPH__AUTHORITY_HOST", origin)
        monkeypatch.setenv("HELPDESK_GRAPH__BASE_URL", f"{origin}/v1.0")
        monkeypatch.setenv("HELPDESK_GRAPH__MAIL_SENDER", "helpdesk@example.com")
        settings = load_settings()
        directory = build_directory(settings)
        resolver = build_resolver(settings, directory)
        runner = build_action_runner(settings, directory, clock=CLOCK)
        try:
            person = await resolver.resolve(PlatformUser(Platform.SLACK, "U1", email="alice@example.com"))
            assert isinstance(person, Person) and person.display_name == "Alice Employee"
            ctx = RecordingContext()
            ask = await runner.run(ActionRequest("reset_password", person, {}, "k"), ctx)
            assert ask.input_slot == "verification_code"  # email_code by default with Graph
            code = standin.sent_mail[-1].text.split("code is ")[1][:6]
            done = await runner.run(
                ActionRequest("reset_password", person, {"verification_code": code}, "k"), ctx
            )
            assert done.code == "done" and done.secret
            status = await runner.run(ActionRequest("account_status", person, {}, "k"), ctx)
            assert status.code == "ok"
            quota = await runner.run(ActionRequest("storage_quota", person, {}, "k"), ctx)
            assert quota.code == "nearly_full"
        finally:
            await runner.aclose()
    hosts = {r.url.split("/")[2] for r in standin.requests}
    assert hosts == {origin.split("//")[1]}  # nothing but the configured host was contacted
    assert standin.token_requests == 1
    assert standin.downloads_with_auth == 0
