"""Broadcast benchmark: an outage notice to N recipients through the outbox, against a rate-limited
Slack Web API stand-in on loopback, uninterrupted and with the worker SIGKILLed halfway and restarted.

    python bench/broadcast.py                       # 10,000 recipients, stand-in allows 200 msg/s
    python bench/broadcast.py --recipients 2000 --rate 100 --runs kill

What runs: the notice is posted with the real `OutageService` (one outbox row per recipient, as
`/helpdesk outage post --dm everyone` does); delivery is the real `OutboxWorker` with its pacing,
in a child process. The Slack side is THIS FILE's minimal stand-in (`chat.postMessage` with a global
token bucket answering 429 + Retry-After, `conversations.history` so an interrupted delivery can be
checked) and a small sender for it (`BenchSlackSender`): it measures the outbox and its pacing, not
the production Slack adapter. Prints: recipients, allowed rate, bound (recipients / rate), actual
time, ratio, duplicates (recipients who got more than one copy), losses (who got none), 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ----- the stand-in ------------------------------------------------------------------------------


class StandIn:
    """chat.postMessage limited to `rate` messages a second overall (token bucket, small burst)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, time.monotonic()
        self.lock = threading.Lock()
        self.messages: list[tuple[str, str, float]] = []  # (channel, idempotency key, at)
        self.by_channel: dict[str, list[dict[str, Any]]] = {}
        self.limited = 0
        self.port = 0

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            self.limited += 1
            return False

    def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not self.take():
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        channel = str(body.get("channel"))
        key = str(((body.get("metadata") or {}).get("event_payload") or {}).get("key", ""))
        with self.lock:
            ts = f"{time.time():.6f}.{len(self.messages)}"
            self.messages.append((channel, key, time.monotonic()))
            self.by_channel.setdefault(channel, []).append({"ts": ts, "key": key})
        return 200, {"ok": True, "channel": channel, "ts": ts}, {}

    def history(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            found = list(self.by_channel.get(str(body.get("channel")), []))
        return {"ok": True, "messages": [{"ts": m["ts"], "metadata": {"event_type": "helpdesk_outbox",
                                                                      "event_payload": {"key": m["key"]}}}
                                         for m in found]}

    def serve(self) -> None:
        """aiohttp on its own thread and event loop, on an ephemeral loopback port."""
        from aiohttp import web

        async def post_message(request: web.Request) -> web.Response:
            status, data, headers = self.post(await request.json())
            return web.json_response(data, status=status, headers=headers)

        async def history(request: web.Request) -> web.Response:
            return web.json_response(self.history(await request.json()))

        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/api/chat.postMessage", post_message)
            app.router.add_post("/api/conversations.history", history)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)


# ----- the worker process ------------------------------------------------------------------------


class BenchSlackSender:
    """Posts to the stand-in like chat.postMessage, tagging each message with its outbox key in
    `metadata` so an interrupted delivery can be looked up (conversations.history) instead of resent."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.session: Any = None

    def _client(self) -> Any:
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                                 connector=aiohttp.TCPConnector(limit=64))
        return self.session

    async def send(self, delivery: Any) -> str | None:
        from bot.outbox.worker import RetryLater

        body = {"channel": delivery.address["conversation_id"], "text": delivery.payload["reply"]["text"],
                "metadata": {"event_type": "helpdesk_outbox", "event_payload": {"key": delivery.idempotency_key}}}
        async with self._client().post(f"{self.api}/chat.postMessage", json=body) as response:
            if response.status == 429:
                raise RetryLater("ratelimited", retry_after=float(response.headers.get("Retry-After", "1")))
            return str((await response.json())["ts"])

    async def find_delivered(self, delivery: Any) -> str | None:
        async with self._client().post(f"{self.api}/conversations.history",
                                       json={"channel": delivery.address["conversation_id"]}) as response:
            data = await response.json()
        for message in data.get("messages", []):
            if message["metadata"]["event_payload"]["key"] == delivery.idempotency_key:
                return str(message["ts"])
        return None


async def work(db: str, api: str, rate: float, concurrency: int) -> None:
    from sqlalchemy import func, select

    from bot.outbox.worker import OutboxWorker, Pacing
    from bot.store.db import create_engine, session_factory
    from bot.store.tables import OutboxRow

    engine = create_engine(db)
    sessions = session_factory(engine)
    worker = OutboxWorker(sessions, {"slack": BenchSlackSender(api)}, lease_seconds=30, poll_seconds=0.2,
                          batch=50, concurrency=concurrency,
                          pacing=Pacing(lane_rate={"slack": 1.0}, global_rate={"slack": rate},
                                        global_burst=max(1.0, rate / 20)))
    task = asyncio.create_task(worker.run_forever())
    while True:
        await asyncio.sleep(0.5)
        async with sessions() as session:
            left = await session.scalar(select(func.count()).select_from(OutboxRow)
                                        .where(OutboxRow.status.in_(("pending", "sending"))))
        if not left:
            break
    worker.stop()
    await task
    sender = worker.senders["slack"]
    if isinstance(sender, BenchSlackSender) and sender.session is not None:
        await sender.session.close()
    await engine.dispose()


# ----- the run -----------------------------------------------------------------------------------


async def prepare(db: str, recipients: int) -> None:
    from bot.outages.audience import Member, StaticAudience
    from bot.outages.service import Audience, NoticeDraft, OutageService
    from bot.render.renderer import Renderer
    from bot.settings import OutageSettings
    from bot.store.db import create_engine, session_factory
    from bot.store.migrate import upgrade
    from bot.store.repos import UnitOfWork

    await upgrade(db)
    engine = create_engine(db)
    sessions = session_factory(engine)
    people = [Member(f"user{i:05d}@example.com") for i in range(recipients)]
    service = OutageService(sessions=sessions, renderer=Renderer(), settings=OutageSettings(),
                            audience=StaticAudience(people), dm_platform="slack")
    async with sessions() as session, session.begin():
        await service.post(UnitOfWork(session, actor="ada.admin@example.com"),
                           NoticeDraft(service="Outlook", summary="Email is delayed",
                                       audience=Audience(everyone=True)), actor="ada.admin@example.com")
    await engine.dispose()


# The worker is paced a little below the platform's limit, as production settings should be.
HEADROOM = 0.97


def start_worker(db: str, api: str, rate: float, concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, __file__, "--worker", "--db", db, "--api", api,
                             "--rate", str(rate * HEADROOM),
                             "--concurrency", str(concurrency)], env=env)


def run(recipients: int, rate: float, concurrency: int, kill_at: float | None) -> dict[str, Any]:
    stand_in = StandIn(rate, burst=max(2.0, rate / 10))
    stand_in.serve()
    api = f"http://127.0.0.1:{stand_in.port}/api"
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as tmp:
        db = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(prepare(db, recipients))
        started = time.monotonic()
        child = start_worker(db, api, rate, concurrency)
        killed_after = None
        if kill_at is not None:
            while len(stand_in.messages) < recipients * kill_at and child.poll() is None:
                time.sleep(0.01)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            killed_after = len(stand_in.messages)
            child = start_worker(db, api, rate, concurrency)
        child.wait()
        finished = (stand_in.messages[-1][2] if stand_in.messages else time.monotonic()) - started
    per_key = Counter(key for _, key, _ in stand_in.messages)
    per_channel = Counter(channel for channel, _, _ in stand_in.messages)
    expected = {f"email:user{i:05d}@example.com" for i in range(recipients)}
    bound = recipients / rate
    return {
        "run": "killed+restarted" if kill_at is not None else "uninterrupted",
        "recipients": recipients, "rate": rate, "bound_s": round(bound, 1), "actual_s": round(finished, 1),
        "ratio": round(finished / bound, 3), "duplicates": sum(1 for c in per_channel.values() if c > 1),
        "losses": len(expected - set(per_channel)), "keys_twice": sum(1 for c in per_key.values() if c > 1),
        "http_429": stand_in.limited, "killed_after": killed_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="messages a second the stand-in allows")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", choices=["both", "plain", "kill"], default="both")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction delivered when the worker is killed")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(work(args.db, args.api, args.rate, args.concurrency))
        return
    results = []
    if args.runs in ("both", "plain"):
        results.append(run(args.recipients, args.rate, args.concurrency, None))
    if args.runs in ("both", "kill"):
        results.append(run(args.recipients, args.rate, args.concurrency, args.kill_at))
    if args.json:
        for result in results:
            print(json.dumps(result))
        return
    print("Stand-in: this file's loopback chat.postMessage (global token bucket, 429 + Retry-After), "
          f"not the production Slack adapter. Worker paced at {HEADROOM:.0%} of the stand-in's rate; "
          "times include starting the worker process(es).")
    header = f"{'run':<18}{'recipients':>11}{'rate/s':>8}{'bound s':>9}{'actual s':>10}{'ratio':>7}" \
             f"{'dups':>6}{'losses':>8}{'429s':>7}{'killed at':>11}"
    print(header)
    for r in results:
        print(f"{r['run']:<18}{r['recipients']:>11}{r['rate']:>8.0f}{r['bound_s']:>9}{r['actual_s']:>10}"
              f"{r['ratio']:>7}{r['duplicates']:>6}{r['losses']:>8}{r['http_429']:>7}"
              f"{r['killed_after'] if r['killed_after'] is not None else '-':>11}")


if __name__ == "__main__":
    main()
