from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from bot.channels.console.channel import text_incoming
from bot.logs import configure_logging, redact
from tests.helpers import GREETING_FLOW, settings_with_flows


def test_redaction_masks_tokens_and_secrets() -> None:
    line = redact("token xoxb-1234567890-abcdef Bearer eyJhbGciOiJSUzI1NiJ9.x password=hunter2 client_secret: abc")
    assert "xoxb-1234567890" not in line and "eyJhbGci" not in line
    assert "hunter2" not in line and "abc" not in line.split("client_secret")[1]


async def test_one_json_line_per_message_without_text(tmp_path: Path, sqlite_url: str) -> None:
    from bot.app import build_app
    from bot.store.migrate import upgrade

    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        await upgrade(sqlite_url)
        app = await build_app(settings_with_flows(tmp_path, GREETING_FLOW), database_url=sqlite_url)
        try:
            await app.pipeline.handle(text_incoming("alice@example.com", "hello my secret phrase", event_id="EV-9"))
        finally:
            await app.aclose()
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    handled = [line for line in lines if line["msg"] == "message handled"]
    assert len(handled) == 1
    entry = handled[0]
    assert entry["conversation"] == "console:alice@example.com"
    assert entry["event_id"] == "EV-9" and isinstance(entry["duration_ms"], float)
    assert "secret phrase" not in stream.getvalue()
