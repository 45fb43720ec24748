"""The "your open tickets" section of the Slack Home tab (`app.services["home_sections"]`,
docs/slack.md): the person's open tickets and, for technicians, the ones they hold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bot.core.models import Person, Platform, Reply
from bot.store.repos import UnitOfWork
from bot.tickets.model import OPEN_STATUSES, TicketView
from bot.tickets.service import TicketService

HomeSection = Callable[[Person, Platform], Awaitable[Sequence[Reply]]]


def home_section(service: TicketService) -> HomeSection:
    async def my_tickets(person: Person, platform: Platform) -> Sequence[Reply]:
        if service.sessions is None:
            return []
        async with service.sessions() as session:
            uow = UnitOfWork(session, now=service.now(), actor=person.email)
            requested = [t for t in await service.list_tickets(uow, person, "requested", limit=20)
                         if t.status in OPEN_STATUSES]
            held = await service.list_tickets(uow, person, "mine", limit=20) if person.is_technician else []
        replies = [await _section(service, platform, requested, "Your open tickets:", "You have no open tickets.",
                                  show_requester=False)]
        if person.is_technician:
            replies.append(await _section(service, platform, held, "Tickets you hold:",
                                          "You don't hold any open tickets.", show_requester=True))
        return replies

    return my_tickets


async def _section(service: TicketService, platform: Platform, tickets: list[TicketView], title: str, empty: str,
                   *, show_requester: bool) -> Reply:
    items = [{"ref": t.ref, "priority": t.priority, "status": t.status, "summary": t.summary[:80],
              "assignee": await service.name_of(t.assignee_email) if t.assignee_email else "",
              "requester": t.requester_name} for t in tickets[:10]]
    text = service.render(platform, "ticket_list", {"tickets": items, "title": title, "empty": empty,
                                                    "show_requester": show_requester})
    return Reply(text=text, template="ticket_list")
