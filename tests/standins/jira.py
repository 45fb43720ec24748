"""A local stand-in for Jira Service Management Cloud, as Atlassian documents it.

- `GET /rest/api/3/myself`; `GET /rest/api/3/user/search?query=` (array of users; `emailAddress`
  may be hidden by the user's privacy settings, so matching is by the query);
- `POST /rest/servicedeskapi/customer` (experimental; 201 `{accountId, emailAddress, displayName}`);
- `GET /rest/servicedeskapi/servicedesk/{id}` and `/{id}/requesttype` (paged `values`);
- `POST /rest/servicedeskapi/request` (201: `issueId`, `issueKey`, `currentStatus`, `_links.web`;
  400 `{"errorMessage": ...}` for a bad service desk, request type or missing summary);
- `GET /rest/servicedeskapi/request/{idOrKey}` (`currentStatus.statusCategory`: NEW, INDETERMINATE, DONE);
- `GET|POST /rest/servicedeskapi/request/{idOrKey}/comment` (`public`; paged with `start`, `limit`,
  `isLastPage`, `size`, `values`);
- `GET|POST /rest/servicedeskapi/request/{idOrKey}/transition` (POST 204; `additionalComment` is a
  public comment);
- `GET /rest/api/3/search/jql` (`jql`, `fields`, `maxResults`, `nextPageToken` / `isLast`):
  understands `project = "X"`, `summary ~ "\\"text\\""` and `updated >= "-Nm"`;
- errors as Jira's `{"errorMessages": [...], "errors": {}}` (401 without valid basic auth);
  injectable 429 with `Retry-After` and 503;
- webhooks as an admin webhook with a secret sends them: `comment_created` and `jira:issue_updated`
  (with a status changelog), signed `X-Hub-Signature: sha256=<hex>`, `X-Atlassian-Webhook-Identifier`.
  Each change queues one; the test delivers them (or drops one, to be caught up by polling).

Agents act through `agent_comment`, `agent_transition`; every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

STATUSES = {"Waiting for support": "NEW", "In progress": "INDETERMINATE", "Waiting for customer": "INDETERMINATE",
            "Resolved": "DONE"}
TRANSITIONS = {  # from status -> [(id, name, to status)]
    "Waiting for support": [("11", "Respond to customer", "Waiting for customer"),
                            ("761", "Resolve this issue", "Resolved")],
    "In progress": [("761", "Resolve this issue", "Resolved")],
    "Waiting for customer": [("21", "Respond to support", "Waiting for support"),
                             ("761", "Resolve this issue", "Resolved")],
    "Resolved": [("771", "Reopen", "Waiting for support")],
}


@dataclass
class Comment:
    id: str
    body: str
    public: bool
    author: dict[str, Any]
    created: datetime


@dataclass
class Issue:
    id: str
    key: str
    summary: str
    description: str
    request_type: str
    reporter: str
    status: str
    updated: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)


class JiraStandIn:
    def __init__(self, *, email: str = "helpdesk-bot@example.com", token: str = "jira-api-token",  # noqa: S107
                 secret: str = "jira-webhook-secret",  # noqa: S107
                 clock: Any = None, project: str = "ITHELP", desk_id: str = "10", page_size: int = 2) -> None:
        self.email, self.token, self.secret = email, token, secret
        self.clock = clock or (lambda: datetime.now(UTC))
        self.project, self.desk_id = project, desk_id
        self.page_size = page_size  # small, so paging is exercised
        self.request_types = {"25": "Get IT help", "26": "Request access", "27": "Report a broken laptop"}
        self.bot_account = {"accountId": "bot-5b10", "displayName": "Help Desk Bot", "emailAddress": email}
        self.users: dict[str, dict[str, Any]] = {
            "alice@example.com": {"accountId": "qm:alice-1", "displayName": "Alice Example",
                                  "emailAddress": "alice@example.com", "active": True},
            "tina@example.com": {"accountId": "tina-2", "displayName": "Tina Tech", "emailAddress": "tina@example.com",
                                 "active": True},
        }
        self.issues: dict[str, Issue] = {}
        self.requests: list[httpx.Request] = []
        self.webhooks: list[tuple[dict[str, str], bytes]] = []
        self.faults: list[tuple[int, str | None]] = []  # (status, Retry-After) served before anything else
        self.created_requests = 0
        self._next_comment = 10000
        self._next_issue = 10040

    # ----- the agent's side -----------------------------------------------------------------------

    def by_summary_ref(self, ref: str) -> Issue:
        return next(i for i in self.issues.values() if i.summary.startswith(f"[{ref}]"))

    def agent_comment(self, issue: Issue, body: str, *, public: bool, agent: str = "tina@example.com") -> Comment:
        return self._comment(issue, body, public, self.users[agent])

    def agent_transition(self, issue: Issue, name: str, agent: str = "tina@example.com") -> None:
        for _tid, tname, to in TRANSITIONS[issue.status]:
            if tname == name:
                self._move(issue, to, self.users[agent])
                return
        raise AssertionError(f"no transition {name!r} from {issue.status!r}")

    # ----- internals --------------------------------------------------------------------------------

    def _comment(self, issue: Issue, body: str, public: bool, author: dict[str, Any]) -> Comment:
        self._next_comment += 1
        comment = Comment(str(self._next_comment), body, public, author, self.clock())
        issue.comments.append(comment)
        issue.updated = self.clock()
        self._webhook("comment_created", issue, {"comment": self._comment_json(comment, jsd=True)}, author)
        return comment

    def _move(self, issue: Issue, to: str, author: dict[str, Any]) -> None:
        before = issue.status
        issue.status = to
        issue.updated = self.clock()
        self._webhook("jira:issue_updated", issue, {"changelog": {"id": str(uuid.uuid4().int)[:6], "items": [
            {"field": "status", "fieldtype": "jira", "fromString": before, "toString": to}]}}, author)

    def _issue_json(self, issue: Issue) -> dict[str, Any]:
        return {"id": issue.id, "key": issue.key, "self": f"https://example.atlassian.net/rest/api/3/issue/{issue.id}",
                "fields": {"summary": issue.summary, "updated": issue.updated.isoformat(),
                           "status": {"name": issue.status, "statusCategory": {
                               "key": {"NEW": "new", "INDETERMINATE": "indeterminate", "DONE": "done"}[
                                   STATUSES[issue.status]]}}}}

    def _comment_json(self, c: Comment, *, jsd: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"id": c.id, "body": c.body, "author": c.author,
                                "created": {"epochMillis": int(c.created.timestamp() * 1000),
                                            "iso8601": c.created.isoformat()}}
        if jsd:
            data["jsdPublic"] = c.public
            data["created"] = c.created.isoformat()
        else:
            data["public"] = c.public
        return data

    def _webhook(self, event: str, issue: Issue, extra: dict[str, Any], user: dict[str, Any]) -> None:
        body = json.dumps({"timestamp": int(self.clock().timestamp() * 1000), "webhookEvent": event,
                           "user": user, "issue": self._issue_json(issue), **extra}).encode()
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        self.webhooks.append(({"Content-Type": "application/json", "X-Hub-Signature": signature,
                               "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
                               "X-Atlassian-Webhook-Flow": "Primary"}, body))

    def _find(self, id_or_key: str) -> Issue | None:
        return self.issues.get(id_or_key) or next((i for i in self.issues.values() if i.key == id_or_key), None)

    @staticmethod
    def _error(status: int, *messages: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(status, json={"errorMessages": list(messages), "errors": {}}, headers=headers)

    def _page(self, values: list[Any], params: dict[str, str]) -> dict[str, Any]:
        start = int(params.get("start", 0))
        limit = min(int(params.get("limit", 50)), self.page_size)
        chunk = values[start:start + limit]
        return {"size": len(chunk), "start": start, "limit": limit, "isLastPage": start + limit >= len(values),
                "values": chunk}

    # ----- HTTP ---------------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            status, after = self.faults.pop(0)
            return self._error(status, "Rate limit exceeded." if status == 429 else "Internal server error",
                               headers={"Retry-After": after} if after else None)
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._error(401, "Client must be authenticated to access this resource.")
        path, method = request.url.path, request.method
        params = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        body = json.loads(request.content) if request.content else {}
        if path == "/rest/api/3/myself":
            return httpx.Response(200, json=self.bot_account)
        if path == "/rest/api/3/user/search":
            query = params.get("query", "").lower()
            return httpx.Response(200, json=[u for e, u in self.users.items() if query and query in e])
        if path == "/rest/servicedeskapi/customer" and method == "POST":
            account = {"accountId": f"qm:{uuid.uuid4().hex[:8]}", "displayName": body.get("displayName"),
                       "emailAddress": body.get("email"), "active": True}
            self.users[str(body.get("email")).lower()] = account
            return httpx.Response(201, json=account)
        m = re.fullmatch(r"/rest/servicedeskapi/servicedesk/(\w+)(/requesttype)?", path)
        if m:
            if m.group(1) != self.desk_id:
                return self._error(404, "The service desk does not exist.")
            if m.group(2):
                values = [{"id": k, "name": v, "serviceDeskId": self.desk_id} for k, v in self.request_types.items()]
                return httpx.Response(200, json={"size": len(values), "start": 0, "limit": 100, "isLastPage": True,
                                                 "values": values})
            return httpx.Response(200, json={"id": self.desk_id, "projectId": "10001", "projectName": "IT Help",
                                             "projectKey": self.project})
        if path == "/rest/servicedeskapi/request" and method == "POST":
            return self._create(body)
        m = re.fullmatch(r"/rest/servicedeskapi/request/([\w-]+)(/comment|/transition)?", path)
        if m:
            issue = self._find(m.group(1))
            if issue is None:
                return self._error(404, "Request does not exist or you do not have permission to see it.")
            if m.group(2) == "/comment":
                if method == "POST":
                    if not str(body.get("body", "")).strip():
                        return self._error(400, "Comment body can not be empty!")
                    c = self._comment(issue, str(body["body"]), bool(body.get("public", True)), self.bot_account)
                    return httpx.Response(201, json=self._comment_json(c))
                comments = [self._comment_json(c) for c in issue.comments]
                return httpx.Response(200, json=self._page(comments, params))
            if m.group(2) == "/transition":
                options = TRANSITIONS.get(issue.status, [])
                if method == "GET":
                    values = [{"id": tid, "name": name} for tid, name, _ in options]
                    return httpx.Response(200, json={"size": len(values), "start": 0, "limit": 50,
                                                     "isLastPage": True, "values": values})
                chosen = next((o for o in options if o[0] == str(body.get("id"))), None)
                if chosen is None:
                    return self._error(400, "The transition is not valid for this request.")
                self._move(issue, chosen[2], self.bot_account)
                comment = (body.get("additionalComment") or {}).get("body")
                if comment:
                    self._comment(issue, str(comment), True, self.bot_account)
                return httpx.Response(204)
            return httpx.Response(200, json={"issueId": issue.id, "issueKey": issue.key, "currentStatus": {
                "status": issue.status, "statusCategory": STATUSES[issue.status]}})
        if path == "/rest/api/3/search/jql":
            return self._search(params)
        return self._error(404, f"No resource at {path}")

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        if str(body.get("serviceDeskId")) != self.desk_id:
            return httpx.Response(400, json={"errorMessage": "The service desk does not exist.",
                                             "i18nErrorMessage": {}})
        if str(body.get("requestTypeId")) not in self.request_types:
            return httpx.Response(400, json={"errorMessage": "The request type you are trying to use does not exist.",
                                             "i18nErrorMessage": {}})
        fields = dict(body.get("requestFieldValues") or {})
        if not str(fields.get("summary", "")).strip():
            return httpx.Response(400, json={"errorMessage": "Summary: You must specify a summary of the issue.",
                                             "i18nErrorMessage": {}})
        self._next_issue += 1
        self.created_requests += 1
        issue = Issue(str(self._next_issue), f"{self.project}-{self._next_issue - 10000}", str(fields.pop("summary")),
                      str(fields.pop("description", "")), str(body["requestTypeId"]),
                      str(body.get("raiseOnBehalfOf") or self.bot_account["accountId"]), "Waiting for support",
                      self.clock(), fields)
        self.issues[issue.id] = issue
        return httpx.Response(201, json={
            "issueId": issue.id, "issueKey": issue.key, "requestTypeId": issue.request_type,
            "serviceDeskId": self.desk_id, "currentStatus": {"status": issue.status, "statusCategory": "NEW"},
            "_links": {"web": f"https://example.atlassian.net/servicedesk/customer/portal/1/{issue.key}"}})

    def _search(self, params: dict[str, str]) -> httpx.Response:
        jql = params.get("jql", "")
        found = list(self.issues.values())
        m = re.search(r'project = "([^"]+)"', jql)
        if m:
            found = [i for i in found if i.key.startswith(m.group(1) + "-")]
        m = re.search(r'summary ~ "\\"([^"\\]+)\\""', jql)
        if m:
            found = [i for i in found if m.group(1).lower() in i.summary.lower()]
        m = re.search(r'updated >= "-(\d+)m"', jql)
        if m:
            since = self.clock() - timedelta(minutes=int(m.group(1)))
            found = [i for i in found if i.updated >= since]
        found.sort(key=lambda i: i.updated)
        start = int(params.get("nextPageToken") or 0)
        size = min(int(params.get("maxResults", 50)), self.page_size)
        chunk = found[start:start + size]
        last = start + size >= len(found)
        data: dict[str, Any] = {"issues": [self._issue_json(i) for i in chunk], "isLast": last}
        if not last:
            data["nextPageToken"] = str(start + size)
        return httpx.Response(200, json=data)
