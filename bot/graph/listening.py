"""What a message names in the directory, looked up for the pure engine (bot/engine/listen.py):
the person's managed devices, and groups matched fuzzily by display name, mail nickname and
description ("marketing share" -> Marketing shared drive (marketing-share)).
"""

from __future__ import annotations

import logging
import re

from bot.core.models import Person
from bot.engine.listen import STOP_WORDS, DeviceFact, Facts, NameMatch, match_names
from bot.graph.actions.device_actions import os_family
from bot.graph.directory import Directory, DirectoryError

log = logging.getLogger("bot.graph.listening")


def group_label(display_name: str, name: str) -> str:
    return display_name if display_name.casefold() == name.casefold() else f"{display_name} ({name})"


class DirectoryListener:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def facts(self, person: Person, text: str, kinds: frozenset[str]) -> Facts:
        devices: tuple[DeviceFact, ...] = ()
        names: tuple[NameMatch, ...] = ()
        if "device" in kinds or "os" in kinds:
            try:
                found = await self.directory.managed_devices(person.directory_id)
                devices = tuple(DeviceFact(d.name, d.operating_system, os_family(d.operating_system))
                                for d in found)
            except DirectoryError as exc:
                log.warning("devices for listening unavailable: %s", exc.cause)
        if "group" in kinds:
            # Graph's $search matches word prefixes: the first three letters of each distinctive word
            # find the candidates even when the rest is misspelt; rapidfuzz ranks them.
            words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) >= 3 and w not in STOP_WORDS]
            prefixes = list(dict.fromkeys(w[:3] for w in words))[:6]
            if prefixes:
                try:
                    groups = await self.directory.search_groups(prefixes)
                except DirectoryError as exc:
                    log.warning("group search for listening unavailable: %s", exc.cause)
                    groups = []
                names = tuple(match_names("group", text, [
                    (g.name, group_label(g.display_name, g.name), (g.display_name, g.name, g.description))
                    for g in groups]))
        return Facts(devices=devices, names=names)
