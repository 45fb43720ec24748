"""`serve`'s operational routes: /healthz is cheap (no database), /readyz checks the database,
/metrics speaks the Prometheus text format with turns, outbox, Graph and SLA figures."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot.channels.serve import build_asgi
from bot.metrics import observe_graph
from bot.store.db import create_engine, session_factory
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
