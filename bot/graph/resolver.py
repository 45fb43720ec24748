"""`PersonResolver`: the directory person behind a chat account, from what the platform vouches
for (Teams: the Entra object id on the activity; Slack: the profile email from `users.info`;
console: `--as`). Nothing the person typed is ever used.

Lookups are cached for `directory.cache_seconds` (misses for a minute at most). If the directory
is unreachable, a stale cached person is returned; with nothing cached the `DirectoryError`
propagates so the pipeline can say the directory is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.core.models import Person, Platform, PlatformUser, Role
from bot.graph.directory import Directory, DirectoryError, DirectoryUser, Memberships
from bot.settings import RoleSettings

log = logging.getLogger(__name__)

MISS_TTL = 60.0


class DirectoryPersonResolver:
    def __init__(
        self,
        directory: Directory,
        roles: RoleSettings,
        *,
        cache_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.roles = roles
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Person | None]] = {}
        self._technicians = {e.casefold() for e in roles.technicians}
        self._admins = {e.casefold() for e in roles.admins}

    @staticmethod
    def _key(user: PlatformUser) -> tuple[str, str] | None:
        if user.platform == Platform.TEAMS:
            return ("aad", user.aad_object_id.casefold()) if user.aad_object_id else None
        return ("email", user.email.strip().casefold()) if user.email and user.email.strip() else None

    def invalidate(self, user: PlatformUser | None = None) -> None:
        if user is None:
            self._cache.clear()
        elif (key := self._key(user)) is not None:
            self._cache.pop(key, None)

    async def resolve(self, user: PlatformUser) -> Person | None:
        key = self._key(user)
        if key is None:
            return None
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            return cached[1]
        try:
            person = await self._lookup(key)
        except DirectoryError as exc:
            if cached is not None and cached[1] is not None:
                log.warning("directory unavailable (%s); using the cached person for %s", exc.cause, key[0])
                return cached[1]
            raise
        ttl = self.cache_seconds if person is not None else min(self.cache_seconds, MISS_TTL)
        self._cache[key] = (now + ttl, person)
        return person

    async def _lookup(self, key: tuple[str, str]) -> Person | None:
        kind, value = key
        found: DirectoryUser | None
        if kind == "aad":
            found = await self.directory.get_user(value)
        else:
            found = await self.directory.find_user_by_email(value)
        if found is None:
            return None
        return await self.person_for(found)

    async def person_for(self, user: DirectoryUser) -> Person:
        if not user.enabled:
            # A disabled account has no role, even when roles.admins/technicians still list it.
            return Person(directory_id=user.id, email=user.email, display_name=user.display_name,
                          roles=frozenset(), department=user.department, enabled=False)
        roles = {Role.EMPLOYEE}
        emails = {user.email.casefold(), user.user_principal_name.casefold()} - {""}
        if emails & self._technicians:
            roles.add(Role.TECHNICIAN)
        if emails & self._admins:
            roles.add(Role.ADMIN)
        if self.roles.technician_groups or self.roles.admin_groups:
            memberships: Memberships = await self.directory.memberships(user.id)
            if any(memberships.has_group(g) for g in self.roles.technician_groups):
                roles.add(Role.TECHNICIAN)
            if any(memberships.has_group(g) for g in self.roles.admin_groups):
                roles.add(Role.ADMIN)
        return Person(
            directory_id=user.id,
            email=user.email,
            display_name=user.display_name,
            roles=frozenset(roles),
            department=user.department,
            enabled=user.enabled,
        )
