"""Builds the Teams channel and its outbox sender from settings (called by routes and registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.teams.auth import RequestAuthenticator, TeamsConfigError, check_settings
from bot.channels.teams.channel import TeamsChannel
from bot.channels.teams.connector import TeamsConnector, connector_tokens, parse_windows
from bot.channels.teams.delivery import Deliverer
from bot.channels.teams.install import AppInstaller
from bot.channels.teams.refs import RefStore
from bot.channels.teams.sender import TeamsSender
from bot.graph.graph_client import GraphClient
from bot.render.renderer import Renderer
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.app import App

SERVICE_KEY = "teams"


def build_installer(settings: Settings, directory: Any = None) -> AppInstaller | None:
    """The Graph app installer when `teams.proactive_install` is on: the app's Graph directory
    client when it has one, else a client of its own (a separate `helpdesk worker`)."""
    teams = settings.teams
    if not teams.proactive_install:
        return None
    client = getattr(directory, "client", None)
    if not isinstance(client, GraphClient):
        from bot.graph.graph_client import MsalTokenProvider
        from bot.graph.graph_directory import REQUIRED

        client = GraphClient(settings.graph, MsalTokenProvider(settings.graph), required=REQUIRED)
    return AppInstaller(client, teams.catalog_app_id)


def build_deliverer(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                    renderer: Renderer | None = None, directory: Any = None) -> Deliverer:
    check_settings(settings)
    tokens = connector_tokens(settings)
    connector = TeamsConnector(tokens, conversation_windows=parse_windows(settings.teams.conversation_windows),
                               app_per_second=settings.teams.app_messages_per_second, settings=settings.teams)
    return Deliverer(connector, RefStore(sessions), renderer or Renderer(), settings.teams,
                     installer=build_installer(settings, directory), directory=directory)


def teams_channel(app: App) -> TeamsChannel:
    """The app's Teams channel (built once; closed with the app)."""
    existing: Any = app.services.get(SERVICE_KEY)
    if isinstance(existing, TeamsChannel):
        return existing
    from bot.app import StartupError

    try:
        deliverer = build_deliverer(app.settings, app.sessions, app.renderer, app.directory)
    except TeamsConfigError as exc:
        raise StartupError(f"Teams: {exc}") from None
    channel = TeamsChannel(pipeline=app.pipeline, deliverer=deliverer,
                           authenticator=RequestAuthenticator(app.settings.teams, now=lambda: app.clock().timestamp()),
                           resolver=app.resolver, app_name=app.settings.app.name,
                           interim_after=app.settings.teams.interim_after_seconds)
    app.services[SERVICE_KEY] = channel
    app.on_close(deliverer.connector.aclose)
    app.on_close(channel.aclose)
    return channel


def teams_sender(settings: Settings, app: App | None = None) -> TeamsSender:
    """The outbox sender: shares the channel's connector (and its pacing) when the app is given;
    a separate `helpdesk worker` process builds its own."""
    if app is not None:
        return TeamsSender(teams_channel(app).deliverer)
    from bot.store.db import create_engine, session_factory

    sessions = session_factory(create_engine(settings.database_url))
    return TeamsSender(build_deliverer(settings, sessions))
