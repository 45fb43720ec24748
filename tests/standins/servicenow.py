"""A local stand-in for ServiceNow's Table API, as ServiceNow documents it.

- `GET /api/now/table/{table}` with `sysparm_query` (encoded query: `a=b`, `^` AND, `aISNOTEMPTY`,
  `aINx,y`, `aSTARTSWITHx`, `sys_updated_on>=javascript:gs.minutesAgoStart(N)`, `ORDERBYx`),
  `sysparm_fields`, `sysparm_limit`, `sysparm_offset`, a `Link` header with rel="next", and
  `X-Total-Count`; `GET|PATCH /api/now/table/incident/{sys_id}`; `POST /api/now/table/{table}` (201);
- tables: `incident` (state 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled;
  Resolved needs `close_code` and `close_notes`, like the out-of-box data policy), `sys_user`,
  `sys_user_group`, `sys_journal_field` (PATCHing `comments` / `work_notes` adds a journal entry);
- results as `{"result": ...}`; errors as `{"error": {"message", "detail"}, "status": "failure"}`
  (401 without basic auth, 403 ACL, 404 "No Record found"); injectable 429 with `Retry-After`
  (rate-limit rules) and 503;
- the outbound webhook a business rule posts (docs/itsm.md), signed with HMAC-SHA256 of the body
  (base64, as GlideCertificateEncryption.generateMac gives it): one per journal entry and per state
  change, queued in `webhooks` for the test to deliver or drop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

RESOLVED = {"6", "7", "8"}


def _fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class ServiceNowStandIn:
    def __init__(self, *, user: str = "svc.helpdesk", password: str = "snow-password",  # noqa: S107
                 secret: str = "snow-webhook-secret",  # noqa: S107
                 clock: Any = None, page_size: int = 2) -> None:
        self.user, self.password, self.secret = user, password, secret
        self.clock = clock or (lambda: datetime.now(UTC))
        self.page_size = page_size
        self.tables: dict[str, list[dict[str, Any]]] = {
            "sys_user": [
                {"sys_id": "u-bot", "user_name": user, "name": "Help Desk Integration", "email": "", "active": "true"},
                {"sys_id": "u-alice", "user_name": "alice", "name": "Alice Example", "email": "alice@example.com",
                 "active": "true"},
                {"sys_id": "u-tina", "user_name": "tina.tech", "name": "Tina Tech", "email": "tina@example.com",
                 "active": "true"},
            ],
            "sys_user_group": [{"sys_id": "g-service-desk", "name": "Service Desk"},
                               {"sys_id": "g-network", "name": "Network"}],
            "incident": [],
            "sys_journal_field": [],
        }
        self.requests: list[httpx.Request] = []
        self.webhooks: list[tuple[dict[str, str], bytes]] = []
        self.faults: list[tuple[int, str | None]] = []
        self.acl_denied: set[str] = set()  # tables the integration user may not read
        self._number = 10000

    # ----- the agent's side -----------------------------------------------------------------------

    def incident_for(self, ref: str) -> dict[str, Any]:
        return next(i for i in self.tables["incident"] if i["correlation_id"] == ref)

    def agent_comment(self, incident: dict[str, Any], text: str, *, public: bool, agent: str = "tina.tech") -> None:
        self._journal(incident, "comments" if public else "work_notes", text, agent)

    def agent_state(self, incident: dict[str, Any], state: str, agent: str = "tina.tech", notes: str = "") -> None:
        incident["state"] = state
        if state == "6":
            incident["close_code"], incident["close_notes"] = "Solution provided", notes
        self._touch(incident, agent)
        self._webhook({"type": "state", "incident": self._public(incident), "author_name": self._name(agent)})

    # ----- internals --------------------------------------------------------------------------------

    def _name(self, user_name: str) -> str:
        return next((u["name"] for u in self.tables["sys_user"] if u["user_name"] == user_name), user_name)

    def _touch(self, row: dict[str, Any], by: str) -> None:
        row["sys_updated_on"] = _fmt(self.clock())
        row["sys_updated_by"] = by
        row["sys_mod_count"] = str(int(row.get("sys_mod_count", "0")) + 1)

    def _public(self, incident: dict[str, Any]) -> dict[str, Any]:
        return {k: incident.get(k, "") for k in ("sys_id", "number", "state", "correlation_id", "close_notes")}

    def _journal(self, incident: dict[str, Any], element: str, value: str, by: str) -> None:
        entry = {"sys_id": uuid.uuid4().hex, "element": element, "element_id": incident["sys_id"], "name": "incident",
                 "value": value, "sys_created_by": by, "sys_created_on": _fmt(self.clock())}
        self.tables["sys_journal_field"].append(entry)
        self._touch(incident, by)
        self._webhook({"type": "comment", "incident": self._public(incident),
                       "comment": {**entry, "author_name": self._name(by)}})

    def _webhook(self, data: dict[str, Any]) -> None:
        body = json.dumps({"event_id": uuid.uuid4().hex, "timestamp": int(self.clock().timestamp()), **data}).encode()
        mac = base64.b64encode(hmac.new(self.secret.encode(), body, hashlib.sha256).digest()).decode()
        self.webhooks.append(({"Content-Type": "application/json", "X-Helpdesk-Signature": mac}, body))

    @staticmethod
    def _error(status: int, message: str, detail: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": message, "detail": detail}, "status": "failure"},
                              headers=headers)

    def _matches(self, row: dict[str, Any], query: str) -> bool:
        """Terms joined by `^` must all hold; a term starting `OR` is an alternative to the one before."""
        groups: list[list[str]] = []
        for term in [t for t in query.split("^") if t and not t.startswith("ORDERBY")]:
            if term.startswith("OR") and groups:
                groups[-1].append(term[2:])
            else:
                groups.append([term])
        return all(any(self._term(row, term) for term in group) for group in groups)

    def _term(self, row: dict[str, Any], query: str) -> bool:
        for term in [query]:
            if term.endswith("ISNOTEMPTY"):
                if not row.get(term[: -len("ISNOTEMPTY")]):
                    return False
                continue
            m = re.fullmatch(r"(\w+)>=javascript:gs\.minutesAgoStart\((\d+)\)", term)
            if m:
                since = _fmt(self.clock() - timedelta(minutes=int(m.group(2))))
                if str(row.get(m.group(1), "")) < since:
                    return False
                continue
            m = re.fullmatch(r"(\w+)IN(.*)", term)
            if m and m.group(1) in row:
                if str(row.get(m.group(1))) not in m.group(2).split(","):
                    return False
                continue
            m = re.fullmatch(r"(\w+)STARTSWITH(.*)", term)
            if m:
                if not str(row.get(m.group(1), "")).startswith(m.group(2)):
                    return False
                continue
            m = re.fullmatch(r"(\w+)=(.*)", term)
            if m:
                if str(row.get(m.group(1), "")) != m.group(2):
                    return False
                continue
            m = re.fullmatch(r"(\w+)LIKE(.*)", term)
            if m:
                if m.group(2) not in str(row.get(m.group(1), "")):
                    return False
                continue
            raise ValueError(f"stand-in does not understand {term!r}")
        return True

    # ----- HTTP ---------------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            status, after = self.faults.pop(0)
            if status == 429:
                return self._error(429, "Too many requests", "Rate limit exceeded for this user",
                                   headers={"Retry-After": after or "1", "X-RateLimit-Limit": "100",
                                            "X-RateLimit-Remaining": "0"})
            return self._error(status, "Service unavailable", "")
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._error(401, "User Not Authenticated", "Required to provide Auth information")
        m = re.fullmatch(r"/api/now/table/(\w+)(?:/(\w+))?", request.url.path)
        if not m:
            return self._error(400, "Invalid table", request.url.path)
        table, sys_id = m.group(1), m.group(2)
        if table not in self.tables:
            return self._error(400, f"Invalid table {table}")
        if table in self.acl_denied:
            return self._error(403, "User Not Authorized", "ACL restricts the record retrieval")
        params = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        fields = [f for f in params.get("sysparm_fields", "").split(",") if f]
        body = json.loads(request.content) if request.content else {}

        def shape(row: dict[str, Any]) -> dict[str, Any]:
            return {k: row.get(k, "") for k in fields} if fields else dict(row)

        rows = self.tables[table]
        if sys_id is not None:
            row = next((r for r in rows if r["sys_id"] == sys_id), None)
            if row is None:
                return self._error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
            if request.method == "PATCH":
                return self._patch(table, row, body)
            return httpx.Response(200, json={"result": shape(row)})
        if request.method == "POST":
            return self._insert(table, body)
        query = params.get("sysparm_query", "")
        found = [r for r in rows if self._matches(r, query)]
        order = re.search(r"ORDERBY(DESC)?(\w+)", query)
        if order:
            found.sort(key=lambda r: str(r.get(order.group(2), "")), reverse=bool(order.group(1)))
        offset = int(params.get("sysparm_offset", 0))
        limit = min(int(params.get("sysparm_limit", 10000)), self.page_size)
        chunk = found[offset:offset + limit]
        headers = {"X-Total-Count": str(len(found))}
        if offset + limit < len(found):
            headers["Link"] = f'<{request.url.copy_merge_params({"sysparm_offset": offset + limit})}>;rel="next"'
        return httpx.Response(200, json={"result": [shape(r) for r in chunk]}, headers=headers)

    def _insert(self, table: str, body: dict[str, Any]) -> httpx.Response:
        row = {k: str(v) for k, v in body.items()}
        row["sys_id"] = uuid.uuid4().hex
        if table == "incident":
            if not row.get("short_description"):
                return self._error(400, "Mandatory field short_description is missing")
            self._number += 1
            row.setdefault("state", "1")
            row["number"] = f"INC{self._number:07d}"
        row["sys_created_by"] = self.user
        row["sys_created_on"] = _fmt(self.clock())
        self._touch(row, self.user)
        self.tables[table].append(row)
        return httpx.Response(201, json={"result": row})

    def _patch(self, table: str, row: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        if table == "incident" and str(body.get("state", "")) == "6" and not (
                body.get("close_code") or row.get("close_code")) :
            return self._error(403, "Operation against file 'incident' was aborted by Business Rule "
                                    "'mandatory close fields'", "Data Policy Exception: Resolution code is mandatory")
        for element in ("comments", "work_notes"):
            if element in body:
                value = str(body.pop(element))
                if value.strip():
                    self._journal(row, element, value, self.user)
        before = row.get("state")
        for key, value in body.items():
            row[key] = str(value)
        self._touch(row, self.user)
        if table == "incident" and before != row.get("state"):
            self._webhook({"type": "state", "incident": self._public(row), "author_name": "Help Desk Integration"})
        return httpx.Response(200, json={"result": dict(row)})
