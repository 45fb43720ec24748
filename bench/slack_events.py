"""Slack events benchmark: signed `message.im` events at a fixed rate against `helpdesk serve`.

Starts the Slack Web API stand-in (tests/standins/slack_api.py) in its own process, then
`helpdesk serve` (HTTP mode, SQLite in a temporary directory, HELPDESK_SLACK__API_URL pointing at
the stand-in) as a subprocess, and sends events from many Slack users (one DM each) at a fixed
rate. It reports the ack latency (p50/p99/max of the HTTP response to Slack) and how many events
were handled per second end to end (a reply reached chat.postMessage on the stand-in).

For comparison the same load is sent to a baseline in the same run: a bare Starlette endpoint in
its own uvicorn process that only verifies the signature and acks.

    PYTHONPATH=. python bench/slack_events.py [--rate 50] [--seconds 10] [--users 200]

Outgoing pacing is raised (HELPDESK_SLACK__RATE_PER_MINUTE_GLOBAL) so that the numbers measure the
bot, not the pacer that protects a real workspace.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STANDIN = ROOT / "tests" / "standins" / "slack_api.py"

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
EMAILS = ["alice@example.com", "bob@example.com", "tom.tech@example.com", "tina.tech@example.com"]
FLOW = """
id: smalltalk
title: Small talk
category: smalltalk
it: false
triggers:
  examples: ["hello there", "hi", "good morning", "thanks"]
steps:
  - id: hello
    kind: say
    text: "Hello {{ person.first_name }}! How can I help?"
"""
TEXTS = ["hello there", "hi", "good morning", "thanks"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sign(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event(n: int, user: str) -> bytes:
    ts = f"{int(time.time())}.{n:06d}"
    return json.dumps({
        "token": "verification_token", "team_id": "T0TEAM0001", "api_app_id": "A0APP00001",
        "event": {"user": user, "type": "message", "ts": ts, "text": TEXTS[n % len(TEXTS)], "channel": "D" + user[1:],
                  "event_ts": ts, "channel_type": "im", "client_msg_id": f"bench-{n}"},
        "type": "event_callback", "event_id": f"EvBENCH{n:08d}", "event_time": int(time.time()),
        "authorizations": [{"team_id": "T0TEAM0001", "user_id": "U0BOT00001", "is_bot": True}],
    }).encode()


# ----- baseline server --------------------------------------------------------------------------


def baseline_app() -> Any:
    from slack_sdk.signature import SignatureVerifier
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    verifier = SignatureVerifier(SECRET)

    async def events(request: Request) -> Response:
        body = await request.body()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return Response(status_code=401)
        return Response(status_code=200)

    async def healthz(request: Request) -> Response:
        return Response('{"ok": true}', media_type="application/json")

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]), Route("/healthz", healthz)])


# ----- load -------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    sent: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    handled: int = 0
    handled_seconds: float = 0.0

    def row(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        rate = f"{self.handled / self.handled_seconds:8.1f}" if self.handled_seconds else "       -"
        handled = f"{self.handled:7d}" if self.handled_seconds else "      -"
        return (f"{self.name:<22} {self.sent:6d} {self.ok:6d} {p50:8.1f} {p99:8.1f} {max(lat) * 1000:8.1f} "
                f"{handled} {rate}")


async def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"server exited early: {process.stdout.read().decode() if process.stdout else ''}")
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("server did not become healthy")


class StandIn:
    """The stand-in, run standalone; replies are counted through its control endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api = url + "api/"

    async def count(self, client: httpx.AsyncClient) -> int:
        return int((await client.get(f"{self.url}_count", params={"method": "chat.postMessage"})).json()["count"])


async def load(name: str, url: str, rate: float, seconds: float, users: list[str], offset: int,
               standin: StandIn | None, drain_timeout: float) -> Result:
    result = Result(name)
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client, \
            httpx.AsyncClient(timeout=10.0) as control:
        before = await standin.count(control) if standin else 0

        async def one(n: int) -> None:
            body = event(offset + n, users[n % len(users)])
            started = time.perf_counter()
            try:
                response = await client.post("/slack/events", content=body, headers=sign(body))
            except httpx.HTTPError:
                return
            result.latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                result.ok += 1

        start = time.perf_counter()
        tasks = []
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
            result.sent += 1
        await asyncio.gather(*tasks)
        if standin is not None:
            deadline = time.perf_counter() + drain_timeout
            done = 0
            while time.perf_counter() < deadline:
                done = await standin.count(control) - before
                if done >= result.ok:
                    break
                await asyncio.sleep(0.05)
            result.handled = done
            result.handled_seconds = time.perf_counter() - start
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=200, help="distinct Slack users (one DM each)")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last replies")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        import uvicorn

        await uvicorn.Server(uvicorn.Config(baseline_app(), host="127.0.0.1", port=args.port, log_level="warning",
                                            access_log=False)).serve()
        return

    users = [f"U0BENCH{n:04d}" for n in range(args.users)]
    table = {u: {"email": EMAILS[n % len(EMAILS)], "real_name": f"Bench User {n}"} for n, u in enumerate(users)}
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="helpdesk-bench-") as tmp:
        users_file = Path(tmp) / "users.json"
        users_file.write_text(json.dumps(table), encoding="utf-8")
        standin_port = free_port()
        standin = StandIn(f"http://127.0.0.1:{standin_port}/")
        flows = Path(tmp) / "flows"
        flows.mkdir()
        (flows / "smalltalk.yaml").write_text(FLOW, encoding="utf-8")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
        env = {**base_env, "PYTHONPATH": str(ROOT), "HELPDESK_DATABASE__URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
               "HELPDESK_FLOWS__DIR": str(flows), "HELPDESK_KB__DIR": str(Path(tmp) / "kb"),
               "HELPDESK_SLACK__ENABLED": "true", "HELPDESK_SLACK__MODE": "http",
               "HELPDESK_SLACK__BOT_TOKEN": TOKEN, "HELPDESK_SLACK__SIGNING_SECRET": SECRET,
               "HELPDESK_SLACK__API_URL": standin.api, "HELPDESK_SLACK__RATE_PER_MINUTE_GLOBAL": "1000000",
               "HELPDESK_LOG__LEVEL": "WARNING"}
        servers = []
        try:
            servers.append(subprocess.Popen([sys.executable, str(STANDIN), "--port", str(standin_port), "--token",
                                             TOKEN, "--users", str(users_file)], env=base_env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
            async with httpx.AsyncClient() as control:
                for _ in range(100):
                    try:
                        await standin.count(control)
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            base_port = free_port()
            baseline = subprocess.Popen([sys.executable, __file__, "--baseline-server", "--port", str(base_port)],
                                        env=base_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            servers.append(baseline)
            port = free_port()
            bot = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            servers.append(bot)
            await wait_healthy(f"http://127.0.0.1:{base_port}", baseline)
            await wait_healthy(f"http://127.0.0.1:{port}", bot)
            # Warm-up (first auth.test, users.info cache, SQLite pages), not measured.
            await load("warm-up", f"http://127.0.0.1:{port}", min(args.rate, 20), 1, users, 9_000_000, standin, 30)
            results.append(await load("baseline (verify+ack)", f"http://127.0.0.1:{base_port}", args.rate,
                                      args.seconds, users, 0, None, 0))
            results.append(await load("helpdesk serve", f"http://127.0.0.1:{port}", args.rate, args.seconds,
                                      users, 1_000_000, standin, args.drain))
        finally:
            for process in servers:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    print(f"\n{args.rate:g} signed message.im events/s for {args.seconds:g} s, {args.users} users, one process, SQLite")
    print(f"{'target':<22} {'sent':>6} {'200s':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'handled':>7} "
          f"{'per s':>8}")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    asyncio.run(main())
