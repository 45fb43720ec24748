"""Typed settings: `config/helpdesk.yaml`, overridden by `HELPDESK_<SECTION>__<KEY>` env vars.

`HELPDESK_CONFIG` names another YAML file. Secrets (`SecretStr` fields) are accepted only from the
environment: a secret written in a YAML file stops start-up. Relative paths are resolved against
the project root (the folder holding `config/`), so the bot behaves the same from any directory.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "helpdesk.yaml"


class SettingsError(Exception):
    """Invalid settings, with the file, key and what was expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppSettings(Section):
    name: str = "Help Desk"
    data_dir: Path = Path("data")
    timezone: str = "UTC"
    # Where people are pointed for things that are not IT (out_of_scope flow).
    hr_contact: str = "the HR portal"
    facilities_contact: str = "the facilities desk"


class DatabaseSettings(Section):
    # Empty means a SQLite file `helpdesk.db` in app.data_dir.
    url: str = ""
    echo: bool = False
    pool_size: int = Field(default=10, ge=1)
    # `serve` waits for an unreachable database this many times (1, 2, 4... s, at most 30 s apart).
    connect_retries: int = Field(default=5, ge=0)


class LogSettings(Section):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class DirectorySettings(Section):
    backend: Literal["demo", "graph"] = "demo"
    demo_file: Path = Path("config/demo_directory.yaml")
    # The demo organisation's settings (its technicians, admins, protected accounts, allow-list,
    # contacts, holidays), laid over this file only while the backend is demo, so a Graph deploy
    # never inherits demo people. A key set (non-empty) in this file or the environment wins.
    demo_settings: Path = Path("config/demo.yaml")
    # `serve` refuses real Slack/Teams with the demo directory (it answers every real person
    # "I couldn't find your account") unless this is true: a test workspace only.
    allow_demo: bool = False
    cache_seconds: int = Field(default=600, ge=0)


class GraphSettings(Section):
    tenant_id: str = ""
    client_id: str = ""
    client_secret: SecretStr | None = None
    certificate_path: Path | None = None
    certificate_thumbprint: str = ""
    authority_host: str = "https://login.microsoftonline.com"
    base_url: str = "https://graph.microsoft.com/v1.0"
    timeout_seconds: float = Field(default=10.0, gt=0)
    retry_budget_seconds: float = Field(default=30.0, ge=0)
    certificate_passphrase: SecretStr | None = None
    # Mailbox that sends identity-verification codes (Mail.Send, scoped by an access policy).
    mail_sender: str = ""
    # The mailbox usage report is tenant-wide; it is fetched at most this often.
    report_cache_seconds: int = Field(default=3600, ge=0)


Verification = Literal["auto", "none", "email_code", "technician_approval"]


class ActionRule(Section):
    """Per-action overrides; anything unset falls back to the `actions:` defaults."""

    enabled: bool = True
    # Directory group names or ids whose members may run it; empty: everyone.
    allowed_groups: list[str] = Field(default_factory=list)
    verification: Verification | None = None
    rate_limit_per_hour: int | None = Field(default=None, ge=0)


class ActionPolicySettings(Section):
    dry_run: bool = False
    # auto: none with the demo directory, email_code with Graph. `none` is refused with Graph.
    verification: Verification = "auto"
    sensitive: list[str] = Field(
        default_factory=lambda: ["reset_password", "mfa_reset", "revoke_sessions"]
    )
    rate_limit_per_hour: int = Field(default=5, ge=0)
    protected_accounts: list[str] = Field(default_factory=list)
    protected_groups: list[str] = Field(default_factory=list)
    protect_directory_roles: bool = True
    rules: dict[str, ActionRule] = Field(default_factory=dict)
    code_ttl_minutes: int = Field(default=10, ge=1)
    code_max_attempts: int = Field(default=3, ge=1)
    verified_minutes: int = Field(default=15, ge=1)
    group_access_allowlist: list[str] = Field(default_factory=list)
    # Group name or id -> approver emails; a group not listed is approved by its owners.
    group_access_approvers: dict[str, list[str]] = Field(default_factory=dict)
    request_expiry_hours: int = Field(default=72, ge=1)
    tap_lifetime_minutes: int = Field(default=60, ge=10, le=43200)
    tap_usable_once: bool = True
    allow_mfa_method_removal: bool = True
    password_length: int = Field(default=16, ge=12, le=256)
    storage_warn_percent: int = Field(default=90, ge=1, le=100)


class SlackSettings(Section):
    enabled: bool = False
    mode: Literal["http", "socket"] = "http"
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    api_url: str = "https://slack.com/api/"
    queue_channel: str = ""
    # Outgoing pacing (Slack: ~1 message/s per channel, short bursts; a workspace-wide cap on top).
    post_rate_per_channel: float = Field(default=1.0, gt=0)
    post_burst_per_channel: int = Field(default=3, ge=1)
    rate_per_minute_global: float = Field(default=1200.0, gt=0)
    api_timeout_seconds: float = Field(default=10.0, gt=0)


class TeamsSettings(Section):
    enabled: bool = False
    app_id: str = ""
    app_password: SecretStr | None = None
    # Instead of app_password: a PFX (PKCS#12) file with the app registration's certificate and key.
    certificate_path: Path | None = None
    tenant_id: str = ""
    # Development only: accept unauthenticated requests. Refused when app_id is set.
    allow_anonymous: bool = False
    # Where proactive messages go for people and tenants the bot has not heard from yet.
    service_url: str = "https://smba.trafficmanager.net/teams/"
    # Technician queue: the channel conversation id (19:...@thread.tacv2) ticket cards are posted to.
    queue_channel: str = ""
    # Pacing below Teams' per-bot limits (learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit):
    # "count/seconds" windows per conversation, and one overall rate for the app.
    conversation_windows: list[str] = Field(default_factory=lambda: ["7/1", "8/2", "60/30", "1800/3600"])
    app_messages_per_second: float = Field(default=30.0, gt=0)
    # A turn still running after this long gets a "working on it" message (Teams' own deadline is ~15 s).
    interim_after_seconds: float = Field(default=4.0, gt=0)
    # Name and descriptions for the app package (`helpdesk teams package`).
    package_name: str = "Help Desk"
    package_version: str = "1.0.0"
    developer_name: str = "IT Help Desk"
    website_url: str = "https://example.com/helpdesk"
    # Cloud endpoints (public-cloud defaults; docs/teams.md lists GCC High, DoD and 21Vianet values).
    # Incoming: Bot Connector tokens (issuer, OpenID metadata with the signing keys and their endorsements).
    connector_issuer: str = "https://api.botframework.com"
    openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    # Incoming: Entra-issued tokens (Bot Framework Emulator / the bot's own app only).
    entra_openid_metadata_url: str = (
        "https://login.microsoftonline.com/botframework.com/v2.0/.well-known/openid-configuration")
    entra_issuers: list[str] = Field(default_factory=lambda: [
        "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/",
        "https://login.microsoftonline.com/d6d49420-f39b-4df7-a1dc-d59a935871db/v2.0",
        "https://sts.windows.net/f8cdef31-a31e-4b4a-93e4-5f571e91255a/",
        "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a/v2.0",
    ])
    # Also accept Entra tokens from our own tenant's issuers (sts.windows.net/<tenant>/, <login host>/<tenant>/v2.0).
    entra_tenant_issuers: bool = True
    # Outgoing: where the bot's connector token is obtained (authority; empty = <login host>/<tenant_id
    # or botframework.com>) and for what scope.
    oauth_login_host: str = "https://login.microsoftonline.com"
    oauth_authority: str = ""
    oauth_scope: str = "https://api.botframework.com/.default"
    # Outgoing: hosts the connector token may be sent to ("*.example.com" matches subdomains). A
    # serviceUrl must also have been vouched for by a valid token (or be teams.service_url).
    service_url_hosts: list[str] = Field(default_factory=lambda: [
        "smba.trafficmanager.net", "*.botframework.com", "smba.infra.gcc.teams.microsoft.com"])
    # Development only: allow http:// service URLs and OpenID metadata (never with real Microsoft).
    allow_http: bool = False
    # Signing keys: refreshed after this long, or on an unknown key id (at most once per refresh_min).
    openid_cache_hours: float = Field(default=24.0, gt=0)
    openid_refresh_min_seconds: float = Field(default=300.0, ge=0)
    # Reaching people who never wrote to the bot: install the app for them through Graph
    # (TeamsAppInstallation.ReadWriteSelfForUser.All) with this Teams app catalog id, then message them.
    proactive_install: bool = False
    catalog_app_id: str = ""


class FlowSettings(Section):
    dir: Path = Path("flows")
    idle_timeout_minutes: int = Field(default=60, ge=1)
    # A conversation idle longer than this is forgotten entirely (no "pick up where you left off").
    resume_window_hours: int = Field(default=24, ge=1)


class TriageSettings(Section):
    # Confidence at or above which a flow starts without asking.
    start_threshold: float = Field(default=0.55, ge=0, le=1)
    # Below this nothing fits: the knowledge base, then a person.
    min_confidence: float = Field(default=0.30, ge=0, le=1)
    # When the runner-up is within this margin of the best, offer "Did you mean".
    ambiguity_margin: float = Field(default=0.08, ge=0, le=1)
    # Under min_confidence (or when "not IT" wins), IT labels at least this sure are still offered as
    # "Did you mean" when the message names something IT ("I cant log in", "my computer is acting weird").
    suggest_floor: float = Field(default=0.10, ge=0, le=1)


class KbSettings(Section):
    dir: Path = Path("kb_articles")
    reload_seconds: float = Field(default=5.0, ge=0)


class RoleSettings(Section):
    technicians: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)
    technician_groups: list[str] = Field(default_factory=list)
    admin_groups: list[str] = Field(default_factory=list)


class OutboxSettings(Section):
    in_process: bool = True
    poll_seconds: float = Field(default=0.5, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)
    # Pacing (per worker process): messages a second per lane (one channel or one person's DM) and
    # per platform overall. A platform not listed, or a rate of 0, is not paced.
    lane_rate_per_second: dict[str, float] = Field(default_factory=lambda: {"slack": 1.0, "teams": 1.0})
    lane_burst: float = Field(default=3.0, ge=1)
    global_rate_per_second: dict[str, float] = Field(default_factory=lambda: {"slack": 20.0, "teams": 40.0})
    global_burst: float = Field(default=10.0, ge=1)
    concurrency: int = Field(default=16, ge=1)


class InboxSettings(Section):
    """Acknowledged deliveries waiting to be handled (bot/store/inbox.py)."""

    poll_seconds: float = Field(default=1.0, gt=0)
    # A replica that stops answering loses its rows to the others after this long.
    lease_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    concurrency: int = Field(default=8, ge=1)  # turns in flight per process (they share one event loop)
    # On SIGTERM: how long turns in flight may finish; the rest stay in the inbox.
    drain_seconds: float = Field(default=8.0, ge=0)


class OutageSettings(Section):
    # How closely a message must name an active incident's service, alias or keyword (0-100).
    match_threshold: float = Field(default=90.0, ge=0, le=100)
    # Spike detection: this many similar new conversations or tickets within the window alert
    # the technicians ("Declare an outage?"), at most once per window and label.
    spike_window_minutes: int = Field(default=15, ge=1)
    spike_count: int = Field(default=5, ge=2)
    spike_ignore: list[str] = Field(default_factory=lambda: [
        "smalltalk", "out_of_scope", "human", "ticket_status", "outage_check"])
    maintenance_reminder_minutes: int = Field(default=60, ge=0)
    # Announcement channels per platform (channel ids), used when a notice names none.
    announcement_channels: dict[str, list[str]] = Field(default_factory=dict)
    # Default audience of a notice: channels | everyone | none (direct messages to everyone in the directory).
    default_audience: Literal["channels", "everyone", "none"] = "channels"
    # Platform for direct messages: auto = slack if enabled, else teams, else console.
    dm_platform: Literal["auto", "slack", "teams", "console"] = "auto"
    # Where spike alerts go: the technicians' queue channel per platform; else technicians by DM.
    alert_channels: dict[str, str] = Field(default_factory=dict)
    # Refresh the admin's live delivery report at most this often.
    report_every_seconds: int = Field(default=15, ge=1)


class WebSettings(Section):
    """The web console under /console/ of `helpdesk serve` (docs/console.md)."""

    enabled: bool = True
    # auto: the local demo sign-in with the demo directory; with a real directory, Sign in with Slack
    # when Slack is the platform (slack.enabled, teams not) and slack_client_id is set, else Microsoft
    # Entra ID. demo is refused whenever a real directory (graph) is configured.
    sign_in: Literal["auto", "demo", "entra", "slack"] = "auto"
    # Signs session cookies; from HELPDESK_WEB__SESSION_SECRET. Unset: a random one per process
    # (the demo; everyone signs in again after a restart, and replicas would not share it).
    session_secret: SecretStr | None = None
    session_minutes: int = Field(default=480, ge=5, le=10080)
    # Entra ID app registration for sign-in (defaults: graph.tenant_id / graph.client_id /
    # HELPDESK_GRAPH__CLIENT_SECRET); the redirect URI is <public_url>/console/auth/callback.
    entra_client_id: str = ""
    entra_client_secret: SecretStr | None = None
    # Sign in with Slack (OpenID Connect) with the Slack app's client id; the secret from
    # HELPDESK_WEB__SLACK_CLIENT_SECRET only; only people of this workspace (team id, T...) are accepted.
    # The person is the directory person of the Slack user (users.info with slack.bot_token, as for messages).
    slack_client_id: str = ""
    slack_client_secret: SecretStr | None = None
    slack_team_id: str = ""
    # The console's address as people's browsers see it (https://helpdesk.example.com); empty: from the request.
    public_url: str = ""


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    # Largest request body any HTTP route reads; bigger ones get 413 before they are read.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


# ----- tickets (escalation queue, SLA clocks) ------------------------------------------------------


class SlaTarget(Section):
    """Targets in minutes of the priority's calendar (business hours, or round the clock)."""

    first_response_minutes: int = Field(ge=1)
    resolution_minutes: int = Field(ge=1)
    calendar: Literal["business", "always"] = "business"


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _workweek() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri"]


class BusinessHoursSettings(Section):
    days: list[Weekday] = Field(default_factory=_workweek)
    start: str = Field(default="09:00", pattern=r"^\d{2}:\d{2}$")
    end: str = Field(default="17:00", pattern=r"^\d{2}:\d{2}$")


def _default_matrix() -> dict[str, dict[str, str]]:
    return {"high": {"high": "P1", "medium": "P2", "low": "P3"},
            "medium": {"high": "P2", "medium": "P3", "low": "P4"},
            "low": {"high": "P3", "medium": "P4", "low": "P4"}}


def _default_sla() -> dict[str, SlaTarget]:
    return {"P1": SlaTarget(first_response_minutes=30, resolution_minutes=240, calendar="always"),
            "P2": SlaTarget(first_response_minutes=60, resolution_minutes=480),
            "P3": SlaTarget(first_response_minutes=240, resolution_minutes=1440),
            "P4": SlaTarget(first_response_minutes=480, resolution_minutes=2400)}


DEFAULT_CATEGORIES = (
    "password_reset", "account_locked", "mfa", "vpn", "network", "printer", "email", "software_request",
    "access_request", "hardware", "computer_problem", "meetings", "phone", "onboarding", "security",
    "ticket_status", "outage_check", "human", "smalltalk", "out_of_scope",
)


class TicketSettings(Section):
    # Ticket categories a flow (its `category`, an escalate step's `category`) may use; data, not code.
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES), min_length=1)
    id_prefix: str = "HD-"
    first_number: int = Field(default=1001, ge=1)
    # impact -> urgency -> priority (ITIL-style matrix); unknown values count as "low".
    priority_matrix: dict[str, dict[str, str]] = Field(default_factory=_default_matrix)
    sla: dict[str, SlaTarget] = Field(default_factory=_default_sla)
    business_hours: BusinessHoursSettings = Field(default_factory=BusinessHoursSettings)
    # Public holidays from the `holidays` package: ISO country code ("DE", "US", "GB") and optional
    # subdivision ("BY", "CA", "SCT"); `holidays` adds local days (office closures) on top.
    holiday_country: str = ""
    holiday_subdivision: str = ""
    holidays: list[date] = Field(default_factory=list)
    # category -> platform -> queue target (Slack channel id, Teams conversation id; on the console
    # "technicians" means every technician gets the post in their own conversation). `default` is
    # used for categories without an entry.
    queues: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"default": {"slack": "", "teams": "", "console": "technicians"}})
    # Mention text per platform put in breach alerts (Slack: "<!subteam^S0123>").
    oncall_mention: dict[str, str] = Field(default_factory=lambda: {"console": "@on-call", "slack": "", "teams": ""})
    reminder_fraction: float = Field(default=0.75, gt=0, lt=1)
    claim_release_minutes: int = Field(default=120, ge=1)
    auto_close_days: int = Field(default=5, ge=1)
    relay_window_hours: int = Field(default=24, ge=1)
    transcript_lines: int = Field(default=8, ge=0)

    @model_validator(mode="after")
    def _known_holiday_calendar(self) -> TicketSettings:
        if self.holiday_country:
            import holidays as holidays_package

            try:
                holidays_package.country_holidays(self.holiday_country, subdiv=self.holiday_subdivision or None)
            except NotImplementedError as exc:
                raise ValueError(f"holiday_country/holiday_subdivision: {exc} (see the `holidays` package's "
                                 "list of countries and subdivisions)") from None
        elif self.holiday_subdivision:
            raise ValueError("holiday_subdivision needs holiday_country")
        return self

    def priority(self, impact: str, urgency: str) -> str:
        row = self.priority_matrix.get(impact) or self.priority_matrix.get("low") or {}
        return row.get(urgency) or row.get("low") or "P4"

    def target(self, priority: str) -> SlaTarget:
        return self.sla.get(priority) or self.sla.get("P4") or _default_sla()["P4"]


class RetentionSettings(Section):
    # Message text and transcripts older than this many days are purged (audit events stay, their
    # text fields scrubbed); 0 keeps everything. `helpdesk purge` runs it now; serve runs it on a schedule.
    message_days: int = Field(default=90, ge=0)
    purge_every_hours: float = Field(default=24.0, gt=0)


class MetricsSettings(Section):
    # GET /metrics (Prometheus text format) on the serve port.
    enabled: bool = True


class ItsmSettings(Section):
    """The help desk's own ticket system (docs/itsm.md). `none` keeps the bot's queue only."""

    system: Literal["none", "jira", "servicenow", "webhook"] = "none"
    # Jira: https://<site>.atlassian.net; ServiceNow: https://<instance>.service-now.com;
    # webhook: the URL that receives signed ticket events.
    base_url: str = ""
    # Jira: the integration account's email (API token in HELPDESK_ITSM__TOKEN);
    # ServiceNow: the integration user's user_name (password in HELPDESK_ITSM__TOKEN).
    user: str = ""
    token: SecretStr | None = None
    # Authenticates inbound webhooks (Jira: the admin webhook's secret; ServiceNow: the business
    # rule's HMAC key) and signs the generic outbound webhook.
    webhook_secret: SecretStr | None = None
    # Jira Service Management: the service desk (id) and the project key it belongs to.
    service_desk_id: str = ""
    project_key: str = ""
    # category -> Jira request type id / ServiceNow assignment group (sys_id or name); `default` for the rest.
    request_types: dict[str, str] = Field(default_factory=dict)
    assignment_groups: dict[str, str] = Field(default_factory=dict)
    # ServiceNow category per bot category (defaults to the bot's category name).
    categories: dict[str, str] = Field(default_factory=dict)
    # priority (P1..P4) -> {"urgency": "1", "impact": "1"} for ServiceNow, {"priority": "High"} for Jira.
    priority_map: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Extra fields set on every new record (Jira: field id -> value; ServiceNow: column -> value).
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    # The person is found by email in the ITSM; never created unless this is true.
    create_people: bool = False
    # Jira transitions (by name) used to resolve and reopen a request.
    resolve_transition: str = "Resolve this issue"
    reopen_transition: str = "Reopen"
    # ServiceNow close code written when a ticket is resolved from chat.
    close_code: str = "Solution provided"
    # "bot": the bot's SLA clock runs as usual; "itsm": reminders and breaches are left to the ITSM.
    sla: Literal["bot", "itsm"] = "bot"
    # Changed records are polled this often (catches a lost webhook); 0 turns polling off.
    poll_seconds: int = Field(default=120, ge=0)
    # A webhook older than this (by its own timestamp) is refused as a replay.
    webhook_max_age_seconds: int = Field(default=300, ge=30)
    timeout_seconds: float = Field(default=15.0, gt=0)

    @property
    def enabled(self) -> bool:
        return self.system != "none"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HELPDESK_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    app: AppSettings = Field(default_factory=AppSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    teams: TeamsSettings = Field(default_factory=TeamsSettings)
    flows: FlowSettings = Field(default_factory=FlowSettings)
    triage: TriageSettings = Field(default_factory=TriageSettings)
    kb: KbSettings = Field(default_factory=KbSettings)
    roles: RoleSettings = Field(default_factory=RoleSettings)
    actions: ActionPolicySettings = Field(default_factory=ActionPolicySettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    outages: OutageSettings = Field(default_factory=OutageSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    itsm: ItsmSettings = Field(default_factory=ItsmSettings)

    # Not a setting: which file the values came from, for messages.
    config_file: Path | None = Field(default=None, exclude=True)

    @field_validator("config_file", mode="before")
    @classmethod
    def _keep_path(cls, value: Any) -> Any:
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first (wins), then what the caller passed (the YAML file's contents).
        return (_HelpdeskEnv(settings_cls), init_settings)

    # ----- derived values -------------------------------------------------------------------

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value

    @property
    def data_dir(self) -> Path:
        return self.path(self.app.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'helpdesk.db'}"

    @property
    def flows_dir(self) -> Path:
        return self.path(self.flows.dir)

    @property
    def kb_dir(self) -> Path:
        return self.path(self.kb.dir)

    @property
    def demo_directory_file(self) -> Path:
        return self.path(self.directory.demo_file)

    def masked(self) -> dict[str, Any]:
        """Effective settings with every secret replaced by a mask (for `config check`)."""
        data = self.model_dump(mode="json", exclude={"config_file"})
        for section_name, section in type(self).model_fields.items():
            annotation = section.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                continue
            for key, info in annotation.model_fields.items():
                if _is_secret(info.annotation):
                    value = getattr(getattr(self, section_name), key)
                    data[section_name][key] = "********" if value else None
        data["database"]["url"] = mask_url(self.database_url)
        return data


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


_URL_QUERY_SECRET = re.compile(r"(?i)([?&;](?:password|passwd|pwd|sslpassword|secret|token)=)[^&;#]*")


def mask_url(url: str) -> str:
    """Hide a password embedded in a database URL, in the user info or in the query string."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    path, sep, query = rest.partition("?")
    if "@" in path:
        creds, host = path.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        path = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    if sep:
        query = _URL_QUERY_SECRET.sub(lambda m: m.group(1) + "***", "?" + query)[1:]
    return f"{scheme}://{path}{sep}{query}"


# ----- the environment ------------------------------------------------------------------------

ENV_PREFIX = "HELPDESK_"
# HELPDESK_* variables that are not settings (the file to read, test-only switches).
NOT_SETTINGS = {"CONFIG", "EVALDATA"}
NOT_SETTINGS_PREFIXES = ("TEST_",)


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _env_names(model: type[BaseModel], prefix: str) -> list[str]:
    names: list[str] = []
    for key, info in model.model_fields.items():
        if key == "config_file":
            continue
        name = f"{prefix}{key.upper()}"
        names.append(name)
        annotation = _unwrap(info.annotation)
        if _is_model(annotation):
            names.extend(_env_names(annotation, name + "__"))
    return names


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    """One variable's text as the value its field expects: lists comma-separated or JSON, dicts
    and sections JSON, everything else as text (the model converts and checks it)."""
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, tuple, set, frozenset):
        text = raw.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SettingsError(
                    f"{name}: expected a list, comma-separated (a,b) or JSON ([\"a\", \"b\"]); "
                    f"the JSON is malformed at character {exc.pos + 1}: {exc.msg}"
                ) from None
            if not isinstance(value, list):
                raise SettingsError(f"{name}: expected a list, comma-separated (a,b) or JSON")
            return value
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict or _is_model(origin):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"{name}: expected a JSON object such as {{\"key\": \"value\"}}; "
                f"the JSON is malformed at character {exc.pos + 1}: {exc.msg}"
            ) from None
        if not isinstance(value, dict):
            raise SettingsError(f"{name}: expected a JSON object such as {{\"key\": \"value\"}}")
        return value
    return raw


def _place(name: str, parts: list[str], raw: str, model: type[BaseModel], into: dict[str, Any]) -> bool:
    """Put one variable's value at its place in `into`; False when no setting has that name."""
    key = parts[0].lower()
    info = model.model_fields.get(key)
    if info is None or key == "config_file":
        return False
    annotation = _unwrap(info.annotation)
    rest = parts[1:]
    if not rest:
        into[key] = _env_value(name, raw, annotation)
        return True
    if _is_model(annotation):
        target = into.setdefault(key, {})
        return isinstance(target, dict) and _place(name, rest, raw, annotation, target)
    if (typing.get_origin(annotation) or annotation) is dict:
        args = typing.get_args(annotation)
        value_type = _unwrap(args[1]) if len(args) == 2 else Any
        target = into.setdefault(key, {})
        if not isinstance(target, dict):
            return False
        dict_key = rest[0]  # dict keys keep their case (P1, slack)
        if len(rest) == 1:
            target[dict_key] = _env_value(name, raw, value_type)
            return True
        if isinstance(value_type, type) and issubclass(value_type, BaseModel):
            return _place(name, rest[1:], raw, value_type, target.setdefault(dict_key, {}))
        return False
    return False


def read_environment(environ: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from `HELPDESK_<SECTION>__<KEY>` variables. An unknown variable is refused like an
    unknown key in the file (with a did-you-mean); a value is never repeated in a message."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    problems: list[str] = []
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        tail = name[len(ENV_PREFIX):]
        if tail.upper() in NOT_SETTINGS or tail.upper().startswith(NOT_SETTINGS_PREFIXES):
            continue
        parts = tail.split("__")
        try:
            placed = all(parts) and _place(name, parts, raw, Settings, found)
        except SettingsError as exc:
            problems.append(str(exc))
            continue
        if not placed:
            known = _env_names(Settings, ENV_PREFIX)
            close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{name}: unknown setting{hint}; see config/helpdesk.yaml for the keys")
    if problems:
        raise SettingsError("invalid settings in the environment:\n  " + "\n  ".join(problems))
    return found


def _env_name_for(loc: list[str]) -> str | None:
    """The HELPDESK_* variable that set the value at `loc`, if one did."""
    wanted = [part.lower() for part in loc]
    for name in os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if parts == wanted[: len(parts)]:
            return name
    return None


class _HelpdeskEnv(PydanticBaseSettingsSource):
    """The environment as a settings source (see `read_environment`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_environment()


def _secret_paths() -> set[tuple[str, str]]:
    found = set()
    for section_name, section in Settings.model_fields.items():
        annotation = section.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key, info in annotation.model_fields.items():
                if _is_secret(info.annotation):
                    found.add((section_name, key))
    return found


_SECRET_WORDS = re.compile(r"(?i)secret|token|password|passwd|passphrase|credential|key|auth|cert")


def _shown_input(err: Any, loc: list[str]) -> str:
    """What was given, for a plain value under a known, non-secret key; never for an unknown key
    (a misspelt secret's value must not be printed back) or anything secret-looking."""
    value = err.get("input")
    if err.get("type") == "extra_forbidden" or not isinstance(value, str | int | float | bool):
        return ""
    if len(loc) >= 2 and (loc[0], loc[1]) in _secret_paths():
        return ""
    if any(_SECRET_WORDS.search(part) for part in loc):
        return ""
    shown = repr(value)
    return f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of `section.key` in a YAML file, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if key_node.value != section:
            continue
        if key is None or not isinstance(value_node, yaml.MappingNode):
            return int(key_node.start_mark.line) + 1
        for sub_key, _ in value_node.value:
            if sub_key.value == key:
                return int(sub_key.start_mark.line) + 1
        return int(key_node.start_mark.line) + 1
    return None


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SettingsError(f"{path}: settings file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read settings file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}, text
    if not isinstance(data, dict):
        raise SettingsError(f"{path}:1: expected a mapping of sections (app:, database:, ...)")
    return data, text


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _lay_demo_settings(data: dict[str, Any]) -> None:
    """With the demo directory, fill the keys this file leaves empty from the demo settings file
    (config/demo.yaml): demo people get their roles, and a Graph deploy gets none of them."""
    found = data.get("directory")
    directory: dict[str, Any] = found if isinstance(found, dict) else {}
    env = {k.upper(): v for k, v in os.environ.items()}
    backend = env.get("HELPDESK_DIRECTORY__BACKEND") or directory.get("backend") or "demo"
    if backend != "demo":
        return
    chosen = env.get("HELPDESK_DIRECTORY__DEMO_SETTINGS") or directory.get("demo_settings") or "config/demo.yaml"
    path = Path(chosen) if Path(chosen).is_absolute() else PROJECT_ROOT / chosen
    if not path.exists():
        return
    overlay, _ = _read_yaml(path)
    for section, values in overlay.items():
        if not isinstance(values, dict):
            continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            continue
        for key, value in values.items():
            if _empty(target.get(key)):
                target[key] = value


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from YAML and the environment, or raise SettingsError naming what is wrong."""
    chosen = config_file or os.environ.get("HELPDESK_CONFIG") or DEFAULT_CONFIG
    path = Path(chosen)
    data, text = _read_yaml(path)
    for section, key in _secret_paths():
        value = data.get(section)
        if isinstance(value, dict) and value.get(key) not in (None, ""):
            line = _line_of(text, section, key)
            env = f"HELPDESK_{section.upper()}__{key.upper()}"
            raise SettingsError(
                f"{path}:{line}: {section}.{key} is a secret and is read only from the environment; "
                f"remove it from the file and set {env}"
            )
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    _lay_demo_settings(data)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            dotted = ".".join(loc)
            line = _line_of(text, loc[0], loc[1] if len(loc) > 1 else None) if loc else None
            env_name = _env_name_for(loc)
            if env_name:
                where = f"{env_name} (environment)"
            else:
                where = f"{path}:{line}" if line else f"{path} (or HELPDESK_{'__'.join(loc).upper()})"
            problems.append(f"{where}: {dotted}: {err['msg']}{_shown_input(err, loc)}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
    settings.config_file = path
    _register_secrets(settings)
    return settings


def _register_secrets(settings: Settings) -> None:
    """Tell the log redactor the configured secrets, so none of them is logged in any form."""
    from urllib.parse import parse_qsl, urlsplit

    from bot.logs import register_secret

    for section, key in _secret_paths():
        value = getattr(getattr(settings, section), key, None)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
    url = settings.database.url
    if "://" in url:
        parts = urlsplit(url)
        register_secret(parts.password)
        for name, value in parse_qsl(parts.query):
            if _URL_QUERY_SECRET.search(f"?{name}="):
                register_secret(value)
