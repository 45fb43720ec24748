"""Fixtures of the web console tests: the injected clock and the console on the real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.channels.serve import build_asgi, try_transcript
from bot.store.migrate import upgrade
from bot.web.console import Console, ConsoleMount
from tests.web.console_harness import SECRET, Clock, ConsoleHarness, console_settings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def console(tmp_path: Path, clock: Clock) -> AsyncIterator[ConsoleHarness]:
    from bot.app import build_app

    settings = console_settings(tmp_path)
    await upgrade(settings.database_url)
    app = await build_app(settings, clock=clock)
    web = Console(app, secret=SECRET, transcripts=try_transcript)
    asgi = build_asgi(app, [ConsoleMount(app, web)])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:3000")
    try:
        yield ConsoleHarness(client, app, web, clock)
    finally:
        await client.aclose()
        await app.aclose()
