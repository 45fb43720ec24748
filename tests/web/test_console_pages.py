"""Web console pages on the real stack: the queue and ticket actions go through the ticket service
(same events and outbox messages as chat), outages through the outage service, and the reports page
shows the figures `helpdesk report` computes."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from bot.store.tables import EventRow, OutboxRow
from bot.tickets.report import build_report, format_report
from tests.web.console_harness import (
    ADMIN,
    TECH,
    TINA,
    ConsoleHarness,
)


async def _events(h: ConsoleHarness, kind: str) -> list[EventRow]:
    async with h.app.sessions() as session:
        return list((await session.execute(select(EventRow).where(EventRow.type == kind))).scalars())


async def test_technician_claims_replies_notes_and_resolves(console: ConsoleHarness) -> None:
    ref = await console.open_ticket("Printer on floor 2 jams")
    await console.sign_in(TECH)
    token = await console.csrf()
    queue = await console.client.get("/console/queue")
    assert ref in queue.text and "Claim" in queue.text
    claimed = await console.client.post(f"/console/tickets/{ref}/claim", data={"csrf": token, "back": "queue"},
                                        headers={"HX-Request": "true"})
    assert claimed.status_code == 200 and f"You claimed {ref}." in claimed.text
    assert TECH in claimed.text
    replied = await console.client.post(f"/console/tickets/{ref}/reply",
                                        data={"csrf": token, "text": "Which tray is it?"})
    assert replied.status_code == 303
    await console.client.post(f"/console/tickets/{ref}/note", data={"csrf": token, "text": "Tray 3 sensor again"})
    page = await console.client.get(f"/console/tickets/{ref}")
    assert "Which tray is it?" in page.text and "Tray 3 sensor again" in page.text and "internal note" in page.text
    assert "ticket_claimed" in page.text and "ticket_relayed" in page.text  # the audit trail
    resolved = await console.client.post(f"/console/tickets/{ref}/resolve", data={"csrf": token, "text": "Cleaned"})
    page = await console.client.get(resolved.headers["location"])
    assert "resolved; the requester was asked to confirm" in page.text and 'id="status">resolved' in page.text
    # The same events and messages as from chat: the requester hears the reply and the resolution.
    assert [e.data["by"] for e in await _events(console, "ticket_claimed")] == [TECH]
    async with console.app.sessions() as session:
        outbox = list((await session.execute(select(OutboxRow))).scalars())
    to_alice = [r for r in outbox if "alice@example.com" in str(r.address.get("conversation_id"))]
    texts = " ".join(str(r.payload["reply"]["text"]) for r in to_alice)
    assert "Which tray is it?" in texts and "Tray 3 sensor again" not in texts


async def test_a_ticket_held_by_someone_else_is_not_taken(console: ConsoleHarness) -> None:
    ref = await console.open_ticket("Monitor flickers", category="hardware")
    await console.sign_in(TINA)
    await console.client.post(f"/console/tickets/{ref}/claim", data={"csrf": await console.csrf()})
    console.client.cookies.clear()
    await console.sign_in(TECH)
    response = await console.client.post(f"/console/tickets/{ref}/claim", data={"csrf": await console.csrf()})
    page = await console.client.get(response.headers["location"])
    assert "is already held by Tina" in page.text
    refused = await _events(console, "ticket_refused")
    assert refused and refused[-1].data["op"] == "console:claim"


async def test_queue_filters(console: ConsoleHarness) -> None:
    printer = await console.open_ticket("Printer jams", category="printer")
    vpn = await console.open_ticket("VPN drops", category="vpn")
    await console.sign_in(TECH)
    page = await console.client.get("/console/queue", params={"category": "vpn"})
    assert vpn in page.text and printer not in page.text
    await console.client.post(f"/console/tickets/{printer}/claim", data={"csrf": await console.csrf()})
    mine = await console.client.get("/console/queue/rows", params={"assignee": "me"})
    assert printer in mine.text and vpn not in mine.text
    nobody = await console.client.get("/console/queue/rows", params={"status": "unclaimed"})
    assert vpn in nobody.text and printer not in nobody.text
    assert (await console.client.get("/console/queue", params={"status": "<bogus>"})).status_code == 200
    # Claiming from a filtered queue (htmx) answers with the same filtered list.
    other_vpn = await console.open_ticket("VPN slow", category="vpn")
    swapped = await console.client.post(f"/console/tickets/{vpn}/claim?category=vpn",
                                        data={"csrf": await console.csrf(), "back": "queue"},
                                        headers={"HX-Request": "true"})
    assert vpn in swapped.text and other_vpn in swapped.text and printer not in swapped.text
    assert "claim?status=open&amp;category=vpn" in swapped.text


async def test_admin_posts_updates_and_resolves_a_notice_with_reach_figures(console: ConsoleHarness) -> None:
    await console.sign_in(ADMIN)
    token = await console.csrf("/console/outages")
    posted = await console.client.post("/console/outages", data={
        "csrf": token, "service": "Outlook", "summary": "Mail is delayed", "groups": "it-support"})
    assert "Notice #1 posted" in (await console.client.get(posted.headers["location"])).text
    progress = await console.client.get("/console/outages/1/progress")
    total = int(re.search(r"Delivered 0 of (\d+)", progress.text).group(1))  # type: ignore[union-attr]
    assert total >= 3 and "<progress" in progress.text
    bad = await console.client.post("/console/outages/1/update", data={"csrf": token})
    assert "Not done: nothing to change" in (await console.client.get(bad.headers["location"])).text
    await console.client.post("/console/outages/1/update", data={"csrf": token, "summary": "Mail delayed 2h"})
    await console.client.post("/console/outages/1/resolve", data={"csrf": token, "note": "relay fixed"})
    page = await console.client.get("/console/outages")
    assert "No active outage" in page.text
    kinds = [e.type for e in await _events(console, "outage_updated")] + [
        e.type for e in await _events(console, "outage_resolved")]
    assert kinds == ["outage_updated", "outage_resolved"]


async def test_reports_show_the_same_figures_as_helpdesk_report_and_export_csv(console: ConsoleHarness) -> None:
    for n in range(3):
        await console.open_ticket(f"Printer {n} jams", category="printer")
    await console.sign_in(ADMIN)
    page = await console.client.get("/console/reports", params={"since": "7d"})
    assert page.status_code == 200 and 'id="fig-tickets">3<' in page.text
    for chart in ("volume", "deflection", "times", "sla", "satisfaction", "backlog"):
        assert f'id="chart-{chart}"' in page.text
    exported = await console.client.get("/console/reports.csv", params={"since": "7d"})
    assert exported.headers["content-type"].startswith("text/csv")
    expected = format_report(await build_report(console.app.sessions, console.app.settings,
                                                since=__import__("datetime").timedelta(days=7),
                                                now=console.clock()), "csv")
    assert exported.text == expected
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert ["volume", "tickets", "3"] in rows
    wrong = await console.client.get("/console/reports", params={"since": "lots"})
    assert wrong.status_code == 400 and "The period is a window like 30d" in wrong.text


async def test_overview_knowledge_and_flows_pages(console: ConsoleHarness) -> None:
    await console.open_ticket("Laptop will not boot", category="hardware")
    await console.sign_in(TECH)
    overview = await console.client.get("/console/")
    assert overview.status_code == 200 and 'id="fig-tickets-today">1<' in overview.text
    assert 'id="fig-outages">0<' in overview.text
    knowledge = await console.client.get("/console/knowledge")
    assert knowledge.status_code == 200 and "Lint (" in knowledge.text
    flows = await console.client.get("/console/flows")
    assert flows.status_code == 200 and "password_reset" in flows.text and "flows are valid" in flows.text


async def test_admin_tries_a_transcript_in_the_browser_sandboxed(console: ConsoleHarness) -> None:
    await console.sign_in(ADMIN)
    token = await console.csrf("/console/flows")
    transcript = 'as: alice@example.com\nturns:\n  - say: "<b>vpn</b> won\'t connect"\n'
    page = await console.client.post("/console/flows/try", data={"csrf": token, "transcript": transcript})
    assert page.status_code == 200 and "flow_started" in page.text and "vpn" in page.text
    assert "<b>vpn</b>" not in page.text
    bad = await console.client.post("/console/flows/try", data={"csrf": token, "transcript": "turns: [say: x"})
    assert bad.status_code == 400 and "Not valid YAML" in bad.text
    empty = await console.client.post("/console/flows/try", data={"csrf": token, "transcript": "name: x"})
    assert empty.status_code == 400 and "turns:" in empty.text
    console.client.cookies.clear()
    await console.sign_in(TECH)
    refused = await console.client.post("/console/flows/try", data={"csrf": await console.csrf(),
                                                                     "transcript": transcript})
    assert refused.status_code == 403


async def test_a_transcript_the_runner_refuses_or_a_console_without_one_says_why(console: ConsoleHarness) -> None:
    """The runner is handed in by serve (bot/channels/serve.py); its refusal is shown, and a console
    built without one says transcripts cannot be tried there."""
    await console.sign_in(ADMIN)
    token = await console.csrf("/console/flows")
    unknown = "as: alice@example.com\nturns:\n  - wait: soon\n"
    page = await console.client.post("/console/flows/try", data={"csrf": token, "transcript": unknown})
    assert page.status_code == 400 and "expected a duration like 90s" in page.text
    console.console.transcripts = None
    page = await console.client.post("/console/flows/try", data={"csrf": token, "transcript": unknown})
    assert page.status_code == 400 and "cannot be tried in this console" in page.text
