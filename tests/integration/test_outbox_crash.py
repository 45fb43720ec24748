"""A crash at any point of a delivery neither loses nor duplicates the message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from bot.core.models import Address, Outbound, Platform, Reply
from bot.outbox.worker import Delivery, OutboxWorker
from bot.store.db import create_engine, session_factory
from bot.store.migrate import upgrade
from bot.store.repos import UnitOfWork
from bot.store.tables import OutboxRow

pytestmark = pytest.mark.clock  # runs again with the system clock a year ahead (.ci/run)

ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """The process dies: nothing after this point runs (not an Exception a worker could catch)."""


# One clock governs the code under test: rows are queued with it and the worker reads it.
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class RecordingSender:
    """A platform that remembers what it received, by idempotency key (as Slack's metadata would)."""

    def __init__(self, crash: str | None = None) -> None:
        self.received: Counter[str] = Counter()
        self.refs: dict[str, str] = {}
        self.crash = crash

    async def send(self, delivery: Delivery) -> str | None:
        if self.crash == "before_send":
            raise Crash()
        self.received[delivery.idempotency_key] += 1
        self.refs[delivery.idempotency_key] = f"m-{len(self.refs) + 1}"
        if self.crash == "after_send":
            raise Crash()
        return self.refs[delivery.idempotency_key]

    async def find_delivered(self, delivery: Delivery) -> str | None:
        return self.refs.get(delivery.idempotency_key)


async def _db(tmp_path: Path) -> tuple[Any, Any, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        UnitOfWork(session, now=START).enqueue(
            Outbound(Address(Platform.CONSOLE, "alice@example.com"), Reply(text="hello")),
            idempotency_key="ticket:HD-1001:relay:1")
    return engine, sessions, url


async def _status(sessions: Any) -> tuple[str, str | None]:
    async with sessions() as session:
        row = (await session.execute(select(OutboxRow))).scalar_one()
        return row.status, row.message_ref


async def test_crash_between_send_and_mark_delivers_once(tmp_path: Path) -> None:
    engine, sessions, _ = await _db(tmp_path)
    clock = Clock()
    platform = RecordingSender(crash="after_send")
    first = OutboxWorker(sessions, {"console": platform}, clock=clock, lease_seconds=60)
    with contextlib.suppress(Crash):
        await first.run_once()
    assert platform.received["ticket:HD-1001:relay:1"] == 1
    assert (await _status(sessions))[0] == "sending"
    # A restarted worker before the lease expires leaves the row alone...
    platform.crash = None
    restarted = OutboxWorker(sessions, {"console": platform}, clock=clock, lease_seconds=60)
    assert await restarted.run_once() == 0
    # ...and after it, asks the platform first and does not send again.
    clock.now += timedelta(seconds=61)
    assert await restarted.run_once() == 1
    assert platform.received["ticket:HD-1001:relay:1"] == 1
    assert await _status(sessions) == ("sent", "m-1")
    await engine.dispose()


async def test_crash_before_send_delivers_once(tmp_path: Path) -> None:
    engine, sessions, _ = await _db(tmp_path)
    clock = Clock()
    platform = RecordingSender(crash="before_send")
    with contextlib.suppress(Crash):
        await OutboxWorker(sessions, {"console": platform}, clock=clock).run_once()
    platform.crash = None
    clock.now += timedelta(seconds=61)
    await OutboxWorker(sessions, {"console": platform}, clock=clock).drain()
    assert platform.received["ticket:HD-1001:relay:1"] == 1
    assert (await _status(sessions))[0] == "sent"
    await engine.dispose()


class _Recorder(BaseHTTPRequestHandler):
    received: Counter[str] = Counter()
    refs: dict[str, str] = {}

    def _json(self, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received[data["key"]] += 1
        self.refs.setdefault(data["key"], f"ts-{len(self.refs) + 1}")
        self._json({"ref": self.refs[data["key"]]})

    def do_GET(self) -> None:
        key = parse_qs(urlparse(self.path).query)["key"][0]
        self._json({"ref": self.refs.get(key)})

    def log_message(self, *args: Any) -> None:
        pass


async def test_sigkill_after_send_then_restart_delivers_once(tmp_path: Path) -> None:
    engine, _sessions, url = await _db(tmp_path)
    await engine.dispose()
    _Recorder.received.clear()
    _Recorder.refs.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    recorder = f"http://127.0.0.1:{server.server_address[1]}"
    marker = tmp_path / "sent"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}",
           "CRASH_AFTER_SEND": "1", "SENT_MARKER": str(marker)}
    script = str(Path(__file__).parent / "loopback_worker.py")
    try:
        doomed = subprocess.Popen([sys.executable, script, url, recorder, "1"], env=env)
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert marker.exists(), "the worker never sent"
        os.kill(doomed.pid, signal.SIGKILL)  # sent to the platform, not yet marked sent
        doomed.wait(timeout=10)
        engine = create_engine(url)
        assert (await _status(session_factory(engine)))[0] == "sending"
        await asyncio.sleep(1.2)  # the dead worker's lease runs out
        env.update({"CRASH_AFTER_SEND": "0", "EXIT_WHEN_IDLE": "1"})
        subprocess.run([sys.executable, script, url, recorder, "1"], env=env, timeout=60, check=True)
        assert _Recorder.received["ticket:HD-1001:relay:1"] == 1
        assert await _status(session_factory(engine)) == ("sent", "ts-1")
        await engine.dispose()
    finally:
        server.shutdown()


async def test_update_waits_for_the_post_it_edits(tmp_path: Path) -> None:
    """`outbox:<key>` references resolve to the delivered message's id, never before it exists."""
    engine, sessions, _ = await _db(tmp_path)
    async with sessions() as session, session.begin():
        UnitOfWork(session, now=START).enqueue(
            Outbound(Address(Platform.CONSOLE, "alice@example.com"), Reply(text="edited"),
                     update_ref="outbox:ticket:HD-1001:relay:1"),
            idempotency_key="edit-1", kind="update")
        # Make the edit due before the post: the worker must still not send it first.
        row = (await session.execute(select(OutboxRow).where(OutboxRow.idempotency_key == "edit-1"))).scalar_one()
        row.next_attempt_at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    clock = Clock()
    seen: list[tuple[str, Any]] = []

    class Sender(RecordingSender):
        async def send(self, delivery: Delivery) -> str | None:
            seen.append((delivery.idempotency_key, delivery.payload.get("update_ref")))
            return await super().send(delivery)

    worker = OutboxWorker(sessions, {"console": Sender()}, clock=clock)
    await worker.drain()
    clock.now += timedelta(seconds=5)
    await worker.drain()
    assert seen == [("ticket:HD-1001:relay:1", None), ("edit-1", "m-1")]
    await engine.dispose()
