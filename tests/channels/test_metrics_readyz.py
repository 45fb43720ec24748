"""`serve`'s operational routes: /healthz is cheap (no database), /readyz checks the database,
/metrics speaks the Prometheus text format with turns, outbox, Graph and SLA figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from bot.channels.serve import build_asgi
from bot.metrics import observe_graph
from bot.store.db import create_engine, session_factory
from bot.store.tables import InboxRow
from tests.channels import slack_harness
from tests.channels.slack_harness import message_im

harness = slack_harness.harness  # fixtures
standin = slack_harness.standin


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_turns_outbox_and_graph(harness: slack_harness.Harness) -> None:
    before = samples((await harness.client.get("/metrics")).text)
    assert (await harness.event(message_im("vpn won't connect"))).status_code == 200
    await harness.mount.channel.drain()  # the turn ran; the outbox is not drained yet
    observe_graph("reset_password", 429, throttled=True)

    response = await harness.client.get("/metrics")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)
    turns = value(after, "helpdesk_turns_total", platform="slack", outcome="ok")
    assert turns == value(before, "helpdesk_turns_total", platform="slack", outcome="ok") + 1
    assert value(after, "helpdesk_turn_seconds_count", platform="slack") >= 1
    assert value(after, "helpdesk_graph_throttled_total", operation="reset_password", status="429") >= 1
    assert ("helpdesk_outbox_depth", ()) in after
    assert ("helpdesk_outbox_oldest_pending_seconds", ()) in after
    assert value(after, "helpdesk_sla_breaches", target="first_response") == 0
    await harness.settle()
    settled = samples((await harness.client.get("/metrics")).text)
    assert value(settled, "helpdesk_outbox_depth") == 0
    # Labels never name a person or carry message text.
    assert "alice" not in response.text.lower() and "vpn won" not in response.text


async def test_readyz_checks_the_database_and_healthz_does_not() -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    settings = SimpleNamespace(metrics=SimpleNamespace(enabled=True))
    app = SimpleNamespace(db=engine, sessions=session_factory(engine), settings=settings, clock=lambda: None)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_asgi(app, [])), base_url="http://bot.test")
    try:
        assert (await client.get("/healthz")).json()["ok"] is True
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"ok": False, "database": "unreachable",
                                                              "error": ready.json()["error"]}
        # /metrics still answers with this process's counters when the database does not.
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "helpdesk_turns" in metrics.text
        assert "helpdesk_outbox_depth" not in metrics.text
    finally:
        await client.aclose()
        await engine.dispose()


async def test_readyz_answers_when_the_database_does(harness: slack_harness.Harness) -> None:
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"


@pytest.mark.clock
async def test_metrics_show_inbox_rows_by_status_and_the_oldest_pending(tmp_path: Path) -> None:
    from bot.metrics import database_registry
    from bot.store.inbox import Inbox
    from bot.store.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    start = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
    now = start
    inbox = Inbox(sessions, clock=lambda: now, max_attempts=1)
    try:
        await inbox.put("slack:Ev1", "slack", {"text": "hello alice"}, claim=False)
        now = start + timedelta(minutes=1)
        done = await inbox.put("slack:Ev2", "slack", {"n": 2})
        failed = await inbox.put("slack:Ev3", "slack", {"n": 3})
        assert done is not None and failed is not None
        await inbox.done(done)
        item = await inbox.get(failed)
        assert item is not None and await inbox.retry_later(item, "RuntimeError: a bug") is False

        text = generate_latest(await database_registry(sessions, start + timedelta(minutes=10))).decode()
        found = samples(text)
        assert value(found, "helpdesk_inbox_messages", platform="slack", status="pending") == 1
        assert value(found, "helpdesk_inbox_messages", platform="slack", status="done") == 1
        assert value(found, "helpdesk_inbox_messages", platform="slack", status="failed") == 1
        assert value(found, "helpdesk_inbox_oldest_pending_seconds") == 600
        assert "alice" not in text and "a bug" not in text

        async with sessions() as session, session.begin():
            await session.execute(delete(InboxRow))
        empty = samples(generate_latest(await database_registry(sessions, start)).decode())
        assert ("helpdesk_inbox_oldest_pending_seconds", ()) in empty
        assert value(empty, "helpdesk_inbox_oldest_pending_seconds") == 0
    finally:
        await engine.dispose()
