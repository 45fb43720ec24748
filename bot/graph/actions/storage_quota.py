"""storage_quota: how full the person's mailbox and OneDrive are, with advice when nearly full.
Read-only; says only what it can see (a concealed mailbox report leaves the mailbox unknown)."""

from __future__ import annotations

import logging
from typing import Any

from bot.core.ports import ActionOutcome
from bot.graph.actions.base import Action, Run, failure
from bot.graph.directory import DirectoryError, StorageUsage

log = logging.getLogger(__name__)


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


async def run(run: Run) -> ActionOutcome:
    await run.begin()
    errors: list[DirectoryError] = []
    usages: list[StorageUsage] = []
    try:
        mailbox = await run.directory.mailbox_usage(run.user)
        if mailbox:
            usages.append(mailbox)
    except DirectoryError as exc:
        errors.append(exc)
    try:
        drive = await run.directory.onedrive_usage(run.user.id)
        if drive:
            usages.append(drive)
    except DirectoryError as exc:
        errors.append(exc)
    if not usages:
        if errors:
            return failure(errors[0], run.name)
        return ActionOutcome(
            ok=False,
            code="unknown",
            message="I couldn't find storage figures for your account. A technician can check.",
        )
    for error in errors:
        log.warning(
            "storage_quota: partial result, %s failed: %s (%s)", error.operation, error.cause, error.code
        )
    warn = run.settings.storage_warn_percent
    data: dict[str, Any] = {}
    lines: list[str] = []
    full: list[StorageUsage] = []
    for usage in usages:
        label = "Mailbox" if usage.kind == "mailbox" else "OneDrive"
        data[usage.kind] = {
            "used_bytes": usage.used_bytes,
            "total_bytes": usage.total_bytes,
            "percent": round(usage.percent, 1),
            "state": usage.state,
        }
        lines.append(
            f"{label}: {human_bytes(usage.used_bytes)} of {human_bytes(usage.total_bytes)} "
            f"({usage.percent:.0f}%)"
        )
        if usage.percent >= warn or usage.state in ("nearing", "critical", "exceeded"):
            full.append(usage)
    message = ". ".join(lines) + "."
    if "mailbox" not in data:
        # Say only what we know: OneDrive's figure says nothing about the mailbox (reports that
        # conceal user names, or a report we may not read, leave it unseen).
        message += (" I can't see your mailbox size, so I can't tell whether your mailbox is full. "
                    "Outlook shows it under File > Info (Mailbox settings), or a technician can check.")
        data["mailbox_visible"] = False
    if not full:
        if "mailbox" not in data:
            return ActionOutcome(ok=True, code="mailbox_unknown", data=data, message=message)
        return ActionOutcome(ok=True, code="ok", data=data, message=message + " You have plenty of room.")
    advice = []
    for usage in full:
        if usage.kind == "mailbox":
            advice.append(
                "For the mailbox: empty Deleted Items and Junk, delete or archive old mail with "
                "large attachments (search for size:>10MB), and use the Online Archive if you have one."
            )
        else:
            advice.append(
                "For OneDrive: delete or move large files you no longer need and empty the "
                "OneDrive recycle bin."
            )
    return ActionOutcome(
        ok=True,
        code="nearly_full",
        data=data,
        message=message + " That's nearly full. " + " ".join(advice),
    )


ACTION = Action(
    name="storage_quota",
    does="check your mailbox and OneDrive storage",
    does_for="check their mailbox and OneDrive storage",
    run=run,
    changes=False,
    calls=(
        "GET /reports/getMailboxUsageDetail(period='D7')",
        "GET /users/{id}/drive?$select=quota",
    ),
)
