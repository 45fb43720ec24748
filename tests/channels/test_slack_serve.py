"""`helpdesk serve` wiring: refusing bad Slack settings, /healthz, and a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.channels.serve import settings_problems
from bot.settings import load_settings
from tests.channels import slack_harness
from tests.channels.slack_harness import SECRET, TOKEN, message_im, sign
from tests.standins.slack_api import SlackStandIn

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin
ROOT = Path(__file__).resolve().parents[2]


def test_serve_refuses_slack_without_its_secrets() -> None:
    http = load_settings(slack={"enabled": True, "mode": "http", "bot_token": TOKEN})
    assert "HELPDESK_SLACK__SIGNING_SECRET" in " ".join(settings_problems(http))
    socket_mode = load_settings(slack={"enabled": True, "mode": "socket", "bot_token": TOKEN})
    assert "HELPDESK_SLACK__APP_TOKEN" in " ".join(settings_problems(socket_mode))
    fine = load_settings(slack={"enabled": True, "mode": "http", "bot_token": TOKEN, "signing_secret": SECRET},
                         directory={"allow_demo": True})
    assert settings_problems(fine) == []


async def test_healthz_reports_the_database(harness: slack_harness.Harness) -> None:
    response = await harness.client.get("/healthz")
    assert response.status_code == 200 and response.json()["ok"] is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(150)
async def test_helpdesk_serve_answers_a_signed_dm_through_the_standin(tmp_path: Path, standin: SlackStandIn) -> None:
    settings = slack_harness.make_settings(tmp_path, standin)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HELPDESK_DATABASE__URL": settings.database_url,
           "HELPDESK_FLOWS__DIR": str(settings.flows_dir), "HELPDESK_SLACK__ENABLED": "true",
           "HELPDESK_SLACK__BOT_TOKEN": TOKEN, "HELPDESK_SLACK__SIGNING_SECRET": SECRET,
           "HELPDESK_SLACK__API_URL": standin.url, "HELPDESK_SLACK__QUEUE_CHANNEL": slack_harness.QUEUE,
           "HELPDESK_LOG__LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 90  # the real flows: triage trains at start-up
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "serve did not start"
                await asyncio.sleep(0.2)
            raw = json.dumps(message_im("vpn won't connect")).encode()
            response = await client.post("/slack/events", content=raw,
                                         headers={"Content-Type": "application/json", **sign(raw)})
            assert response.status_code == 200
            bad = await client.post("/slack/events", content=raw,
                                    headers={"Content-Type": "application/json", **sign(raw, secret="wrong")})
            assert bad.status_code == 401
        posts = await asyncio.to_thread(standin.wait_for, "chat.postMessage", 1, 15.0)
        assert posts and posts[0].params["channel"] == "D0USER0001"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
