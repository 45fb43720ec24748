"""Kill or terminate a real `helpdesk serve` in the middle of a burst of signed Slack events, start it
again, and count what was answered: every acknowledged message must be answered exactly once.

Used by tests/integration/test_inbox_durability.py (a modest burst, SQLite and PostgreSQL) and by
bench/durability.py (1,000 events, a table). The Slack Web API is tests/standins/slack_api.py on
loopback; each event is a DM in its own conversation, and a reply is recognised by the outbox key
Slack keeps in the message metadata (`reply:slack:<event id>:0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.channels.slack_harness import ALICE, QUEUE, SECRET, TOKEN, envelope, sign
from tests.standins.slack_api import SlackStandIn

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event(n: int, run: str) -> tuple[str, bytes]:
    ts = f"{int(time.time())}.{n:06d}"
    channel = f"D9{run}{n:06d}"
    body = envelope({"user": ALICE, "type": "message", "ts": ts, "text": "hello", "channel": channel,
                     "event_ts": ts, "channel_type": "im", "client_msg_id": f"cm-{run}-{n}"}, f"Ev{run}x{n}")
    return str(body["event_id"]), json.dumps(body).encode()


@dataclass
class Outcome:
    mode: str
    database: str
    sent: int = 0
    acked: set[str] = field(default_factory=set)
    refused: int = 0  # not acknowledged (connection refused or reset, 5xx): Slack would retry these
    stored_before_stop: int = 0
    answered_once: int = 0
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stop_seconds: float = 0.0
    recover_seconds: float = 0.0
    ack_ms: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicates and bool(self.acked)


class Server:
    """`helpdesk serve` as a subprocess on a free port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 120.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"serve did not start:\n{self.log.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    async def wait(self, timeout: float) -> int | None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.process.poll()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def serve_env(database_url: str, standin: SlackStandIn, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update({
        "PYTHONPATH": str(ROOT), "HELPDESK_DATABASE__URL": database_url, "HELPDESK_APP__DATA_DIR": str(data_dir),
        "HELPDESK_SLACK__ENABLED": "true", "HELPDESK_SLACK__MODE": "http", "HELPDESK_SLACK__BOT_TOKEN": TOKEN,
        "HELPDESK_SLACK__SIGNING_SECRET": SECRET, "HELPDESK_SLACK__API_URL": standin.url,
        "HELPDESK_SLACK__QUEUE_CHANNEL": QUEUE, "HELPDESK_SLACK__RATE_PER_MINUTE_GLOBAL": "600000",
        "HELPDESK_SLACK__POST_RATE_PER_CHANNEL": "100", "HELPDESK_SLACK__POST_BURST_PER_CHANNEL": "50",
        "HELPDESK_OUTBOX__GLOBAL_RATE_PER_SECOND": json.dumps({"slack": 1000, "teams": 40}),
        "HELPDESK_OUTBOX__POLL_SECONDS": "0.2", "HELPDESK_INBOX__POLL_SECONDS": "0.2",
        "HELPDESK_LOG__LEVEL": "WARNING", "HELPDESK_TEAMS__ENABLED": "false",
    })
    env.update(extra)
    return env


async def _send(client: httpx.AsyncClient, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    headers = {"Content-Type": "application/json", **sign(body)}
    try:
        response = await client.post("/slack/events", content=body, headers=headers, timeout=10)
        return response.status_code, (time.perf_counter() - started) * 1000
    except httpx.HTTPError:
        return 0, 0.0


def delivered_keys(standin: SlackStandIn) -> Counter[str]:
    counts: Counter[str] = Counter()
    for keys in standin.delivered().values():
        counts.update(keys)
    return counts


async def run(mode: str, *, database_url: str, database: str, workdir: Path, events: int = 200,
              stop_after: float = 0.4, concurrency: int = 16, settle_timeout: float = 120.0,
              extra_env: dict[str, str] | None = None) -> Outcome:
    """`mode` is "kill" (SIGKILL once `stop_after` of the events are acknowledged) or "term"
    (SIGTERM then, with a backlog: turns are slowed and few run at once)."""
    assert mode in ("kill", "term")
    outcome = Outcome(mode, database)
    run_id = f"{mode[0]}{os.getpid() % 1000:03d}{int(time.time()) % 1000:03d}"
    extra = dict(extra_env or {})
    latency = {}
    if mode == "term":
        # A backlog longer than the drain: two turns at a time, a drain of one second, a slow Slack.
        extra.setdefault("HELPDESK_INBOX__CONCURRENCY", "2")
        extra.setdefault("HELPDESK_INBOX__DRAIN_SECONDS", "1")
        latency = {"conversations.open": 0.02, "users.info": 0.2}
    with SlackStandIn(token=TOKEN, latency=latency) as standin:
        env = serve_env(database_url, standin, workdir, **extra)
        first = Server(env, workdir / "serve-1.log")
        await first.start()
        bodies = [event(n, run_id) for n in range(events)]
        outcome.sent = len(bodies)
        threshold = max(1, int(events * stop_after))
        stopped = asyncio.Event()
        stop_at = [0.0]
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for item in bodies:
            queue.put_nowait(item)

        async def sender(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                event_id, body = queue.get_nowait()
                status, ms = await _send(client, body)
                if status == 200:
                    outcome.acked.add(event_id)
                    outcome.ack_ms.append(ms)
                else:
                    outcome.refused += 1
                if len(outcome.acked) >= threshold and not stopped.is_set():
                    stopped.set()
                    stop_at[0] = time.monotonic()
                    first.signal(signal.SIGKILL if mode == "kill" else signal.SIGTERM)

        try:
            async with httpx.AsyncClient(base_url=first.url) as client:
                await asyncio.gather(*(sender(client) for _ in range(concurrency)))
            outcome.exit_code = await first.wait(60)
            outcome.stop_seconds = time.monotonic() - stop_at[0] if stop_at[0] else 0.0
        finally:
            first.kill()
        outcome.stored_before_stop = sum(1 for k in delivered_keys(standin) if k.startswith("reply:slack:"))
        # The restart (same database, same Slack): everything acknowledged is answered, once.
        standin.latency.clear()
        env.pop("HELPDESK_INBOX__CONCURRENCY", None)
        second = Server(env, workdir / "serve-2.log")
        started = time.monotonic()
        await second.start()
        try:
            wanted = {f"reply:slack:{event_id}:0": event_id for event_id in outcome.acked}
            deadline = time.monotonic() + settle_timeout
            while time.monotonic() < deadline:
                keys = delivered_keys(standin)
                if all(keys[k] for k in wanted):
                    break
                await asyncio.sleep(0.25)
            outcome.recover_seconds = time.monotonic() - started
            await asyncio.sleep(1.0)  # anything about to go out twice would show now
            keys = delivered_keys(standin)
            outcome.missing = sorted(event_id for key, event_id in wanted.items() if not keys[key])
            outcome.answered_once = sum(1 for key in wanted if keys[key] == 1)
            outcome.duplicates = sorted(k for k, count in keys.items() if count > 1)
            second.signal(signal.SIGTERM)
            await second.wait(30)
        finally:
            second.kill()
    return outcome


def table(outcomes: list[Outcome]) -> str:
    head = (f"{'mode':5} {'db':10} {'sent':>5} {'acked':>5} {'refused':>7} {'answered once':>13} "
            f"{'missing':>7} {'dupes':>5} {'exit':>5} {'stop s':>6} {'recover s':>9} {'ack p99 ms':>10}")
    lines = [head, "-" * len(head)]
    for o in outcomes:
        p99 = sorted(o.ack_ms)[int(len(o.ack_ms) * 0.99) - 1] if o.ack_ms else 0.0
        lines.append(f"{o.mode:5} {o.database:10} {o.sent:5d} {len(o.acked):5d} {o.refused:7d} "
                     f"{o.answered_once:13d} {len(o.missing):7d} {len(o.duplicates):5d} "
                     f"{o.exit_code if o.exit_code is not None else '-':>5} {o.stop_seconds:6.1f} "
                     f"{o.recover_seconds:9.1f} {p99:10.1f}")
    return "\n".join(lines)
