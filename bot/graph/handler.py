"""Approve / Deny buttons (group access, technician-approved verification) inside the pipeline,
and the periodic expiry of undecided requests."""

from __future__ import annotations

from typing import Any

from bot.core.pipeline import Turn, UowActionContext, turn_action_context
from bot.graph.approvals import ApprovalDesk
from bot.store.repos import SqlSharedState, UnitOfWork

PREFIX = "approval:"


class ApprovalHandler:
    """Routes `approval:approve|deny:<id>` clicks to the approval desk. Who may decide is checked
    there, server-side, against the request (owners / configured approvers / technicians)."""

    def __init__(self, desk: ApprovalDesk) -> None:
        self.desk = desk

    async def handle(self, turn: Turn) -> bool:
        action = turn.incoming.action
        if action is None or not action.value.startswith(PREFIX):
            return False
        outcome = await self.desk.handle_approval(action.value, turn.person, turn_action_context(turn),
                                                  turn.uow.session)
        turn.say("action_message", {"message": outcome.message or outcome.code, "ok": outcome.ok})
        return True


async def expire_access_requests(app: Any, desk: ApprovalDesk) -> None:
    now = app.clock()
    async with app.sessions() as session, session.begin():
        uow = UnitOfWork(session, now=now, actor="system")
        ctx = UowActionContext(uow, app.default_platform, f"expiry:{now.isoformat()}")
        await desk.expire_pending(ctx, session, now=now)
        # Expired codes, grants and identity checks nobody asked about again.
        await SqlSharedState(session, clock=now.timestamp).purge_expired()
