"""Parsing what admins type: `/helpdesk outage post --service Outlook --summary "..." --dm everyone`,
`key=value` works too. Shared by the chat command, the modal and the CLI."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.outages.model import Audience, NoticeDraft, OutageError

VALUE_OPTIONS = {
    "service", "summary", "severity", "aliases", "keywords", "category", "impact", "workaround", "fix",
    "expected-fix", "next-update", "channels", "dm", "groups", "members-of", "starts", "ends", "reminder", "note",
    "platform",
}
FLAGS = {"maintenance", "everyone"}
_RELATIVE = re.compile(r"^\+(\d+)\s*([mhd])$")


def parse_args(text: str) -> tuple[list[str], dict[str, str]]:
    """Positional words and options (`--name value`, `--flag`, `name=value`)."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise OutageError("invalid", f"cannot read that command: {exc}") from None
    positional: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.startswith("--"):
            name = token[2:].lower().replace("_", "-")
            if "=" in name:
                name, _, value = token[2:].partition("=")
                options[name.lower().replace("_", "-")] = value
            elif name in FLAGS:
                options[name] = "true"
            elif name in VALUE_OPTIONS:
                if index >= len(tokens):
                    raise OutageError("invalid", f"--{name} needs a value")
                options[name] = tokens[index]
                index += 1
            else:
                raise OutageError("invalid", f"unknown option --{name}")
        elif "=" in token and token.split("=", 1)[0].lower().replace("_", "-") in VALUE_OPTIONS | FLAGS:
            name, _, value = token.partition("=")
            options[name.lower().replace("_", "-")] = value
        else:
            positional.append(token)
    return positional, options


def split_list(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def parse_when(text: str, now: datetime, tz: str = "UTC") -> datetime:
    """`10:00` (today, or tomorrow when already past), `+30m`/`+2h`/`+1d`, or an ISO date-time."""
    zone = ZoneInfo(tz)
    said = text.strip()
    relative = _RELATIVE.match(said)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now + timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", said)
    if clock:
        local = now.astimezone(zone)
        at = local.replace(hour=int(clock.group(1)), minute=int(clock.group(2)), second=0, microsecond=0)
        if at < local:
            at += timedelta(days=1)
        return at.astimezone(now.tzinfo)
    try:
        value = datetime.fromisoformat(said)
    except ValueError:
        raise OutageError("invalid", f"not a time: {text!r} (use HH:MM, +30m or 2026-11-23T22:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(now.tzinfo)


def audience_from(options: Mapping[str, str], default_platform: str) -> Audience | None:
    """The audience the options name, or None for the configured default."""
    channels: dict[str, list[str]] = {}
    for entry in split_list(options.get("channels")):
        head, sep, tail = entry.partition(":")
        platform, channel = (head, tail) if sep and head in ("slack", "teams", "console") else (default_platform, entry)
        channels.setdefault(platform, []).append(channel)
    raw_dm = (options.get("dm") or "").strip()
    dm = raw_dm.lower()
    everyone = options.get("everyone") == "true" or dm in ("everyone", "all")
    groups = split_list(options.get("groups"))
    members = split_list(options.get("members-of"))
    if dm.startswith("group:") or dm.startswith("groups:"):
        groups += split_list(dm.split(":", 1)[1])
    elif dm.startswith("channel:"):  # channel ids are case-sensitive (Slack: C0123ABC)
        members += split_list(raw_dm.split(":", 1)[1])
    elif dm not in ("", "everyone", "all", "none"):
        raise OutageError("invalid", "--dm is everyone, group:NAME[,NAME] or channel:ID")
    if not (channels or everyone or groups or members):
        return None
    return Audience(channels={k: tuple(v) for k, v in channels.items()}, everyone=everyone, groups=groups,
                    member_channels=members)


def draft_from(options: Mapping[str, str], *, now: datetime, tz: str, default_platform: str,
               defaults: NoticeDraft | None = None) -> NoticeDraft:
    base = defaults or NoticeDraft(service="")
    maintenance = options.get("maintenance") == "true" or bool(options.get("starts"))
    reminder = options.get("reminder")
    if reminder is not None and not reminder.isdigit():
        raise OutageError("invalid", "--reminder is a number of minutes")
    return NoticeDraft(
        service=(options.get("service") or base.service).strip(),
        summary=options.get("summary") or base.summary,
        severity=(options.get("severity") or base.severity).lower(),
        aliases=split_list(options.get("aliases")) or base.aliases,
        keywords=split_list(options.get("keywords")) or base.keywords,
        category=options.get("category") or base.category,
        impact=options.get("impact") or base.impact,
        workaround=options.get("workaround") or base.workaround,
        expected_fix=options.get("fix") or options.get("expected-fix") or base.expected_fix,
        next_update_at=parse_when(options["next-update"], now, tz) if options.get("next-update") else None,
        audience=audience_from(options, default_platform),
        kind="maintenance" if maintenance else "incident",
        starts_at=parse_when(options["starts"], now, tz) if options.get("starts") else None,
        ends_at=parse_when(options["ends"], now, tz) if options.get("ends") else None,
        reminder_minutes=int(reminder) if reminder else None,
    )


def changes_from(options: Mapping[str, str], *, now: datetime, tz: str) -> dict[str, Any]:
    """Fields an `update` changes (only those given)."""
    changes: dict[str, Any] = {}
    for option, name in (("service", "service"), ("summary", "summary"), ("severity", "severity"),
                         ("category", "category"), ("impact", "impact"), ("workaround", "workaround"),
                         ("fix", "expected_fix"), ("expected-fix", "expected_fix")):
        if option in options:
            changes[name] = options[option].lower() if name == "severity" else options[option]
    for option in ("aliases", "keywords"):
        if option in options:
            changes[option] = split_list(options[option])
    for option, name in (("next-update", "next_update_at"), ("starts", "starts_at"), ("ends", "ends_at")):
        if options.get(option):
            changes[name] = parse_when(options[option], now, tz)
    if not changes:
        raise OutageError("invalid", "nothing to change: give --summary, --next-update, --workaround...")
    return changes


def incident_id(positional: Sequence[str]) -> int:
    if not positional:
        raise OutageError("invalid", "which notice? give its number, e.g. 12")
    text = positional[0].lstrip("#").upper().removeprefix("OUT-")
    if not text.isdigit():
        raise OutageError("invalid", f"not a notice number: {positional[0]!r}")
    return int(text)
