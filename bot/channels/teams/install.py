"""Installing the Teams app for a person who never wrote to the bot, through Microsoft Graph.

The Bot Connector opens a personal chat only with people who have the app installed; for anyone
else it answers 403 and a proactive message (an outage notice, a relay, an approval request) would
be lost. With `teams.proactive_install` and `teams.catalog_app_id` (the app's id in the
organization's Teams app catalog), the bot first installs the app in the person's personal scope:

    POST /users/{id}/teamwork/installedApps
    {"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog id}"}

201 = installed, 409 Conflict = it already was; both mean "open the chat again". The Graph app
needs the application permission `TeamsAppInstallation.ReadWriteSelfForUser.All` (admin consent).
A refusal (403: permission missing or blocked by the Teams app policy; 404: person or app not
found) is reported with its reason and the person counted as not reachable; 429/503 are retried
by the Graph client (Retry-After) and then left to the outbox to try again later.
"""

from __future__ import annotations

import logging
from typing import Literal
from urllib.parse import quote

from bot.graph.directory import DirectoryError, NotFound, PermissionMissing, Throttled, Unavailable
from bot.graph.graph_client import GraphClient

log = logging.getLogger("bot.teams.install")

PERMISSION = "TeamsAppInstallation.ReadWriteSelfForUser.All"


class InstallRefused(Exception):
    """Graph refused to install the app for this person (the message says why)."""


class InstallUnavailable(Exception):
    """Graph could not be asked now (throttled, unavailable): try again later."""


class AppInstaller:
    def __init__(self, client: GraphClient, catalog_app_id: str) -> None:
        self.client = client
        self.catalog_app_id = catalog_app_id

    async def install(self, user_id: str) -> Literal["installed", "already"]:
        """Install the app in `user_id`'s personal scope (their Entra object id)."""
        bind = f"{self.client.base_url}/appCatalogs/teamsApps/{quote(self.catalog_app_id, safe='')}"
        try:
            await self.client.request("POST", f"/users/{quote(user_id, safe='')}/teamwork/installedApps",
                                      operation="install_teams_app", json={"teamsApp@odata.bind": bind})
        except PermissionMissing as exc:
            raise InstallRefused(f"Graph refused to install the app (HTTP {exc.status} {exc.code or ''}; "
                                 f"needs {PERMISSION}, and the Teams app policy must allow the app)") from None
        except NotFound as exc:
            raise InstallRefused(f"Graph found no such person or app to install (HTTP {exc.status} "
                                 f"{exc.code or ''})") from None
        except (Throttled, Unavailable) as exc:
            raise InstallUnavailable(f"Graph could not install the app now: {exc.detail}") from None
        except DirectoryError as exc:
            if exc.status == 409:
                return "already"
            raise InstallRefused(f"Graph did not install the app (HTTP {exc.status} {exc.code or ''})") from None
        log.info("Teams app installed for a person who had not installed it")
        return "installed"
