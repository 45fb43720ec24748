"""Scale-out under faults: N `helpdesk serve` replicas and M `helpdesk worker`s on one PostgreSQL.

    PYTHONPATH=. python bench/scale_out.py [--quick] [--conversations 2000] [--people 300]

Everything runs on loopback: a scratch PostgreSQL database (created and dropped; HELPDESK_TEST_POSTGRES_URL
or postgres@127.0.0.1:5432), the Slack Web API stand-in (tests/standins/slack_api.py) as its own process,
the replicas in Slack HTTP mode (signed requests) with the outbox delivered only by the workers, and a
small round-robin TCP proxy written here (asyncio; one connection per request, a refused backend is
skipped, like a load balancer's retry).

Phases, in one run:
1. **One replica** (direct, no proxy): a share of the conversations, for the throughput baseline.
2. **The cluster** through the proxy: the rest; half-way through one replica is killed with SIGKILL
   and restarted. The load generator behaves like Slack: a request that fails or takes over 3 s is
   retried with the same event id (X-Slack-Retry-Num), so what an ack-then-die loses is visible.
3. **Claims**: tickets opened, their queue cards delivered by the workers, then three technicians send
   `/helpdesk claim <id>` for each ticket at the same moment, through the proxy.
4. **Notice**: an outage notice to everyone by direct message, delivered by the workers while one
   worker is killed with SIGKILL and restarted.

It prints answered vs sent (an answer is the flow's reply; the bot's "something went wrong" after a failed
turn is counted apart), how many were answered twice, claims with exactly one winner, notice
copies delivered exactly once, throughput of the cluster against one replica, and p99 time to answer
(from the first send of a message to the reply reaching the stand-in). Bounded: --timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STANDIN = ROOT / "tests" / "standins" / "slack_api.py"
PG_ADMIN = os.environ.get("HELPDESK_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"
QUEUE = "C0QUEUE001"
TECHS = {"U0TECH0001": "tom.tech@example.com", "U0TECH0002": "tina.tech@example.com",
         "U0TECH0003": "theo.tech@example.com"}
ADMIN = ("U0ADMN0001", "ada.admin@example.com")
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


def sign(body: bytes, content_type: str = "application/json") -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Connection": "close"}


def message_event(n: int, user: str) -> bytes:
    """The shape of ../shared/reference/payloads/slack_01_event_message_im.json."""
    ts = f"{int(time.time())}.{n:06d}"
    return json.dumps({
        "token": "verification_token", "team_id": "T0TEAM0001", "api_app_id": "A0APP00001",
        "event": {"user": user, "type": "message", "ts": ts, "text": TEXTS[n % len(TEXTS)], "channel": "D" + user[1:],
                  "event_ts": ts, "channel_type": "im", "client_msg_id": f"scale-{n}"},
        "type": "event_callback", "event_id": f"EvSCALE{n:08d}", "event_time": int(time.time()),
        "authorizations": [{"team_id": "T0TEAM0001", "user_id": "U0BOT00001", "is_bot": True}],
    }).encode()


def slash(user: str, text: str) -> bytes:
    """slack_12_slash_command_form_fields.json."""
    return urlencode({"token": "x", "team_id": "T0TEAM0001", "team_domain": "example", "channel_id": QUEUE,
                      "channel_name": "queue", "user_id": user, "user_name": "u", "command": "/helpdesk",
                      "text": text, "response_url": "https://hooks.slack.com/commands/1/2",
                      "trigger_id": f"1.2.{uuid.uuid4().hex}", "api_app_id": "A0APP00001"}).encode()


# ----- the round-robin proxy ------------------------------------------------------------------------


class Proxy:
    """TCP round robin over the replicas: a backend that refuses the connection is skipped."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._next = itertools.cycle(range(len(ports)))
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.skipped = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(self.ports)):
            port = self.ports[next(self._next)]
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                self.skipped += 1
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


# ----- processes ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    env: dict[str, str]
    logdir: Path
    serve_ports: list[int] = field(default_factory=list)
    serves: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)

    def start_serve(self, index: int) -> None:
        while len(self.serves) <= index:
            self.serves.append(None)
            self.serve_ports.append(free_port())
        self.serves[index] = self._spawn(["serve", "--host", "127.0.0.1", "--port", str(self.serve_ports[index])],
                                         f"serve{index}")

    def start_worker(self, index: int) -> None:
        while len(self.workers) <= index:
            self.workers.append(None)
        self.workers[index] = self._spawn(["worker"], f"worker{index}")

    @staticmethod
    def kill(process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop_all(self) -> None:
        for process in [*self.serves, *self.workers, *self.others]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [*self.serves, *self.workers, *self.others]:
            if process is not None:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()

    async def wait_ready(self, index: int, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.serve_ports[index]}/readyz"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                process = self.serves[index]
                if process is not None and process.poll() is not None:
                    raise SystemExit(f"serve{index} exited with {process.returncode}; "
                                     f"see {self.logdir}/serve{index}.log")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise SystemExit(f"serve{index} not ready after {timeout:.0f} s")


# ----- load ---------------------------------------------------------------------------------------


@dataclass
class Sent:
    n: int
    user: str
    first_sent: float
    acked: bool = False
    attempts: int = 0


@dataclass
class Phase:
    name: str
    sent: list[Sent] = field(default_factory=list)
    started: float = 0.0
    errors: int = 0


async def deliver(client: httpx.AsyncClient, url: str, body: bytes, content_type: str = "application/json",
                  retries: int = 3) -> tuple[bool, int]:
    """POST like Slack: retried on failure or after 3 s with the same body and X-Slack-Retry-Num."""
    for attempt in range(retries + 1):
        headers = sign(body, content_type)
        if attempt:
            headers.update({"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_error"})
        try:
            response = await client.post(url, content=body, headers=headers, timeout=3.0)
            if response.status_code == 200:
                return True, attempt + 1
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2 * (attempt + 1))
    return False, retries + 1


async def run_messages(phase: Phase, url: str, numbers: list[int], users: list[str], concurrency: int,
                       on_half: Any = None) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    semaphore = asyncio.Semaphore(concurrency)
    phase.started = time.monotonic()
    half = len(numbers) // 2

    async with httpx.AsyncClient(limits=limits) as client:
        async def one(n: int) -> None:
            async with semaphore:
                record = Sent(n, users[n % len(users)], time.monotonic())
                phase.sent.append(record)
                record.acked, record.attempts = await deliver(client, url + "/slack/events",
                                                              message_event(n, record.user))
                if not record.acked:
                    phase.errors += 1

        async def fault() -> None:
            # Once half the messages are acknowledged: turns are in flight on every replica.
            while sum(r.acked for r in phase.sent) < half:
                await asyncio.sleep(0.05)
            on_half()

        watcher = asyncio.create_task(fault()) if on_half is not None else None
        tasks = []
        for n in numbers:
            tasks.append(asyncio.create_task(one(n)))
            if len(tasks) % concurrency == 0:
                await asyncio.sleep(0)  # let them start in order
        await asyncio.gather(*tasks)
        if watcher is not None:
            await watcher


async def standin_calls(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    return list((await client.get(f"{base}_calls", timeout=60)).json()["calls"])


ERROR_REPLIES: Counter[str] = Counter()


async def dm_replies(client: httpx.AsyncClient, base: str) -> dict[str, list[float]]:
    """When each answer reached each person's DM, in order (the stand-in's clock: CLOCK_MONOTONIC).
    Only the flow's answer counts; anything else the bot posted there (its "something went wrong"
    after a failed turn) is counted in ERROR_REPLIES, by channel."""
    replies: dict[str, list[float]] = defaultdict(list)
    ERROR_REPLIES.clear()
    for call in await standin_calls(client, base):
        channel = str(call["params"].get("channel", ""))
        if call["method"] == "chat.postMessage" and call["ok"] and channel[:1] == "D":
            if str(call["params"].get("text", "")).startswith("Hello "):
                replies[channel].append(float(call["at"]))
            else:
                ERROR_REPLIES[channel] += 1
    return replies


def answered(phase: Phase, before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, Any]:
    """The replies that reached each DM during the phase against the messages sent there (in order)."""
    by_user: dict[str, list[Sent]] = defaultdict(list)
    for record in sorted(phase.sent, key=lambda r: r.n):
        by_user[record.user].append(record)
    answered_count = twice = missing = 0
    latencies: list[float] = []
    last = phase.started
    for user, records in by_user.items():
        channel = "D" + user[1:]
        got = after.get(channel, [])[len(before.get(channel, [])):]
        answered_count += min(len(got), len(records))
        twice += max(0, len(got) - len(records))
        missing += max(0, len(records) - len(got))
        for record, at in zip(records, got, strict=False):
            latencies.append(at - record.first_sent)
            last = max(last, at)
    latencies.sort()

    def p(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    elapsed = max(1e-9, last - phase.started)
    return {"sent": len(phase.sent), "acked": sum(r.acked for r in phase.sent), "answered": answered_count,
            "twice": twice, "missing": missing, "retried": sum(r.attempts > 1 for r in phase.sent),
            "p50_ms": p(0.50), "p99_ms": p(0.99), "per_s": answered_count / elapsed, "seconds": elapsed}


async def wait_replies(client: httpx.AsyncClient, base: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline:
        count = int((await client.get(f"{base}_count", params={"method": "chat.postMessage"})).json()["count"])
        if count >= expected:
            return
        still = still + 1 if count == last else 0
        if still > 40:  # nothing new for ~10 s: what is lost is lost
            return
        last = count
        await asyncio.sleep(0.25)


# ----- scratch database and in-process helpers ---------------------------------------------------------


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def directory_yaml(people: list[tuple[str, str, str]]) -> str:
    users = []
    for index, (_, email, name) in enumerate(people):
        users.append({"id": f"00000000-0000-4000-8000-{index:012d}", "email": email, "display_name": name,
                      "department": "Bench", "job_title": "Staff", "enabled": True, "groups": ["all-staff"]})
    import yaml

    return yaml.safe_dump({"users": users, "groups": [{"id": "g-all", "name": "all-staff"}]}, sort_keys=False)


async def open_tickets(env: dict[str, str], requesters: list[str], count: int) -> list[str]:
    """Tickets opened in this process against the shared database (the CLI would start Python per ticket)."""
    from bot.app import build_app
    from bot.settings import load_settings
    from bot.store.repos import UnitOfWork

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("HELPDESK_")})
    try:
        settings = load_settings()
        app = await build_app(settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    refs = []
    try:
        service = app.services["tickets"]
        tech = await service.person(TECHS["U0TECH0001"])
        for i in range(count):
            async with app.sessions() as session, session.begin():
                uow = UnitOfWork(session, actor=tech.email)
                person = await service.person(requesters[i % len(requesters)])
                row = await service.open(uow, person, category="hardware", summary=f"bench ticket {i}",
                                         channel="slack", opened_by=tech)
                refs.append(row.ref)
    finally:
        await app.aclose()
    return refs


async def claim_winners(db_url: str, refs: list[str]) -> dict[str, tuple[int, str | None]]:
    from sqlalchemy import func, select

    from bot.store.db import create_engine, session_factory
    from bot.store.tables import EventRow, TicketRow

    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            claims = dict((await session.execute(
                select(EventRow.subject, func.count()).where(EventRow.type == "ticket_claimed",
                                                             EventRow.subject.in_(refs)).group_by(EventRow.subject)
            )).all())
            holders = dict((await session.execute(
                select(TicketRow.ref, TicketRow.assignee_email).where(TicketRow.ref.in_(refs)))).all())
    finally:
        await engine.dispose()
    return {ref: (int(claims.get(ref, 0)), holders.get(ref)) for ref in refs}


async def outbox_counts(db_url: str, group: str | None = None) -> Counter[str]:
    from sqlalchemy import func, select

    from bot.store.db import create_engine, session_factory
    from bot.store.tables import OutboxRow

    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            query = select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
            if group is not None:
                query = query.where(OutboxRow.group_key == group)
            return Counter(dict((await session.execute(query)).all()))
    finally:
        await engine.dispose()


# ----- main ---------------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run (make bench)")
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tickets", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=900.0, help="the whole run stops after this")
    args = parser.parse_args()
    if args.quick:
        args.conversations, args.people, args.tickets = min(args.conversations, 300), min(args.people, 60), \
            min(args.tickets, 6)
    try:
        await asyncio.wait_for(run(args), args.timeout)
    except TimeoutError:
        print(f"\nSTOPPED: the run took longer than --timeout {args.timeout:g} s", flush=True)
        sys.exit(1)


async def run(args: argparse.Namespace) -> None:
    try:
        await pg_admin("SELECT 1")
    except Exception as exc:
        print(f"scale_out: PostgreSQL is not reachable at {PG_ADMIN} ({type(exc).__name__}): skipped")
        return
    name = f"helpdesk_scale_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    db_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-scale-"))
    cluster: Cluster | None = None
    proxy: Proxy | None = None
    try:
        people = [(f"U0P{n:07d}", f"person{n:04d}@example.com", f"Person {n:04d}") for n in range(args.people)]
        staff = [(uid, email, email.split("@")[0].replace(".", " ").title()) for uid, email in TECHS.items()]
        staff.append((ADMIN[0], ADMIN[1], "Ada Admin"))
        (tmp / "directory.yaml").write_text(directory_yaml(people + staff), encoding="utf-8")
        (tmp / "users.json").write_text(json.dumps({uid: {"email": email, "real_name": display}
                                                    for uid, email, display in people + staff}), encoding="utf-8")
        (tmp / "flows").mkdir()
        (tmp / "flows" / "smalltalk.yaml").write_text(FLOW, encoding="utf-8")
        (tmp / "kb").mkdir()
        standin_port = free_port()
        standin = f"http://127.0.0.1:{standin_port}/"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
        env = {**base_env, "PYTHONPATH": str(ROOT), "HELPDESK_DATABASE__URL": db_url,
               "HELPDESK_DIRECTORY__DEMO_FILE": str(tmp / "directory.yaml"), "HELPDESK_DIRECTORY__ALLOW_DEMO": "true",
               "HELPDESK_FLOWS__DIR": str(tmp / "flows"), "HELPDESK_KB__DIR": str(tmp / "kb"),
               "HELPDESK_SLACK__ENABLED": "true", "HELPDESK_SLACK__MODE": "http",
               "HELPDESK_SLACK__BOT_TOKEN": TOKEN, "HELPDESK_SLACK__SIGNING_SECRET": SECRET,
               "HELPDESK_SLACK__API_URL": standin + "api/", "HELPDESK_SLACK__QUEUE_CHANNEL": QUEUE,
               "HELPDESK_SLACK__RATE_PER_MINUTE_GLOBAL": "1000000", "HELPDESK_SLACK__POST_RATE_PER_CHANNEL": "100",
               "HELPDESK_SLACK__POST_BURST_PER_CHANNEL": "50",
               "HELPDESK_OUTBOX__IN_PROCESS": "false", "HELPDESK_OUTBOX__POLL_SECONDS": "0.2",
               "HELPDESK_OUTBOX__LEASE_SECONDS": "10",
               "HELPDESK_OUTBOX__GLOBAL_RATE_PER_SECOND": '{"slack": 200}',
               "HELPDESK_OUTBOX__LANE_RATE_PER_SECOND": '{"slack": 50}',
               "HELPDESK_LOG__LEVEL": "WARNING", "HELPDESK_METRICS__ENABLED": "true"}
        cluster = Cluster(env, tmp)
        cluster.others.append(subprocess.Popen(
            [sys.executable, str(STANDIN), "--port", str(standin_port), "--token", TOKEN, "--users",
             str(tmp / "users.json")], env=base_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        migrate = subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=300)
        if migrate.returncode:
            raise SystemExit(f"db upgrade failed: {migrate.stderr[-2000:]}")
        started = time.monotonic()
        for index in range(args.replicas):
            cluster.start_serve(index)
        for index in range(args.workers):
            cluster.start_worker(index)
        for index in range(args.replicas):
            await cluster.wait_ready(index, 300)
        print(f"{args.replicas} replicas and {args.workers} workers ready in {time.monotonic() - started:.0f} s "
              f"(scratch database {name}, logs in {tmp})", flush=True)
        proxy = Proxy(cluster.serve_ports)
        await proxy.start()
        users = [uid for uid, _, _ in people]

        async with httpx.AsyncClient(timeout=30) as control:
            # Warm-up (first users.info per person, connection pools): not measured.
            warm = Phase("warm-up")
            await run_messages(warm, f"http://127.0.0.1:{proxy.port}", list(range(9_000_000, 9_000_000 + len(users))),
                               users, args.concurrency)
            await wait_replies(control, standin, len(users), 120)
            after_warm = await dm_replies(control, standin)

            share = max(len(users), args.conversations // 4)
            single = Phase("one replica")
            await run_messages(single, f"http://127.0.0.1:{cluster.serve_ports[0]}", list(range(share)), users,
                               args.concurrency)
            await wait_replies(control, standin, len(users) + share, 180)
            after_single = await dm_replies(control, standin)

            victim = 1 % args.replicas
            kill_events: list[str] = []

            def kill_and_restart() -> None:
                cluster.kill(cluster.serves[victim])
                kill_events.append(f"serve{victim} SIGKILLed at {time.monotonic() - cluster_phase.started:.1f} s")

                async def restart() -> None:
                    await asyncio.sleep(2)
                    cluster.start_serve(victim)
                    await cluster.wait_ready(victim, 300)
                    kill_events.append(f"serve{victim} back at {time.monotonic() - cluster_phase.started:.1f} s")

                restarts.append(asyncio.create_task(restart()))

            restarts: list[asyncio.Task[None]] = []
            cluster_phase = Phase(f"{args.replicas} replicas + proxy")
            await run_messages(cluster_phase, f"http://127.0.0.1:{proxy.port}",
                               list(range(share, share + args.conversations)), users, args.concurrency,
                               on_half=kill_and_restart)
            await wait_replies(control, standin, len(users) + share + args.conversations, 300)
            for task in restarts:
                await task
            after_cluster = await dm_replies(control, standin)
            warm_result = answered(warm, {}, after_warm)
            one = answered(single, after_warm, after_single)
            many = answered(cluster_phase, after_single, after_cluster)

            # Claims: tickets, their cards delivered by the workers, three technicians at once.
            refs = await open_tickets(env, [email for _, email, _ in people], args.tickets)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                counts = await outbox_counts(db_url)
                if counts.get("pending", 0) + counts.get("sending", 0) == 0:
                    break
                await asyncio.sleep(0.5)
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits) as client:
                url = f"http://127.0.0.1:{proxy.port}/slack/events"
                await asyncio.gather(*(deliver(client, url, slash(uid, f"claim {ref}"),
                                               "application/x-www-form-urlencoded")
                                       for ref in refs for uid in TECHS))
            # Turns run after the ack: wait until every ticket has a claim (or 180 s), then a little
            # longer so that a second winner, if any, would be counted too.
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                winners = await claim_winners(db_url, refs)
                if all(count for count, _ in winners.values()):
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(5)
            winners = await claim_winners(db_url, refs)

            # Notice to everyone by DM, a worker killed mid-delivery and restarted.
            before = {k: list(v) for k, v in (await control.get(f"{standin}_delivered")).json()["channels"].items()}
            post = subprocess.run([sys.executable, "-m", "bot.cli", "outage", "post", "--as", ADMIN[1],
                                   "--service", "Email", "--summary", "bench notice", "--dm", "everyone"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            if post.returncode:
                raise SystemExit(f"outage post failed: {post.stderr[-2000:]}")
            incident, recipients = post.stdout.strip().split("\t")[0], post.stdout.strip().split("\t")[-1]
            group = f"outage:{incident}"
            worker_events: list[str] = []
            await asyncio.sleep(1.0)
            cluster.kill(cluster.workers[0])
            worker_events.append("worker0 SIGKILLed 1 s after the notice was posted")
            await asyncio.sleep(1.0)
            cluster.start_worker(0)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                counts = await outbox_counts(db_url, group)
                if counts.get("pending", 0) + counts.get("sending", 0) == 0 and sum(counts.values()):
                    break
                await asyncio.sleep(0.5)
            notice_rows = await outbox_counts(db_url, group)
            after = (await control.get(f"{standin}_delivered")).json()["channels"]
            copies: Counter[str] = Counter()
            for channel, keys in after.items():
                new = keys[len(before.get(channel, [])):]
                copies[channel] += sum(1 for key in new if key.startswith(f"{group}:"))
            copies = Counter({channel: count for channel, count in copies.items() if count})
            dm_targets = len(people) + len(staff)
            exactly_once = sum(1 for c in copies.values() if c == 1)
            more = sum(1 for c in copies.values() if c > 1)

        one_winner = sum(1 for count, holder in winners.values() if count == 1 and holder)
        print()
        print(f"== scale-out: {args.replicas} serve replicas + {args.workers} workers, one PostgreSQL, "
              f"Slack HTTP mode via a round-robin proxy (loopback)")
        print(f"{'phase':<24} {'sent':>6} {'acked':>6} {'answered':>8} {'twice':>6} {'missing':>7} {'retried':>7} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'per s':>7}")
        for label, r in (("warm-up", warm_result), ("one replica", one), (cluster_phase.name, many)):
            print(f"{label:<24} {r['sent']:>6} {r['acked']:>6} {r['answered']:>8} {r['twice']:>6} {r['missing']:>7} "
                  f"{r['retried']:>7} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {r['per_s']:>7.1f}")
        for line in kill_events:
            print(f"  fault: {line}")
        print(f"  proxy skipped a refused backend {proxy.skipped} times")
        failed = sum(path.read_text(errors="replace").count("slack turn failed") for path in tmp.glob("serve*.log"))
        print(f"  turns that failed after the ack (serve logs, 'slack turn failed'): {failed}")
        ratio = many["per_s"] / one["per_s"] if one["per_s"] else float("nan")
        print(f"throughput: cluster {many['per_s']:.1f}/s vs one replica {one['per_s']:.1f}/s (x{ratio:.2f}) "
              f"on this machine ({os.cpu_count()} cores shared with everything else)")
        # Over the whole run per DM (robust to a reply arriving after its phase was counted): replies
        # beyond the messages sent there are duplicates, fewer are losses.
        sent_to: Counter[str] = Counter("D" + r.user[1:] for ph in (warm, single, cluster_phase) for r in ph.sent)
        over = sum(max(0, len(after_cluster.get(ch, [])) - n) for ch, n in sent_to.items())
        under = sum(max(0, n - len(after_cluster.get(ch, []))) for ch, n in sent_to.items())
        print(f"whole run, per DM: {sum(sent_to.values())} messages, "
              f"{sum(len(after_cluster.get(ch, [])) for ch in sent_to)} replies; {over} replies beyond the messages "
              f"sent (duplicates), {under} messages without an answer (lost); "
              f"{sum(ERROR_REPLIES.values())} 'something went wrong' replies (a failed turn)")
        verdict = "OK" if many["missing"] == 0 and many["twice"] == 0 and over == 0 and under == 0 else "NOT OK"
        print(f"answered vs sent (cluster, replica killed): {many['answered']}/{many['sent']} answered, "
              f"{many['twice']} answered twice, {many['missing']} unanswered: {verdict}")
        print(f"claims: {len(refs)} tickets x {len(TECHS)} technicians at once: {one_winner} with exactly one winner, "
              f"{sum(1 for c, _ in winners.values() if c == 0)} unclaimed, "
              f"{sum(1 for c, _ in winners.values() if c > 1)} claimed twice: "
              f"{'OK' if one_winner == len(refs) else 'NOT OK'}")
        for line in worker_events:
            print(f"  fault: {line}")
        print(f"notice: {dm_targets} people by DM: {exactly_once} copies delivered exactly once, {more} more than "
              f"once, {dm_targets - exactly_once - more} not delivered; outbox rows {dict(notice_rows)}: "
              f"{'OK' if exactly_once == dm_targets and more == 0 else 'NOT OK'} ({recipients})")
    finally:
        if proxy is not None:
            await proxy.close()
        if cluster is not None:
            cluster.stop_all()
        with contextlib.suppress(Exception):
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
