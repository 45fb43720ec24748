"""The web console under /console/: a channel for people at a desk.

It calls the same services as the chat and the CLI (tickets, outages, reports, knowledge base), in one
transaction per action with the same role checks, audit events and outbox messages. Every request is
checked on the server: a signed, unexpired session, then the person's role from the `roles:` settings
(looked up each time, so a removed technician loses access at once), then, for every change, the
session's CSRF token. Pages are Jinja2 with autoescaping (what an employee typed is shown as text);
htmx and Chart.js are served from bot/web/static/vendor, never from the internet.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.core.models import Person, Platform, PlatformUser
from bot.web.auth import EntraSignIn, SignInError, SlackSignIn, demo_allowed, sign_in_method, sign_in_problems
from bot.web.security import (
    CSRF_HEADER,
    PRE_COOKIE,
    SESSION_COOKIE,
    FormError,
    SecurityHeaders,
    Session,
    SessionCodec,
    cookie_options,
    csrf_ok,
    read_form,
)

log = logging.getLogger("bot.web")

HERE = Path(__file__).resolve().parent
PRIORITIES = ("P1", "P2", "P3", "P4")
STATUS_FILTERS = ("open", "unclaimed", "breaching", "new", "claimed", "waiting_on_requester", "reopened",
                  "resolved", "closed", "all")
FLOW_KEY = "console_oidc:"
MAX_TRANSCRIPT = 20_000
EXAMPLE_TRANSCRIPT = """as: alice@example.com
turns:
  - say: "vpn won't connect"
"""


@dataclass(frozen=True, slots=True)
class Viewer:
    session: Session
    person: Person

    @property
    def role(self) -> str:
        return "admin" if self.person.is_admin else "technician" if self.person.is_technician else "employee"


class TranscriptRefused(Exception):
    """A transcript that cannot be run as written: the message is shown on the Flows page."""


# Runs a transcript (docs/simulate.md) with the given settings and returns its events; raises
# TranscriptRefused for a transcript that cannot be run as written (bot/channels/serve.py).
TranscriptRunner = Callable[[Mapping[str, Any], Any], Awaitable[list[dict[str, Any]]]]


class Console:
    """Routes and state of the web console for one built app."""

    def __init__(self, app: Any, *, http_client: Any = None, secret: bytes | None = None,
                 transcripts: TranscriptRunner | None = None) -> None:
        self.app = app
        # Runs a transcript on the console channel (bot/channels/serve.py hands it in); None: not here.
        self.transcripts = transcripts
        self.settings = app.settings
        web = self.settings.web
        if secret is None:
            secret = (web.session_secret.get_secret_value().encode() if web.session_secret is not None
                      else secrets.token_bytes(32))
        self.codec = SessionCodec(secret, web.session_minutes, app.clock)
        self.method = sign_in_method(self.settings)
        self.demo = demo_allowed(self.settings)
        self.problems = sign_in_problems(self.settings)
        if self.method == "demo" and not self.demo:
            self.problems.append("the demo sign-in is refused with a real directory (directory.backend: graph); "
                                 "use web.sign_in: entra (or slack)")
        self.entra = (EntraSignIn(self.settings, clock=app.clock, http_client=http_client)
                      if self.method == "entra" and not self.problems else None)
        if self.entra is not None:
            app.on_close(self.entra.close)
        self.slack = (SlackSignIn(self.settings, clock=app.clock, accounts=app.accounts.get("slack"))
                      if self.method == "slack" and not self.problems else None)
        if self.slack is not None:
            app.on_close(self.slack.aclose)
        # The OpenID Connect sign-in of this deployment (one at a time, one redirect URI).
        self.oidc: EntraSignIn | SlackSignIn | None = self.entra or self.slack
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), undefined=StrictUndefined,
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.globals.update(app_name=self.settings.app.name, demo=self.demo)
        self.env.filters["when"] = self._when

    # ----- plumbing -------------------------------------------------------------------------

    def _when(self, value: datetime | None) -> str:
        if value is None:
            return ""
        from zoneinfo import ZoneInfo

        return value.astimezone(ZoneInfo(self.settings.app.timezone)).strftime("%Y-%m-%d %H:%M")

    def page(self, name: str, request: Request, viewer: Viewer | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            request=request, viewer=viewer, csrf=viewer.session.csrf if viewer else "", path=request.url.path,
            **context)
        return HTMLResponse(html, status_code=status)

    def fragment(self, name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context))

    def _signin_redirect(self, request: Request) -> Response:
        target = "/console/signin?" + urlencode({"next": request.url.path})
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def person(self, email: str) -> Person | None:
        return await self.app.resolver.resolve(PlatformUser(Platform.CONSOLE, email, email=email))  # type: ignore[no-any-return]

    async def viewer(self, request: Request, need: str = "technician") -> Viewer | Response:
        """The signed-in person if their role allows `need` (technician | admin), else the response."""
        session = self.codec.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return self._signin_redirect(request)
        person = await self.person(session.email)
        if person is None or not person.enabled:
            return self.page("refused.html", request, None, status=403,
                             reason="Your account is not in the directory, or it is disabled.")
        viewer = Viewer(session, person)
        allowed = need == "any" or (person.is_admin if need == "admin" else person.is_technician)
        if not allowed:
            reason = ("Only admins can do this." if person.is_technician else
                      "The console is for help desk technicians and admins. To get help, write to the help desk "
                      "bot in chat.")
            return self.page("refused.html", request, viewer, status=403, reason=reason)
        return viewer

    async def change(self, request: Request, need: str = "technician") -> tuple[Viewer, dict[str, str]] | Response:
        """A state change: the viewer as above, a form, and the session's CSRF token (form field or header)."""
        found = await self.viewer(request, need)
        if isinstance(found, Response):
            return found
        try:
            form = await read_form(request)
        except FormError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if not csrf_ok(found.session.csrf, form.get("csrf") or request.headers.get(CSRF_HEADER)):
            log.warning("console: refused a change without a valid CSRF token (%s)", request.url.path)
            return PlainTextResponse("Refused: the form's security token is missing or wrong. Reload the page "
                                     "and try again.", status_code=403)
        return found, form

    def _wake(self, uow: Any) -> None:
        if uow.enqueued and self.app.pipeline.on_commit is not None:
            self.app.pipeline.on_commit()

    async def _uow_run(self, viewer: Viewer, work: Callable[[Any], Awaitable[Any]]) -> Any:
        from bot.store.repos import UnitOfWork

        async with self.app.sessions() as session, session.begin():
            uow = UnitOfWork(session, now=self.app.clock(), actor=viewer.person.email.lower())
            result = await work(uow)
        self._wake(uow)
        return result

    # ----- sign-in --------------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
        response = self.page("signin.html", request, None, method=self.method, problems=self.problems,
                             pre=pre, next=_safe_next(request.query_params.get("next")),
                             error=request.query_params.get("error", "")[:200],
                             people=self._demo_people() if self.demo else [])
        response.set_cookie(PRE_COOKIE, pre, max_age=1800, **cookie_options(request))
        return response

    def _demo_people(self) -> list[tuple[str, str]]:
        roles = self.settings.roles
        seen: dict[str, str] = {}
        for email in roles.admins:
            seen.setdefault(email.lower(), "admin")
        for email in roles.technicians:
            seen.setdefault(email.lower(), "technician")
        return sorted(seen.items())

    def _signed_in(self, request: Request, email: str, method: str, next_path: str) -> Response:
        value, _ = self.codec.issue(email, method)
        response = RedirectResponse(_safe_next(next_path), status_code=303)
        response.set_cookie(SESSION_COOKIE, value, max_age=self.codec.minutes * 60, **cookie_options(request))
        response.delete_cookie(PRE_COOKIE, path="/console")
        log.info("console sign-in (%s)", method)
        return response

    async def signin_demo(self, request: Request) -> Response:
        if not self.demo:
            return PlainTextResponse("The demo sign-in is turned off: this help desk uses a real directory. "
                                     "Sign in with your work account.", status_code=403)
        try:
            form = await read_form(request)
        except FormError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if not csrf_ok(request.cookies.get(PRE_COOKIE), form.get("csrf")):
            return PlainTextResponse("Refused: the sign-in form's security token is missing or wrong. Reload the "
                                     "sign-in page and try again.", status_code=403)
        email = form.get("email", "").strip().lower()
        if not email or await self.person(email) is None:
            return RedirectResponse("/console/signin?" + urlencode(
                {"error": "That email is not in the demo directory.", "next": _safe_next(form.get("next"))}),
                status_code=303)
        return self._signed_in(request, email, "demo", form.get("next", ""))

    def _redirect_uri(self, request: Request) -> str:
        base = self.settings.web.public_url.rstrip("/") or str(request.base_url).rstrip("/")
        return f"{base}/console/auth/callback"

    async def signin_entra(self, request: Request) -> Response:
        return await self._signin_start(request, "entra")

    async def signin_slack(self, request: Request) -> Response:
        return await self._signin_start(request, "slack")

    async def _signin_start(self, request: Request, method: str) -> Response:
        if self.oidc is None or self.oidc.method != method:
            name = "Microsoft" if method == "entra" else "Slack"
            return PlainTextResponse(f"{name} sign-in is not configured for this console.", status_code=404)
        from bot.store.repos import SqlSharedState

        try:
            flow = await self.oidc.start(self._redirect_uri(request))
        except SignInError as exc:
            return RedirectResponse("/console/signin?" + urlencode({"error": str(exc)}), status_code=303)
        flow["console_next"] = _safe_next(request.query_params.get("next"))
        flow["console_method"] = method
        expires = self.app.clock().timestamp() + 600
        async with self.app.sessions() as session, session.begin():
            # The flow (PKCE verifier, nonce, state) stays on the server, shared by every replica.
            await SqlSharedState(session, clock=lambda: self.app.clock().timestamp()).put(
                FLOW_KEY + _digest(str(flow["state"])), flow, expires)
        return RedirectResponse(str(flow["auth_uri"]), status_code=303)

    async def auth_callback(self, request: Request) -> Response:
        """Where the provider sends the browser back: Entra ID with a POST (response_mode=form_post,
        RFC 9700 4.3.1: the code stays out of browser history and logs), Slack with a GET (its only
        response mode is `query`). The one-time `state` protects it, not a CSRF token."""
        if self.oidc is None:
            return PlainTextResponse("Sign-in with an identity provider is not configured for this console.",
                                     status_code=404)
        from bot.graph.directory import DirectoryError
        from bot.store.repos import SqlSharedState

        if request.method == "POST":
            try:
                params = await read_form(request)
            except FormError as exc:
                return PlainTextResponse(str(exc), status_code=400)
        else:
            params = {k: v for k, v in request.query_params.items()}
        state = params.get("state", "")
        async with self.app.sessions() as session, session.begin():
            shared = SqlSharedState(session, clock=lambda: self.app.clock().timestamp())
            flow = await shared.get(FLOW_KEY + _digest(state)) if state else None
            if flow is not None:
                await shared.delete(FLOW_KEY + _digest(state))  # one use only
        if flow is None or flow.pop("console_method", self.oidc.method) != self.oidc.method:
            return _signin_error("That sign-in link has expired or was already used; please sign in again.")
        if "error" in params:
            log.warning("console sign-in (%s) did not complete: %s", self.oidc.method, params["error"][:60])
            return _signin_error(f"{self.oidc.provider} sign-in did not complete ({params['error'][:60]}).")
        next_path = str(flow.pop("console_next", "/console/"))
        try:
            user = await self.oidc.finish(flow, params)
            person = await self.app.resolver.resolve(user)
        except SignInError as exc:
            return _signin_error(str(exc))
        except DirectoryError:
            return _signin_error("The directory is unreachable right now; try again in a minute.")
        if person is None or not person.enabled:
            log.warning("console sign-in (%s) refused: not in the directory or disabled", self.oidc.method)
            return _signin_error(f"Your {self.oidc.provider} account is not in the help desk's directory, or it "
                                 "is disabled.")
        return self._signed_in(request, person.email, self.oidc.method, next_path)

    async def signout(self, request: Request) -> Response:
        found = await self.change(request, need="any")
        if isinstance(found, Response) and self.codec.read(request.cookies.get(SESSION_COOKIE)) is not None:
            return found  # a signed-in browser signs out only with its CSRF token
        response = RedirectResponse("/console/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    # ----- overview -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        from zoneinfo import ZoneInfo

        from bot.tickets.report import build_report

        now = self.app.clock()
        local = now.astimezone(ZoneInfo(self.settings.app.timezone))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        today = await build_report(self.app.sessions, self.settings, since=now - midnight, now=now)
        service = self.app.services["tickets"]

        async def work(uow: Any) -> Any:
            breaching = await service.search(uow, viewer.person, status="breaching", limit=50)
            outages = await self.app.services["outages"].current(uow.session)
            return breaching, [self.app.services["outages"].context(i, now) for i in outages]

        breaching, outages = await self._uow_run(viewer, work)
        return self.page("overview.html", request, viewer, today=today, breaching=breaching, outages=outages)

    # ----- queue and tickets ----------------------------------------------------------------

    def _filters(self, request: Request) -> dict[str, str]:
        q = request.query_params
        status = q.get("status", "open")
        return {"status": status if status in STATUS_FILTERS else "open",
                "category": q.get("category", "")[:64], "priority": q.get("priority", "")[:8],
                "assignee": q.get("assignee", "")[:320]}

    async def _rows(self, viewer: Viewer, filters: dict[str, str]) -> list[Any]:
        service = self.app.services["tickets"]
        return await self._uow_run(viewer, lambda uow: service.search(uow, viewer.person, **filters))  # type: ignore[no-any-return]

    async def queue(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        filters = self._filters(request)
        rows = await self._rows(viewer, filters)
        # Ticket categories are data (tickets.categories in the settings), not a list in code.
        return self.page("queue.html", request, viewer, rows=rows, filters=filters, statuses=STATUS_FILTERS,
                         categories=sorted(self.app.settings.tickets.categories), priorities=PRIORITIES,
                         technicians=self.app.services["tickets"].technician_emails(),
                         query=urlencode(filters))

    async def queue_rows(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        filters = self._filters(request)
        rows = await self._rows(viewer, filters)
        return self.fragment("_queue_rows.html", rows=rows, viewer=viewer, csrf=viewer.session.csrf,
                             query=urlencode(filters))

    async def ticket(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        from bot.tickets.model import TicketError

        ref = request.path_params["ref"]
        service = self.app.services["tickets"]

        async def work(uow: Any) -> Any:
            return await service.show(uow, viewer.person, ref), await service.history(uow, viewer.person, ref)

        try:
            view, history = await self._uow_run(viewer, work)
        except TicketError as exc:
            return self.page("message.html", request, viewer, status=404, title="Ticket not found",
                             message=str(exc))
        return self.page("ticket.html", request, viewer, t=view, history=history,
                         technicians=service.technician_emails(), flash=request.query_params.get("done", "")[:200])

    async def ticket_action(self, request: Request) -> Response:
        found = await self.change(request)
        if isinstance(found, Response):
            return found
        viewer, form = found
        from bot.tickets.handler import atomic
        from bot.tickets.model import HeldByOther, TicketError

        ref, action = request.path_params["ref"], request.path_params["action"]
        service = self.app.services["tickets"]
        text = form.get("text", "")
        operations: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "claim": lambda uow: service.claim(uow, viewer.person, ref),
            "assign": lambda uow: service.assign(uow, viewer.person, ref, form.get("to", "")),
            "resolve": lambda uow: service.resolve(uow, viewer.person, ref, text),
            "reply": lambda uow: service.reply_to_requester(uow, viewer.person, ref, text),
            "note": lambda uow: service.note(uow, viewer.person, ref, text),
            "reopen": lambda uow: service.reopen(uow, viewer.person, ref, text),
        }
        operation = operations.get(action)
        if operation is None:
            return PlainTextResponse("unknown action", status_code=404)
        failed: TicketError | None = None

        async def work(uow: Any) -> Any:
            nonlocal failed
            try:
                async with atomic(uow):
                    return await operation(uow)
            except TicketError as exc:
                uow.emit("ticket_refused", subject=exc.ref, id=exc.ref, reason=exc.kind, op=f"console:{action}")
                failed = exc
                return None

        outcome = await self._uow_run(viewer, work)
        if isinstance(failed, HeldByOther):
            message = f"{failed.ref} is already held by {failed.holder_name}."
        elif failed is not None:
            message = f"Not done: {failed}."
        else:
            message = _done_message(action, outcome)
        back = form.get("back", "")
        if request.headers.get("hx-request") and back == "queue":
            filters = self._filters(request)  # the queue's filters ride along in the query string
            rows = await self._rows(viewer, filters)
            return self.fragment("_queue_rows.html", rows=rows, viewer=viewer, csrf=viewer.session.csrf,
                                 flash=message, query=urlencode(filters))
        return RedirectResponse(f"/console/tickets/{quote(ref)}?" + urlencode({"done": message}), status_code=303)

    # ----- outages --------------------------------------------------------------------------

    async def outages(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        service = self.app.services["outages"]
        now = self.app.clock()

        async def work(uow: Any) -> Any:
            found = []
            for incident in await service.current(uow.session):
                found.append((service.context(incident, now), await service.report(uow.session, incident.id)))
            return found

        current = await self._uow_run(viewer, work)
        return self.page("outages.html", request, viewer, current=current,
                         flash=request.query_params.get("done", "")[:300],
                         error=request.query_params.get("error", "")[:300])

    async def outage_progress(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        from bot.outages.model import OutageError

        service = self.app.services["outages"]
        try:
            report = await self._uow_run(viewer, lambda uow: service.report(uow.session,
                                                                            int(request.path_params["id"])))
        except OutageError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return self.fragment("_outage_progress.html", r=report)

    async def outage_change(self, request: Request) -> Response:
        found = await self.change(request, need="admin")
        if isinstance(found, Response):
            return found
        viewer, form = found
        from bot.outages.commands import changes_from, draft_from
        from bot.outages.model import OutageError

        service = self.app.services["outages"]
        action = request.path_params.get("action", "post")
        options = {k: v.strip() for k, v in form.items() if k not in ("csrf",) and v.strip()}
        if form.get("everyone") == "on":
            options["everyone"] = "true"
        email = viewer.person.email

        async def work(uow: Any) -> str:
            if action == "post":
                draft = draft_from(options, now=uow.now, tz=service.tz.key, default_platform=service.dm_platform)
                result = await service.post(uow, draft, actor=email)
                return f"Notice #{result.incident.id} posted; {result.edits} copies are being delivered."
            incident = int(request.path_params["id"])
            if action == "update":
                changes = changes_from({k: v for k, v in options.items() if k != "everyone"}, now=uow.now,
                                       tz=service.tz.key)
                result = await service.update(uow, incident, changes, actor=email)
                return f"Notice #{incident} updated; {result.edits} copies are being edited."
            if action == "resolve":
                result = await service.resolve(uow, incident, actor=email, note=options.get("note", ""))
                return f"Notice #{incident} resolved; {result.edits} copies edited, {result.notified} people told."
            if action == "recall":
                result = await service.recall(uow, incident, actor=email)
                return f"Notice #{incident} recalled; {result.cancelled} undelivered copies cancelled, " \
                       f"{result.deleted} copies being removed."
            raise OutageError("invalid", "unknown action")

        try:
            message = await self._uow_run(viewer, work)
        except (OutageError, ValueError) as exc:
            return RedirectResponse("/console/outages?" + urlencode({"error": f"Not done: {exc}"}), status_code=303)
        return RedirectResponse("/console/outages?" + urlencode({"done": message}), status_code=303)

    # ----- reports --------------------------------------------------------------------------

    async def _report(self, request: Request) -> tuple[str, dict[str, Any] | None, str]:
        from bot.tickets.report import ReportError, build_report, parse_since

        since = request.query_params.get("since", "30d")[:16]
        try:
            window = parse_since(since)
        except ReportError as exc:
            return since, None, str(exc).replace("--since expects", "The period is")
        return since, await build_report(self.app.sessions, self.settings, since=window, now=self.app.clock()), ""

    async def reports(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        since, data, error = await self._report(request)
        return self.page("reports.html", request, viewer, since=since, data=data, error=error,
                         status=400 if error else 200)

    async def reports_csv(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        from bot.tickets.report import format_report

        since, data, error = await self._report(request)
        if data is None:
            return PlainTextResponse(error, status_code=400)
        return Response(format_report(data, "csv"), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="helpdesk-report-{since}.csv"'})

    # ----- knowledge and flows --------------------------------------------------------------

    async def knowledge(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        from bot.kb import feedback
        from bot.kb.loader import load_dir

        since = self.app.clock() - timedelta(days=90)
        kb = self.app.kb

        async def work(uow: Any) -> Any:
            return (await feedback.gaps(uow.session, since=since, limit=25, kb=kb),
                    await feedback.stats(uow.session, since=since))

        gaps, stats = await self._uow_run(viewer, work)
        loaded = load_dir(self.settings.kb_dir)
        return self.page("knowledge.html", request, viewer, gaps=gaps, stats=stats, problems=loaded.problems,
                         articles=len(loaded.articles))

    async def flows(self, request: Request, *, transcript: str = EXAMPLE_TRANSCRIPT,
                    events: list[dict[str, Any]] | None = None, error: str = "", status: int = 200) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        flows = self.app.flows
        return self.page("flows.html", request, viewer, errors=[str(e) for e in flows.errors],
                         flows=sorted(flows.flows.values(), key=lambda f: f.id), transcript=transcript,
                         events=events, run_error=error, status=status)

    async def try_transcript(self, request: Request) -> Response:
        """Run a transcript (docs/simulate.md) as `helpdesk simulate` does: a fresh temporary database,
        the demo directory and the console only, whatever this deployment uses, so nothing real is touched."""
        found = await self.change(request, need="admin")
        if isinstance(found, Response):
            return found
        _, form = found
        import asyncio

        import yaml

        text = form.get("transcript", "")[:MAX_TRANSCRIPT]
        try:
            if self.transcripts is None:
                raise TranscriptRefused("transcripts cannot be tried in this console; use `helpdesk simulate`")
            doc = yaml.safe_load(text)
            if not isinstance(doc, dict):
                raise TranscriptRefused("a transcript is a mapping with `turns:` (see the example)")
            if len(doc.get("turns") or []) > 50:
                raise TranscriptRefused("at most 50 turns in the browser; use `helpdesk simulate` for longer ones")
            async with asyncio.timeout(60):
                events = await self.transcripts(doc, _sandboxed(self.settings))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            return await self.flows(request, transcript=text, error=f"Not valid YAML{where}: "
                                    f"{getattr(exc, 'problem', exc)}", status=400)
        except TranscriptRefused as exc:
            return await self.flows(request, transcript=text, error=str(exc), status=400)
        except TimeoutError:
            return await self.flows(request, transcript=text, error="The transcript took over a minute.",
                                    status=400)
        return await self.flows(request, transcript=text, events=events)

    # ----- assembly -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        inner: list[BaseRoute] = [
            Route("/", self.overview, methods=["GET"]),
            Route("/signin", self.signin_page, methods=["GET"]),
            Route("/signin/demo", self.signin_demo, methods=["POST"]),
            Route("/auth/entra", self.signin_entra, methods=["GET"]),
            Route("/auth/slack", self.signin_slack, methods=["GET"]),
            Route("/auth/callback", self.auth_callback, methods=["GET", "POST"]),
            Route("/signout", self.signout, methods=["POST"]),
            Route("/queue", self.queue, methods=["GET"]),
            Route("/queue/rows", self.queue_rows, methods=["GET"]),
            Route("/tickets/{ref}", self.ticket, methods=["GET"]),
            Route("/tickets/{ref}/{action}", self.ticket_action, methods=["POST"]),
            Route("/outages", self.outages, methods=["GET"]),
            Route("/outages", self.outage_change, methods=["POST"]),
            Route("/outages/{id:int}/progress", self.outage_progress, methods=["GET"]),
            Route("/outages/{id:int}/{action}", self.outage_change, methods=["POST"]),
            Route("/reports", self.reports, methods=["GET"]),
            Route("/reports.csv", self.reports_csv, methods=["GET"]),
            Route("/knowledge", self.knowledge, methods=["GET"]),
            Route("/flows", self.flows, methods=["GET"]),
            Route("/flows/try", self.try_transcript, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="console-static"),
        ]
        return [Route("/console", lambda r: RedirectResponse("/console/", status_code=307)),
                Mount("/console", routes=inner, middleware=[Middleware(SecurityHeaders)])]


def _sandboxed(settings: Any) -> Any:
    """The settings a browser-run transcript uses: the demo directory, no Slack or Teams, dry-run actions."""
    return settings.model_copy(update={
        "directory": settings.directory.model_copy(update={"backend": "demo"}),
        "slack": settings.slack.model_copy(update={"enabled": False}),
        "teams": settings.teams.model_copy(update={"enabled": False}),
        "actions": settings.actions.model_copy(update={"dry_run": True}),
    })


def _signin_error(message: str) -> Response:
    return RedirectResponse("/console/signin?" + urlencode({"error": message}), status_code=303)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _safe_next(value: str | None) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


def _done_message(action: str, outcome: Any) -> str:
    if outcome is None:
        return "Done."
    ref = outcome.ticket.ref
    return {
        "claimed": f"You claimed {ref}.", "already_yours": f"{ref} is already yours.",
        "assigned": f"{ref} assigned to {outcome.extra.get('to_name', '')}.",
        "resolved": f"{ref} resolved; the requester was asked to confirm.",
        "relayed": f"Sent to {outcome.extra.get('to_name', 'the requester')} on {ref}.",
        "noted": f"Internal note added to {ref} (not sent to the requester).",
        "reopened": f"{ref} reopened.",
    }.get(outcome.action, f"{ref}: {outcome.action}.")


class ConsoleMount:
    """`helpdesk serve` mount (bot/channels/serve.py): the console's routes; it sends nothing itself."""

    name = "console"

    def __init__(self, app: Any, console: Console | None = None) -> None:
        self.console = console or Console(app)

    def routes(self) -> list[BaseRoute]:
        return self.console.routes()

    def senders(self) -> dict[str, Any]:
        return {}

    async def start(self) -> None:
        for problem in self.console.problems:
            log.warning("%s", problem)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.console.entra is not None:
                self.console.entra.close()
            if self.console.slack is not None:
                await self.console.slack.aclose()

