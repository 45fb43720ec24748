"""Reaching people who never wrote to the bot: before a proactive message the app is installed for
them through Microsoft Graph (`POST /users/{id}/teamwork/installedApps`, the Graph stand-in), then
the personal chat is opened through the Bot Connector stand-in and the message sent. Refusals are
reported: the person is counted as not reachable in the outage report, with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.app import StartupError, build_app
from bot.channels.teams.install import PERMISSION, AppInstaller
from bot.channels.teams.routes import teams_routes
from bot.graph.graph_client import GraphClient, MsalTokenProvider
from bot.graph.graph_directory import REQUIRED
from bot.settings import GraphSettings
from bot.store.tables import OutboxRow
from tests.channels.teams_real import ADA, ALICE, RealTeamsBot, make_real_bot, real_settings
from tests.standins.bot_connector import BotConnectorStandIn
from tests.standins.graph import GraphStandIn

CATALOG_APP = "e3a7b0c2-0000-4000-8000-00000000cafe"
BOB = "0d8f8a1e-0000-4000-8000-000000000002"
TOM = "0d8f8a1e-0000-4000-8000-000000000010"
ERIN = "0d8f8a1e-0000-4000-8000-000000000005"
DAVE = "0d8f8a1e-0000-4000-8000-000000000004"


class Rig:
    def __init__(self, bot: RealTeamsBot, graph: GraphStandIn) -> None:
        self.bot = bot
        self.graph = graph

    def installs(self) -> list[str]:
        return [r.path.split("/")[2] for r in self.graph.calls("POST", r"/teamwork/installedApps$")]


@pytest.fixture
async def rig(tmp_path: Path, standin: BotConnectorStandIn) -> AsyncIterator[Rig]:
    graph = GraphStandIn()
    graph.teams_catalog = {CATALOG_APP}
    # Installing the app through Graph is what lets the connector open a chat with the person.
    graph.on_app_installed = lambda user_id, app_id: standin.installed.add(user_id)
    settings = GraphSettings(tenant_id=graph.tenant_id, client_id=graph.client_id, client_secret=graph.client_secret,
                             retry_budget_seconds=5)
    client = GraphClient(settings, MsalTokenProvider(settings, http_client=httpx.Client(transport=graph.transport())),
                         transport=graph.transport(), required=REQUIRED, sleep=_no_sleep)
    bot = await make_real_bot(real_settings(tmp_path, teams={"service_url": standin.url}), standin)
    bot.channel.deliverer.installer = AppInstaller(client, CATALOG_APP)
    try:
        yield Rig(bot, graph)
    finally:
        await client.aclose()
        await bot.client.aclose()
        await bot.app.aclose()


async def _no_sleep(seconds: float) -> None:
    return None


async def test_outage_notice_installs_the_app_then_messages_and_reports_refusals(rig: Rig) -> None:
    bot, graph = rig.bot, rig.graph
    await bot.post(bot.installed(ADA))
    await bot.post(bot.installed(ALICE))
    graph.fail("POST", rf"^/users/{ERIN}/teamwork/installedApps$", 403, "Forbidden",
               message="Missing role permissions on the request. API requires one of "
                       f"'{PERMISSION}'. Roles on the request ''.")
    graph.fail("POST", rf"^/users/{DAVE}/teamwork/installedApps$", 429, "TooManyRequests",
               retry_after="1")
    await bot.post(bot.personal(ADA, '/helpdesk outage post --service VPN --summary "VPN is down" '
                                     "--dm group:all-staff"))
    notices = [c for c in bot.standin.posts() if any("VPN is down" in t for t in bot.standin.texts(c))]
    reached = {c.conversation_id for c in notices}
    # Alice and Ada had the app: no install for them. Bob and Tom never wrote: installed, then messaged.
    assert ALICE.chat in reached and ADA.chat in reached
    assert BOB in rig.installs() and TOM in rig.installs()
    assert ALICE.aad not in rig.installs() and ADA.aad not in rig.installs()
    opened = [c for c in bot.standin.sent("POST") if c.path.rstrip("/") == "/v3/conversations"]
    members = {m["id"] for c in opened for m in c.body["members"]}
    assert {BOB, TOM} <= members
    new_chats = {c.conversation_id for c in notices if c.conversation_id.startswith("a:standin-personal-")}
    assert len(new_chats) >= 2
    # The install body is Microsoft's shape.
    body = graph.calls("POST", rf"^/users/{BOB}/teamwork/installedApps$")[0].json()
    assert body == {"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{CATALOG_APP}"}
    # 429 with Retry-After was retried by the Graph client, then Dave was reached too.
    assert len(graph.calls("POST", rf"^/users/{DAVE}/teamwork/installedApps$")) == 2
    assert DAVE in members
    # Erin: Graph refused the install: reported, counted as not reachable, never retried.
    async with bot.app.sessions() as session:
        failed = list((await session.execute(select(OutboxRow).where(OutboxRow.status == "failed"))).scalars())
    assert [r.address.get("conversation_id") for r in failed] == ["email:erin@example.com"]
    assert "not reachable" in (failed[0].last_error or "") and PERMISSION in (failed[0].last_error or "")
    assert failed[0].attempts == 1
    report = await _report(bot)
    assert report["unreachable"] == 1 and report["failed"] == 1
    text = await _report_text(bot)
    assert "1 not reachable" in text


async def test_already_installed_409_opens_the_chat(rig: Rig) -> None:
    """Graph says the app is already installed (409 Conflict): the chat is opened again and used."""
    bot, graph = rig.bot, rig.graph
    graph.state.teams_apps[BOB] = {"inst-1": CATALOG_APP}
    # The connector refused once (it had not caught up), then opens the chat after the 409.
    bot.standin.fail(403, times=1, method="POST", path_contains="/v3/conversations")
    bot.standin.installed.add(BOB)
    target = await bot.channel.deliverer.personal_target(email="bob@example.com")
    assert target.personal and target.conversation_id.startswith("a:standin-personal-")
    assert rig.installs() == [BOB]
    assert graph.state.teams_apps[BOB] == {"inst-1": CATALOG_APP}


async def test_without_the_setting_no_install_is_tried(rig: Rig) -> None:
    bot = rig.bot
    bot.channel.deliverer.installer = None
    from bot.channels.teams.delivery import Unreachable

    with pytest.raises(Unreachable, match="has not installed"):
        await bot.channel.deliverer.personal_target(email="tom.tech@example.com")
    assert rig.installs() == []


async def test_proactive_install_settings_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_TEAMS__APP_PASSWORD", "x")
    for teams, expected in (({"proactive_install": True}, "catalog_app_id"),
                            ({"proactive_install": True, "catalog_app_id": CATALOG_APP}, "directory.backend")):
        settings = real_settings(tmp_path, teams={"allow_anonymous": False, "app_id": "app", **teams})
        app = await build_app(settings)
        try:
            with pytest.raises(StartupError, match=expected):
                teams_routes(app)
        finally:
            await app.aclose()


async def _report(bot: RealTeamsBot) -> dict[str, object]:
    async with bot.app.sessions() as session:
        return (await bot.app.services["outages"].report(session, 1)).to_json()  # type: ignore[no-any-return]


async def _report_text(bot: RealTeamsBot) -> str:
    from bot.core.models import Platform

    async with bot.app.sessions() as session:
        report = await bot.app.services["outages"].report(session, 1)
    return str(bot.app.services["outages"].render_report(report, Platform.CONSOLE))
