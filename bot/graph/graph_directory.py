"""`Directory` over Microsoft Graph v1.0 (app-only). Requests follow Microsoft's documentation;
docs/graph.md lists the permission and Entra role each one needs (also in `REQUIRED` below, which
names the missing permission in the log when Graph answers 403)."""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bot.graph.directory import (
    AccountDetails,
    AuthMethod,
    AutoReplies,
    BadRequest,
    DeviceCommand,
    DirectoryUser,
    Group,
    ManagedDevice,
    Memberships,
    NotFound,
    Receipt,
    StorageState,
    StorageUsage,
    TemporaryAccessPass,
    Unavailable,
)
from bot.graph.graph_client import BatchItem, GraphClient, GraphResponse

log = logging.getLogger(__name__)

# What the app registration needs per operation, least privilege first (see docs/graph.md).
REQUIRED: dict[str, str] = {
    "get_user": "User.Read.All",
    # bot/channels/teams/install.py (teams.proactive_install)
    "install_teams_app": "TeamsAppInstallation.ReadWriteSelfForUser.All",
    "find_user": "User.Read.All",
    "account_details": "User.Read.All",
    "memberships": "GroupMember.Read.All + RoleManagement.Read.Directory (or Directory.Read.All)",
    "alternate_email": "UserAuthenticationMethod.Read.All",
    "find_group": "GroupMember.Read.All",
    "group_owners": "GroupMember.Read.All",
    "add_group_member": "GroupMember.ReadWrite.All (role-assignable groups: "
    "RoleManagement.ReadWrite.Directory)",
    "reset_password": (
        "User-PasswordProfile.ReadWrite.All plus the Helpdesk Administrator Entra role on the app "
        "(Password/User Administrator for wider scope)"
    ),
    "revoke_sessions": "User.RevokeSessions.All",
    "create_tap": "UserAuthMethod-TAP.ReadWrite.All (or UserAuthenticationMethod.ReadWrite.All)",
    "auth_methods": "UserAuthenticationMethod.Read.All",
    "remove_auth_method": "UserAuthenticationMethod.ReadWrite.All",
    "managed_devices": "DeviceManagementManagedDevices.Read.All",
    "device_command": "DeviceManagementManagedDevices.PrivilegedOperations.All",
    "automatic_replies": "MailboxSettings.Read",
    "set_automatic_replies": "MailboxSettings.ReadWrite",
    "mailbox_usage": "Reports.Read.All",
    "onedrive_usage": "Files.Read.All",
    "send_mail": "Mail.Send (limit it to the sender mailbox with an application access policy)",
}

USER_FIELDS = (
    "id,displayName,mail,userPrincipalName,accountEnabled,department,jobTitle,"
    "lastPasswordChangeDateTime,onPremisesSyncEnabled"
)
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEVICE_ACTIONS: dict[str, str] = {"sync": "syncDevice", "restart": "rebootNow"}
METHOD_PATHS: dict[str, str] = {"phone": "phoneMethods", "authenticator": "microsoftAuthenticatorMethods"}


def seg(value: str) -> str:
    """One URL path segment (an object id or a UPN)."""
    return quote(value, safe="@.-_")


def odata_string(value: str) -> str:
    """A string literal for `$filter`: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    # Graph sends 7 fractional digits; Python takes 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def user_from(data: dict[str, Any]) -> DirectoryUser:
    upn = str(data.get("userPrincipalName") or "")
    return DirectoryUser(
        id=str(data["id"]),
        email=str(data.get("mail") or upn),
        display_name=str(data.get("displayName") or upn),
        user_principal_name=upn,
        enabled=bool(data.get("accountEnabled", True)),
        department=data.get("department"),
        job_title=data.get("jobTitle"),
        last_password_change=parse_time(data.get("lastPasswordChangeDateTime")),
        on_premises_sync=bool(data.get("onPremisesSyncEnabled")),
    )


def group_from(data: dict[str, Any]) -> Group:
    return Group(
        id=str(data["id"]),
        name=str(data.get("mailNickname") or data.get("displayName") or data["id"]),
        display_name=str(data.get("displayName") or data.get("mailNickname") or data["id"]),
        description=str(data.get("description") or ""),
    )


def graph_datetime(value: datetime) -> dict[str, str]:
    return {"dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class GraphDirectory:
    backend = "graph"

    def __init__(self, client: GraphClient, *, report_cache_seconds: float = 3600.0) -> None:
        self.client = client
        self._report_cache_seconds = report_cache_seconds
        self._report: tuple[float, dict[str, StorageUsage]] | None = None

    async def aclose(self) -> None:
        await self.client.aclose()

    # ----- people -----

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        try:
            response = await self.client.request(
                "GET", f"/users/{seg(user_id)}", operation="get_user", params={"$select": USER_FIELDS}
            )
        except NotFound:
            return None
        return user_from(response.body)

    async def find_user_by_email(self, email: str) -> DirectoryUser | None:
        literal = odata_string(email.strip())
        items = await self.client.get_all(
            "/users",
            operation="find_user",
            params={
                "$filter": f"mail eq {literal} or userPrincipalName eq {literal}",
                "$select": USER_FIELDS,
            },
        )
        wanted = email.strip().casefold()
        users = [user_from(item) for item in items]
        for user in users:
            if wanted in (user.email.casefold(), user.user_principal_name.casefold()):
                return user
        return users[0] if users else None

    async def account_details(self, user_id: str) -> AccountDetails:
        # One round trip instead of two.
        answers = await self.client.batch(
            [
                BatchItem("user", "GET", f"/users/{seg(user_id)}?$select={USER_FIELDS}"),
                BatchItem("licenses", "GET", f"/users/{seg(user_id)}/licenseDetails?$select=skuPartNumber"),
            ],
            operation="account_details",
        )
        user = self.client.raise_for(_answer(answers, "user"), "account_details")
        licenses = self.client.raise_for(_answer(answers, "licenses"), "account_details")
        names = tuple(
            str(item.get("skuPartNumber"))
            for item in (licenses.body or {}).get("value", [])
            if item.get("skuPartNumber")
        )
        return AccountDetails(user=user_from(user.body), licenses=names)

    async def memberships(self, user_id: str) -> Memberships:
        items = await self.client.get_all(
            f"/users/{seg(user_id)}/transitiveMemberOf",
            operation="memberships",
            params={"$select": "id,displayName,mailNickname,roleTemplateId"},
        )
        groups: list[Group] = []
        roles: list[str] = []
        for item in items:
            kind = str(item.get("@odata.type", ""))
            if kind == "#microsoft.graph.group":
                groups.append(group_from(item))
            elif kind == "#microsoft.graph.directoryRole":
                roles.append(str(item.get("displayName") or item.get("roleTemplateId") or item.get("id")))
        return Memberships(groups=tuple(groups), directory_roles=tuple(roles))

    async def alternate_email(self, user_id: str) -> str | None:
        methods = await self.client.get_all(
            f"/users/{seg(user_id)}/authentication/emailMethods", operation="alternate_email"
        )
        for method in methods:
            if method.get("emailAddress"):
                return str(method["emailAddress"])
        response = await self.client.request(
            "GET", f"/users/{seg(user_id)}", operation="get_user", params={"$select": "id,otherMails"}
        )
        other = (response.body or {}).get("otherMails") or []
        return str(other[0]) if other else None

    # ----- groups -----

    async def find_group(self, name_or_id: str) -> Group | None:
        select = "id,displayName,mailNickname"
        if GUID.match(name_or_id):
            try:
                response = await self.client.request(
                    "GET", f"/groups/{seg(name_or_id)}", operation="find_group", params={"$select": select}
                )
            except NotFound:
                return None
            return group_from(response.body)
        literal = odata_string(name_or_id)
        items = await self.client.get_all(
            "/groups",
            operation="find_group",
            params={"$filter": f"mailNickname eq {literal} or displayName eq {literal}", "$select": select},
        )
        return group_from(items[0]) if items else None

    async def search_groups(self, words: Sequence[str], *, limit: int = 25) -> Sequence[Group]:
        # $search is tokenised prefix matching and needs ConsistencyLevel: eventual (advanced query).
        terms = [re.sub(r'["\\]', "", w) for w in words if w][:6]
        if not terms:
            return []
        clauses = " OR ".join(f'"{field}:{term}"' for term in terms
                              for field in ("displayName", "mailNickname", "description"))
        items = await self.client.get_all(
            "/groups",
            operation="search_groups",
            params={"$search": clauses, "$select": "id,displayName,mailNickname,description", "$top": str(limit)},
            headers={"ConsistencyLevel": "eventual"},
            limit=limit,
        )
        return [group_from(item) for item in items[:limit]]

    async def group_owners(self, group_id: str) -> Sequence[DirectoryUser]:
        items = await self.client.get_all(
            f"/groups/{seg(group_id)}/owners",
            operation="group_owners",
            params={"$select": "id,displayName,mail,userPrincipalName,accountEnabled"},
        )
        return [
            user_from(i)
            for i in items
            if i.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user"
        ]

    async def add_group_member(self, group_id: str, user_id: str) -> tuple[bool, Receipt]:
        try:
            response = await self.client.request(
                "POST",
                f"/groups/{seg(group_id)}/members/$ref",
                operation="add_group_member",
                json={"@odata.id": f"{self.client.base_url}/directoryObjects/{user_id}"},
            )
        except BadRequest as exc:
            # Graph answers 400 when the member already exists; its error code is the generic
            # Request_BadRequest, so confirm by membership instead of reading the message.
            current = await self.memberships(user_id)
            if any(g.id == group_id for g in current.groups):
                return False, Receipt(exc.request_id)
            raise
        return True, Receipt(response.request_id)

    # ----- credentials and sessions -----

    async def reset_password(self, user_id: str, password: str, *, force_change: bool = True) -> Receipt:
        response = await self.client.request(
            "PATCH",
            f"/users/{seg(user_id)}",
            operation="reset_password",
            json={"passwordProfile": {"password": password, "forceChangePasswordNextSignIn": force_change}},
        )
        return Receipt(response.request_id)

    async def revoke_sessions(self, user_id: str) -> Receipt:
        response = await self.client.request(
            "POST", f"/users/{seg(user_id)}/revokeSignInSessions", operation="revoke_sessions"
        )
        return Receipt(response.request_id)

    async def create_temporary_access_pass(
        self, user_id: str, *, lifetime_minutes: int, usable_once: bool
    ) -> TemporaryAccessPass:
        response = await self.client.request(
            "POST",
            f"/users/{seg(user_id)}/authentication/temporaryAccessPassMethods",
            operation="create_tap",
            json={"lifetimeInMinutes": lifetime_minutes, "isUsableOnce": usable_once},
        )
        body = response.body or {}
        value = body.get("temporaryAccessPass")
        if not value:
            raise Unavailable(
                "create_tap: Graph returned no pass", operation="create_tap", request_id=response.request_id
            )
        return TemporaryAccessPass(
            value=str(value),
            lifetime_minutes=_int(body.get("lifetimeInMinutes")) or lifetime_minutes,
            usable_once=bool(body.get("isUsableOnce", usable_once)),
            starts=parse_time(body.get("startDateTime")),
            request_id=response.request_id,
        )

    async def auth_methods(self, user_id: str) -> Sequence[AuthMethod]:
        base = f"/users/{seg(user_id)}/authentication"
        answers = await self.client.batch(
            [
                BatchItem("phone", "GET", f"{base}/phoneMethods"),
                BatchItem("authenticator", "GET", f"{base}/microsoftAuthenticatorMethods"),
            ],
            operation="auth_methods",
        )
        methods: list[AuthMethod] = []
        phones = self.client.raise_for(_answer(answers, "phone"), "auth_methods")
        for item in (phones.body or {}).get("value", []):
            label = f"{item.get('phoneType', 'phone')} {item.get('phoneNumber', '')}".strip()
            methods.append(AuthMethod(id=str(item["id"]), kind="phone", label=label))
        apps = self.client.raise_for(_answer(answers, "authenticator"), "auth_methods")
        for item in (apps.body or {}).get("value", []):
            name = item.get("displayName") or item.get("deviceTag") or "a phone"
            methods.append(
                AuthMethod(id=str(item["id"]), kind="authenticator", label=f"Authenticator on {name}")
            )
        return methods

    async def remove_auth_method(self, user_id: str, method: AuthMethod) -> Receipt:
        response = await self.client.request(
            "DELETE",
            f"/users/{seg(user_id)}/authentication/{METHOD_PATHS[method.kind]}/{seg(method.id)}",
            operation="remove_auth_method",
        )
        return Receipt(response.request_id)

    # ----- devices -----

    async def managed_devices(self, user_id: str) -> Sequence[ManagedDevice]:
        items = await self.client.get_all(
            f"/users/{seg(user_id)}/managedDevices",
            operation="managed_devices",
            params={"$select": "id,deviceName,operatingSystem,osVersion,complianceState,lastSyncDateTime"},
        )
        return [
            ManagedDevice(
                id=str(i["id"]),
                name=str(i.get("deviceName") or i["id"]),
                operating_system=str(i.get("operatingSystem") or ""),
                os_version=str(i.get("osVersion") or ""),
                compliance=str(i.get("complianceState") or "unknown"),
                last_sync=parse_time(i.get("lastSyncDateTime")),
            )
            for i in items
        ]

    async def device_command(self, device_id: str, command: DeviceCommand) -> Receipt:
        response = await self.client.request(
            "POST",
            f"/deviceManagement/managedDevices/{seg(device_id)}/{DEVICE_ACTIONS[command]}",
            operation="device_command",
        )
        return Receipt(response.request_id)

    # ----- mailbox -----

    async def automatic_replies(self, user_id: str) -> AutoReplies:
        response = await self.client.request(
            "GET", f"/users/{seg(user_id)}/mailboxSettings", operation="automatic_replies"
        )
        setting = (response.body or {}).get("automaticRepliesSetting") or {}
        return AutoReplies(
            status=setting.get("status", "disabled"),
            internal_html=str(setting.get("internalReplyMessage") or ""),
            external_html=str(setting.get("externalReplyMessage") or ""),
            external_audience=setting.get("externalAudience", "none"),
            start=parse_time((setting.get("scheduledStartDateTime") or {}).get("dateTime")),
            end=parse_time((setting.get("scheduledEndDateTime") or {}).get("dateTime")),
        )

    async def set_automatic_replies(self, user_id: str, replies: AutoReplies) -> Receipt:
        setting: dict[str, Any] = {
            "status": replies.status,
            "externalAudience": replies.external_audience,
            "internalReplyMessage": replies.internal_html,
            "externalReplyMessage": replies.external_html,
        }
        if replies.status == "scheduled" and replies.start and replies.end:
            setting["scheduledStartDateTime"] = graph_datetime(replies.start)
            setting["scheduledEndDateTime"] = graph_datetime(replies.end)
        response = await self.client.request(
            "PATCH",
            f"/users/{seg(user_id)}/mailboxSettings",
            operation="set_automatic_replies",
            json={"automaticRepliesSetting": setting},
        )
        return Receipt(response.request_id)

    async def mailbox_usage(self, user: DirectoryUser) -> StorageUsage | None:
        report = await self._mailbox_report()
        for key in (user.user_principal_name, user.email):
            if key and key.casefold() in report:
                return report[key.casefold()]
        # Tenants that conceal user names in reports show hashes instead: nothing to match.
        return None

    async def _mailbox_report(self) -> dict[str, StorageUsage]:
        now = time.monotonic()
        if self._report and now - self._report[0] < self._report_cache_seconds:
            return self._report[1]
        response: GraphResponse = await self.client.request(
            "GET", "/reports/getMailboxUsageDetail(period='D7')", operation="mailbox_usage"
        )
        location = {k.lower(): v for k, v in response.headers.items()}.get("location")
        if response.status == 302 and location:
            text = await self.client.fetch_unauthenticated(location, operation="mailbox_usage")
        elif isinstance(response.body, str):
            text = response.body
        else:
            raise Unavailable(
                "mailbox_usage: report did not redirect to a download", operation="mailbox_usage"
            )
        report: dict[str, StorageUsage] = {}
        for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff"))):
            upn = (row.get("User Principal Name") or "").casefold()
            if not upn:
                continue
            used = _int(row.get("Storage Used (Byte)"))
            warn = _int(row.get("Issue Warning Quota (Byte)"))
            send = _int(row.get("Prohibit Send Quota (Byte)"))
            total = _int(row.get("Prohibit Send/Receive Quota (Byte)")) or send
            state: StorageState = "normal"
            if total and used >= total:
                state = "exceeded"
            elif send and used >= send:
                state = "critical"
            elif warn and used >= warn:
                state = "nearing"
            report[upn] = StorageUsage("mailbox", used, total, state)
        self._report = (now, report)
        return report

    async def onedrive_usage(self, user_id: str) -> StorageUsage | None:
        try:
            response = await self.client.request(
                "GET", f"/users/{seg(user_id)}/drive", operation="onedrive_usage", params={"$select": "quota"}
            )
        except NotFound:
            return None  # OneDrive not provisioned
        quota = (response.body or {}).get("quota") or {}
        state = str(quota.get("state") or "unknown")
        return StorageUsage(
            "onedrive",
            _int(quota.get("used")),
            _int(quota.get("total")),
            state if state in ("normal", "nearing", "critical", "exceeded") else "unknown",  # type: ignore[arg-type]
        )

    async def send_mail(self, sender: str, to: str, subject: str, text: str) -> Receipt:
        response = await self.client.request(
            "POST",
            f"/users/{seg(sender)}/sendMail",
            operation="send_mail",
            json={
                "message": {
                    "subject": subject,
                    "body": {"contentType": "Text", "content": text},
                    "toRecipients": [{"emailAddress": {"address": to}}],
                },
                "saveToSentItems": False,
            },
        )
        return Receipt(response.request_id)


def _answer(answers: dict[str, GraphResponse], item_id: str) -> GraphResponse:
    answer = answers.get(item_id)
    if answer is None:
        raise Unavailable(f"$batch response lacks item {item_id}", operation="batch")
    return answer
