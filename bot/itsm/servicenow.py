"""ServiceNow (Table API on `incident`).

- create: `POST /api/now/table/incident` with `correlation_id` = the bot's ticket id (ServiceNow's
  field for an external system's id), so an interrupted create is found again by a query on it;
  caller by email from `sys_user` (created only when `itsm.create_people`), category, urgency and
  impact from `itsm.priority_map`, assignment group from `itsm.assignment_groups`;
- comments: PATCH `comments` (additional comments: the caller sees them) or `work_notes`
  (internal); read back from `sys_journal_field` (`element_id` = the incident);
- status: `state` 6 (Resolved, with `close_code` and `close_notes`) or 2 (In Progress) to reopen;
  6, 7 (Closed) and 8 (Canceled) count as resolved;
- webhooks: a business rule posts JSON signed with HMAC-SHA256 of the raw body (`X-Helpdesk-Signature`,
  hex with `sha256=` or base64 as GlideCertificateEncryption.generateMac gives it); docs/itsm.md;
- poll: `sys_updated_on>=javascript:gs.minutesAgoStart(N)` (relative: no time-zone guessing),
  `sysparm_offset` pages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from bot.itsm.http import authenticated_json, basic_auth_client, call
from bot.itsm.port import (
    MARKER,
    OPEN,
    RESOLVED,
    CheckLine,
    NewRecord,
    RemoteChange,
    RemoteComment,
    RemoteRecord,
    Webhook,
    WebhookRefused,
)
from bot.settings import ItsmSettings

RESOLVED_STATES = {"6", "7", "8"}
PAGE = 100


def _status_of(state: Any) -> str:
    return RESOLVED if str(state) in RESOLVED_STATES else OPEN


class ServiceNow:
    name = "servicenow"

    def __init__(self, cfg: ItsmSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        self.client = basic_auth_client(cfg, transport)
        self._names: dict[str, str] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _result(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await call(self.client, "ServiceNow", method, url, **kwargs)
        return response.json().get("result") if response.content else None

    async def _query(self, table: str, query: str, fields: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            batch = await self._result("GET", f"/api/now/table/{table}",
                                       params={"sysparm_query": query, "sysparm_fields": fields,
                                               "sysparm_limit": PAGE, "sysparm_offset": offset,
                                               "sysparm_exclude_reference_link": "true"})
            rows.extend(batch or [])
            if not batch or len(batch) < PAGE:
                return rows
            offset += len(batch)

    def url_of(self, sys_id: str) -> str:
        return f"{self.base}/nav_to.do?uri=incident.do?sys_id={sys_id}"

    # -- people --

    async def caller_for(self, email: str, name: str) -> str | None:
        found = await self._query("sys_user", f"email={email}^active=true", "sys_id,name,email")
        if found:
            return str(found[0]["sys_id"])
        if not self.cfg.create_people:
            return None
        created = await self._result("POST", "/api/now/table/sys_user",
                                     json={"user_name": email, "email": email, "name": name})
        return str(created["sys_id"])

    async def name_of(self, user_name: str) -> str:
        if user_name not in self._names:
            found = await self._query("sys_user", f"user_name={user_name}", "name")
            self._names[user_name] = str(found[0].get("name") or user_name) if found else user_name
        return self._names[user_name]

    # -- records --

    async def create(self, record: NewRecord) -> RemoteRecord:
        caller = await self.caller_for(record.requester_email, record.requester_name)
        description = record.description
        if caller is None:
            description = f"Requested by {record.requester_name} <{record.requester_email}>\n\n{description}"
        body: dict[str, Any] = {
            "short_description": f"[{record.ref}] {record.summary}"[:160],
            "description": description,
            "category": self.cfg.categories.get(record.category, record.category),
            "correlation_id": record.ref,
            "correlation_display": "Help desk bot",
            **self.cfg.priority_map.get(record.priority, {}),
            **self.cfg.custom_fields,
        }
        group = self.cfg.assignment_groups.get(record.category) or self.cfg.assignment_groups.get("default")
        if group:
            body["assignment_group"] = group
        if caller is not None:
            body["caller_id"] = caller
        created = await self._result("POST", "/api/now/table/incident", json=body,
                                     params={"sysparm_exclude_reference_link": "true"})
        return RemoteRecord(str(created["sys_id"]), str(created.get("number", "")), self.url_of(created["sys_id"]),
                            _status_of(created.get("state")))

    async def find(self, ref: str) -> RemoteRecord | None:
        found = await self._query("incident", f"correlation_id={ref}", "sys_id,number,state")
        if not found:
            return None
        row = found[0]
        return RemoteRecord(str(row["sys_id"]), str(row.get("number", "")), self.url_of(row["sys_id"]),
                            _status_of(row.get("state")))

    # -- comments --

    async def comment(self, remote_id: str, text: str, *, public: bool) -> str:
        field = "comments" if public else "work_notes"
        await self._result("PATCH", f"/api/now/table/incident/{remote_id}", json={field: text})
        # The Table API does not return the journal entry: the bot's marker in the text finds it.
        found = MARKER.search(text)
        return (await self.find_comment(remote_id, found.group(0)) if found else None) or ""

    async def find_comment(self, remote_id: str, marker: str) -> str | None:
        for entry in await self._journal(remote_id):
            if marker in str(entry.get("value", "")):
                return str(entry["sys_id"])
        return None

    async def _journal(self, remote_id: str) -> list[dict[str, Any]]:
        return await self._query("sys_journal_field",
                                 f"element_id={remote_id}^elementINcomments,work_notes^ORDERBYsys_created_on",
                                 "sys_id,element,value,sys_created_by,sys_created_on")

    # -- status --

    async def get_status(self, remote_id: str) -> str:
        row = await self._result("GET", f"/api/now/table/incident/{remote_id}", params={"sysparm_fields": "state"})
        return _status_of((row or {}).get("state"))

    async def set_status(self, remote_id: str, status: str, note: str) -> None:
        if status == RESOLVED:
            body = {"state": "6", "close_code": self.cfg.close_code, "close_notes": note.strip() or "Resolved in chat."}
        else:
            body = {"state": "2"}
            if note.strip():
                body["comments"] = note.strip()
        await self._result("PATCH", f"/api/now/table/incident/{remote_id}", json=body)

    # -- inbound --

    async def _comment_change(self, remote_id: str, entry: Mapping[str, Any]) -> RemoteChange:
        author = str(entry.get("sys_created_by", ""))
        ours = author.lower() == self.cfg.user.lower()
        return RemoteChange(remote_id, "comment", RemoteComment(
            str(entry["sys_id"]), str(entry.get("value", "")), str(entry.get("element")) == "comments",
            author if ours else await self.name_of(author), ours=ours))

    async def changed_since(self, since: datetime, now: datetime) -> list[RemoteChange]:
        minutes = max(1, math.ceil((now - since).total_seconds() / 60) + 1)
        rows = await self._query("incident", f"correlation_display=Help desk bot^correlation_idISNOTEMPTY"
                                             f"^sys_updated_on>=javascript:gs.minutesAgoStart({minutes})",
                                 "sys_id,number,state,correlation_id,close_notes")
        changes: list[RemoteChange] = []
        for row in rows:
            remote_id = str(row["sys_id"])
            for entry in await self._journal(remote_id):
                changes.append(await self._comment_change(remote_id, entry))
            changes.append(RemoteChange(remote_id, "status", status=_status_of(row.get("state")),
                                        note=str(row.get("close_notes") or "")))
        return changes

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> Webhook:
        data, _ = authenticated_json(self.cfg, headers, body, "X-Helpdesk-Signature", now.timestamp())
        if not isinstance(data.get("incident"), dict):
            raise WebhookRefused(400, "expected an object with an incident")
        delivery = str(data.get("event_id") or "")
        if not delivery:
            raise WebhookRefused(400, "no event_id")
        incident = data["incident"]
        remote_id = str(incident.get("sys_id", ""))
        if data.get("type") == "comment" and isinstance(data.get("comment"), dict):
            c = data["comment"]
            author = str(c.get("sys_created_by", ""))
            ours = author.lower() == self.cfg.user.lower()
            comment = RemoteComment(str(c.get("sys_id", "")), str(c.get("value", "")),
                                    str(c.get("element")) == "comments", str(c.get("author_name") or author), ours)
            return Webhook(delivery, (RemoteChange(remote_id, "comment", comment),))
        if data.get("type") == "state":
            return Webhook(delivery, (RemoteChange(remote_id, "status", status=_status_of(incident.get("state")),
                                                   note=str(incident.get("close_notes") or ""),
                                                   author=str(data.get("author_name") or "")),))
        return Webhook(delivery)

    async def check(self) -> list[CheckLine]:
        lines: list[CheckLine] = []
        try:
            me = await self._query("sys_user", f"user_name={self.cfg.user}", "sys_id,name")
            lines.append(CheckLine(True, "sign in", f"as {me[0]['name'] if me else self.cfg.user}"))
        except Exception as exc:
            return [CheckLine(False, "sign in", str(exc))]
        try:
            await self._result("GET", "/api/now/table/incident",
                               params={"sysparm_limit": 1, "sysparm_fields": "sys_id"})
            lines.append(CheckLine(True, "read incidents", "the integration user can read the incident table"))
        except Exception as exc:
            lines.append(CheckLine(False, "read incidents", f"{exc} (give the user the itil role)"))
        try:
            await self._result("GET", "/api/now/table/sys_journal_field",
                               params={"sysparm_limit": 1, "sysparm_fields": "sys_id"})
            lines.append(CheckLine(True, "read comments", "sys_journal_field is readable"))
        except Exception as exc:
            lines.append(CheckLine(False, "read comments", f"{exc} (the user needs read access to sys_journal_field)"))
        for category, group in sorted(self.cfg.assignment_groups.items()):
            try:
                found = await self._query("sys_user_group", f"sys_id={group}^ORname={group}", "sys_id,name")
                lines.append(CheckLine(bool(found), f"assignment group for {category}",
                                       found[0]["name"] if found else f"{group!r} is not a group"))
            except Exception as exc:
                lines.append(CheckLine(False, f"assignment group for {category}", str(exc)))
        if not self.cfg.webhook_secret:
            lines.append(CheckLine(False, "webhook secret", "HELPDESK_ITSM__WEBHOOK_SECRET is not set: changes made "
                                                            "in ServiceNow arrive only by polling"))
        return lines
