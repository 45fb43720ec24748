"""What the composition root calls. No network I/O at construction: the demo backend reads its
YAML file; the Graph backend creates its MSAL client and `httpx.AsyncClient` on first use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from bot.graph.actions.runner import SelfServiceRunner
from bot.graph.demo import DemoDirectory
from bot.graph.directory import Directory
from bot.graph.graph_client import GraphClient, MsalTokenProvider
from bot.graph.graph_directory import REQUIRED, GraphDirectory
from bot.graph.resolver import DirectoryPersonResolver
from bot.settings import Settings


def build_directory(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    msal_http_client: httpx.Client | None = None,
) -> Directory:
    """The configured backend. `transport` / `msal_http_client` are for tests (stand-ins)."""
    if settings.directory.backend == "demo":
        return DemoDirectory.from_file(settings.demo_directory_file)
    tokens = MsalTokenProvider(settings.graph, http_client=msal_http_client)
    client = GraphClient(settings.graph, tokens, transport=transport, required=REQUIRED)
    return GraphDirectory(client, report_cache_seconds=settings.graph.report_cache_seconds)


def build_resolver(settings: Settings, directory: Directory) -> DirectoryPersonResolver:
    return DirectoryPersonResolver(directory, settings.roles, cache_seconds=settings.directory.cache_seconds)


def build_action_runner(settings: Settings, directory: Directory,
                        clock: Callable[[], datetime]) -> SelfServiceRunner:
    """Raises `PolicyError` for unsafe settings (verification `none` with Graph)."""
    return SelfServiceRunner(settings, directory, clock=clock)
