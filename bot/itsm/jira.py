"""Jira Service Management Cloud (REST: /rest/servicedeskapi and /rest/api/3).

- create: `POST /rest/servicedeskapi/request` (service desk, request type by category, summary
  "[HD-1005] ...", raised on behalf of the customer found by email through `/rest/api/3/user/search`;
  a customer is created with `POST /rest/servicedeskapi/customer` only when `itsm.create_people`);
- find (after an interrupted create): JQL on the "[HD-1005]" summary prefix (`/rest/api/3/search/jql`);
- comments: `POST /rest/servicedeskapi/request/{id}/comment` with `public` true (the customer sees it)
  or false (internal); paged reads with `start`/`limit`/`isLastPage`;
- status: the request's transitions by name (`itsm.resolve_transition`, `itsm.reopen_transition`);
  a status counts as resolved when its category is "done";
- webhooks: admin webhooks signed with their secret (`X-Hub-Signature: sha256=<hex>` over the raw
  body), `X-Atlassian-Webhook-Identifier` as the delivery id, the body's `timestamp` for replays;
- poll: JQL `updated >= "-Nm"` (relative, so neither side's time zone matters), `nextPageToken` pages.
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
)
from bot.outbox.worker import Undeliverable
from bot.settings import ItsmSettings


def _status_of(category_key: str) -> str:
    return RESOLVED if category_key.lower() == "done" else OPEN


class JiraServiceManagement:
    name = "jira"

    def __init__(self, cfg: ItsmSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        self.client = basic_auth_client(cfg, transport)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await call(self.client, "Jira", method, url, **kwargs)
        return response.json() if response.content else {}

    # -- people --

    async def account_for(self, email: str, name: str) -> str | None:
        users = await self._json("GET", "/rest/api/3/user/search", params={"query": email})
        users = [u for u in users if isinstance(u, dict) and u.get("active", True)] if isinstance(users, list) else []
        exact = [u for u in users if str(u.get("emailAddress", "")).lower() == email.lower()]
        chosen = exact or (users if len(users) == 1 else [])
        if chosen:
            return str(chosen[0]["accountId"])
        if not self.cfg.create_people:
            return None
        created = await self._json("POST", "/rest/servicedeskapi/customer",
                                   json={"email": email, "displayName": name})
        return str(created["accountId"])

    # -- records --

    def _request_type(self, category: str) -> str:
        chosen = self.cfg.request_types.get(category) or self.cfg.request_types.get("default")
        if not chosen:
            raise Undeliverable(f"no Jira request type for category {category!r} (itsm.request_types)")
        return chosen

    async def create(self, record: NewRecord) -> RemoteRecord:
        account = await self.account_for(record.requester_email, record.requester_name)
        description = record.description
        if account is None:
            description = f"Requested by {record.requester_name} <{record.requester_email}>\n\n{description}"
        fields: dict[str, Any] = {"summary": f"[{record.ref}] {record.summary}"[:250], "description": description,
                                  **self.cfg.custom_fields}
        priority = self.cfg.priority_map.get(record.priority, {}).get("priority")
        if priority:
            fields["priority"] = {"name": priority}
        body: dict[str, Any] = {"serviceDeskId": self.cfg.service_desk_id,
                                "requestTypeId": self._request_type(record.category),
                                "requestFieldValues": fields}
        if account is not None:
            body["raiseOnBehalfOf"] = account
        created = await self._json("POST", "/rest/servicedeskapi/request", json=body)
        status = created.get("currentStatus") or {}
        web = (created.get("_links") or {}).get("web") or f"{self.base}/browse/{created['issueKey']}"
        return RemoteRecord(str(created["issueId"]), str(created["issueKey"]), str(web),
                            _status_of(str(status.get("statusCategory", ""))))

    async def find(self, ref: str) -> RemoteRecord | None:
        jql = f'project = "{self.cfg.project_key}" AND summary ~ "\\"{ref}\\""'
        found = await self._json("GET", "/rest/api/3/search/jql",
                                 params={"jql": jql, "fields": "summary,status", "maxResults": 20})
        for issue in found.get("issues", []):
            fields = issue.get("fields") or {}
            if str(fields.get("summary", "")).startswith(f"[{ref}]"):
                category = ((fields.get("status") or {}).get("statusCategory") or {}).get("key", "")
                return RemoteRecord(str(issue["id"]), str(issue["key"]), f"{self.base}/browse/{issue['key']}",
                                    _status_of(str(category)))
        return None

    # -- comments --

    async def comment(self, remote_id: str, text: str, *, public: bool) -> str:
        created = await self._json("POST", f"/rest/servicedeskapi/request/{remote_id}/comment",
                                   json={"body": text, "public": public})
        return str(created["id"])

    async def comments(self, remote_id: str) -> list[dict[str, Any]]:
        values: list[dict[str, Any]] = []
        start = 0
        while True:
            page = await self._json("GET", f"/rest/servicedeskapi/request/{remote_id}/comment",
                                    params={"start": start, "limit": 50})
            batch = page.get("values", [])
            values.extend(batch)
            if page.get("isLastPage", True) or not batch:
                return values
            start += len(batch)

    async def find_comment(self, remote_id: str, marker: str) -> str | None:
        for comment in await self.comments(remote_id):
            if marker in str(comment.get("body", "")):
                return str(comment["id"])
        return None

    # -- status --

    async def get_status(self, remote_id: str) -> str:
        request = await self._json("GET", f"/rest/servicedeskapi/request/{remote_id}")
        return _status_of(str((request.get("currentStatus") or {}).get("statusCategory", "")))

    async def set_status(self, remote_id: str, status: str, note: str) -> None:
        if await self.get_status(remote_id) == status:
            return
        wanted = self.cfg.resolve_transition if status == RESOLVED else self.cfg.reopen_transition
        page = await self._json("GET", f"/rest/servicedeskapi/request/{remote_id}/transition")
        for transition in page.get("values", []):
            if str(transition.get("name", "")).strip().lower() == wanted.strip().lower():
                body: dict[str, Any] = {"id": str(transition["id"])}
                if note.strip():
                    body["additionalComment"] = {"body": note}
                await call(self.client, "Jira", "POST", f"/rest/servicedeskapi/request/{remote_id}/transition",
                           json=body)
                return
        names = ", ".join(str(t.get("name")) for t in page.get("values", [])) or "none"
        raise Undeliverable(f"Jira offers no transition named {wanted!r} on this request (it offers: {names})")

    # -- inbound --

    def _comment_change(self, remote_id: str, comment: Mapping[str, Any]) -> RemoteChange:
        body = str(comment.get("body", ""))
        public = comment.get("public", comment.get("jsdPublic", True))
        author = (comment.get("author") or {}).get("displayName") or "a technician"
        return RemoteChange(remote_id, "comment", RemoteComment(str(comment.get("id")), body, bool(public),
                                                                 str(author), ours=bool(MARKER.search(body))))

    async def changed_since(self, since: datetime, now: datetime) -> list[RemoteChange]:
        minutes = max(1, math.ceil((now - since).total_seconds() / 60) + 1)
        jql = f'project = "{self.cfg.project_key}" AND updated >= "-{minutes}m" ORDER BY updated ASC'
        changes: list[RemoteChange] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"jql": jql, "fields": "summary,status", "maxResults": 50}
            if token:
                params["nextPageToken"] = token
            page = await self._json("GET", "/rest/api/3/search/jql", params=params)
            for issue in page.get("issues", []):
                remote_id = str(issue["id"])
                category = (((issue.get("fields") or {}).get("status") or {}).get("statusCategory") or {})
                for comment in await self.comments(remote_id):
                    changes.append(self._comment_change(remote_id, comment))
                changes.append(RemoteChange(remote_id, "status", status=_status_of(str(category.get("key", "")))))
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return changes

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> Webhook:
        data, h = authenticated_json(self.cfg, headers, body, "X-Hub-Signature", now.timestamp(), stamp_unit=0.001)
        stamp = data["timestamp"]
        delivery = h.get("x-atlassian-webhook-identifier") or f"{data.get('webhookEvent')}:{stamp}"
        issue = data.get("issue") or {}
        remote_id = str(issue.get("id", ""))
        if not remote_id:
            return Webhook(delivery)
        event = str(data.get("webhookEvent", ""))
        if event == "comment_created" and isinstance(data.get("comment"), dict):
            return Webhook(delivery, (self._comment_change(remote_id, data["comment"]),))
        if event == "jira:issue_updated":
            items = ((data.get("changelog") or {}).get("items")) or []
            if any(str(i.get("field", "")).lower() == "status" for i in items if isinstance(i, dict)):
                category = (((issue.get("fields") or {}).get("status") or {}).get("statusCategory") or {})
                author = (data.get("user") or {}).get("displayName") or ""
                return Webhook(delivery, (RemoteChange(remote_id, "status",
                                                       status=_status_of(str(category.get("key", ""))),
                                                       author=str(author)),))
        return Webhook(delivery)

    async def check(self) -> list[CheckLine]:
        lines: list[CheckLine] = []
        try:
            me = await self._json("GET", "/rest/api/3/myself")
            lines.append(CheckLine(True, "sign in", f"as {me.get('displayName')} <{me.get('emailAddress', '')}>"))
        except Exception as exc:
            return [CheckLine(False, "sign in", str(exc))]
        try:
            desk = await self._json("GET", f"/rest/servicedeskapi/servicedesk/{self.cfg.service_desk_id}")
            lines.append(CheckLine(True, "service desk", f"{desk.get('projectName')} ({desk.get('projectKey')})"))
            if self.cfg.project_key and desk.get("projectKey") != self.cfg.project_key:
                lines.append(CheckLine(False, "project key", f"itsm.project_key is {self.cfg.project_key!r} "
                                                             f"but the service desk is {desk.get('projectKey')!r}"))
        except Exception as exc:
            return [*lines, CheckLine(False, "service desk", str(exc))]
        try:
            page = await self._json("GET", f"/rest/servicedeskapi/servicedesk/{self.cfg.service_desk_id}/requesttype",
                                    params={"limit": 100})
            known = {str(t.get("id")): str(t.get("name")) for t in page.get("values", [])}
            for category, type_id in sorted(self.cfg.request_types.items()):
                if type_id in known:
                    lines.append(CheckLine(True, f"request type for {category}", f"{type_id} ({known[type_id]})"))
                else:
                    lines.append(CheckLine(False, f"request type for {category}",
                                           f"{type_id} is not a request type of this service desk "
                                           f"(it has: {', '.join(f'{k} {v}' for k, v in known.items())})"))
            if not self.cfg.request_types.get("default"):
                lines.append(CheckLine(False, "request type for default",
                                       "set itsm.request_types.default for categories without their own"))
        except Exception as exc:
            lines.append(CheckLine(False, "request types", str(exc)))
        if not self.cfg.webhook_secret:
            lines.append(CheckLine(False, "webhook secret", "HELPDESK_ITSM__WEBHOOK_SECRET is not set: changes made "
                                                            "in Jira arrive only by polling"))
        return lines
