"""Directory wiring. (Foundation version: the demo directory's people and roles; the Graph
backend and self-service actions arrive with the Graph issue.)"""

from __future__ import annotations

from typing import Any

import yaml

from bot.core.models import Person, PlatformUser, Role
from bot.core.ports import ActionRunner, PersonResolver
from bot.settings import Settings


class _DemoPeople:
    def __init__(self, settings: Settings) -> None:
        data = yaml.safe_load(settings.demo_directory_file.read_text(encoding="utf-8")) or {}
        self.users: dict[str, dict[str, Any]] = {u["email"].lower(): u for u in data.get("users", [])}
        self.roles = settings.roles

    async def resolve(self, user: PlatformUser) -> Person | None:
        entry = self.users.get((user.email or "").lower())
        if entry is None:
            return None
        roles = {Role.EMPLOYEE}
        if entry["email"] in self.roles.technicians:
            roles.add(Role.TECHNICIAN)
        if entry["email"] in self.roles.admins:
            roles |= {Role.ADMIN, Role.TECHNICIAN}
        return Person(directory_id=entry["id"], email=entry["email"], display_name=entry["display_name"],
                      roles=frozenset(roles), department=entry.get("department"),
                      enabled=bool(entry.get("enabled", True)))


def build_directory(settings: Settings) -> _DemoPeople:
    return _DemoPeople(settings)


def build_resolver(settings: Settings, directory: _DemoPeople) -> PersonResolver:
    return directory


def build_action_runner(settings: Settings, directory: _DemoPeople) -> ActionRunner | None:
    return None
