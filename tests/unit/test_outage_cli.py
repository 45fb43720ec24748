"""`helpdesk outage ...` (the Typer sub-app): role check, post, status, resolve."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.outages.cli import outage_app


async def test_outage_cli_post_status_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELPDESK_APP__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HELPDESK_OUTAGES__DM_PLATFORM", "console")
    runner = CliRunner()

    def invoke(*args: str) -> object:
        return runner.invoke(outage_app, list(args))

    denied = await asyncio.to_thread(invoke, "post", "--as", "alice@example.com", "--service", "VPN")
    assert denied.exit_code == 4  # type: ignore[attr-defined]
    posted = await asyncio.to_thread(invoke, "post", "--as", "ada.admin@example.com", "--service", "VPN",
                                     "--summary", "VPN is down", "--dm", "everyone")
    assert posted.exit_code == 0, posted.output  # type: ignore[attr-defined]
    assert posted.output.startswith("1\t")  # type: ignore[attr-defined]
    status = await asyncio.to_thread(invoke, "status", "1", "--as", "tom.tech@example.com", "--json")
    assert status.exit_code == 0 and '"pending"' in status.output  # type: ignore[attr-defined]
    resolved = await asyncio.to_thread(invoke, "resolve", "1", "--as", "ada.admin@example.com", "--note", "fixed")
    assert resolved.exit_code == 0, resolved.output  # type: ignore[attr-defined]
    again = await asyncio.to_thread(invoke, "resolve", "1", "--as", "ada.admin@example.com")
    assert again.exit_code == 1  # type: ignore[attr-defined]
    missing = await asyncio.to_thread(invoke, "recall", "9", "--as", "ada.admin@example.com")
    assert missing.exit_code == 1  # type: ignore[attr-defined]
