"""Typed settings the domain needs. Loading them (environment, TOML) is the CLI's job."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path

from helpdesk.core.rulebook import Rulebook, shipped_rulebook


class TlsMode(enum.Enum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class AuthKind(enum.Enum):
    PASSWORD = "password"
    OAUTH2 = "oauth2"  # XOAUTH2 with a bearer token


class OAuthProvider(enum.Enum):
    MICROSOFT = "microsoft"  # tokens from msal (Entra ID)
    GOOGLE = "google"
    GENERIC = "generic"  # any OAuth2 server with a token URL


class OAuthFlow(enum.Enum):
    APP = "app"  # client credentials: the app's own token (Microsoft app-only, shared mailboxes)
    DELEGATED = "delegated"  # an admin signed in once ("Connect mailbox"); a stored refresh token


class Transport(enum.Enum):
    """How a mailbox's mail is read and the helpdesk's mail sent."""

    IMAP = "imap"  # IMAP in, SMTP out
    GRAPH = "graph"  # Microsoft Graph over HTTPS: for tenants that turned IMAP and SMTP off


MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"


@dataclass(frozen=True)
class OAuthSettings:
    """Where an XOAUTH2 login's access token comes from."""

    provider: OAuthProvider
    client_id: str
    client_secret: str = field(default="", repr=False)  # kept out of logs and tracebacks
    flow: OAuthFlow = OAuthFlow.APP
    tenant: str | None = None  # Microsoft
    authority: str | None = None  # Microsoft: default MICROSOFT_AUTHORITY/tenant
    token_url: str | None = None  # generic (required), Google (default GOOGLE_TOKEN_URL)
    authorize_url: str | None = None  # delegated flow: where the admin signs in
    scopes: tuple[str, ...] = ()
    # Google app flow: a service account's JSON key, acting for `subject` (the mailbox user) by
    # domain-wide delegation; Google has no client-credentials grant.
    service_account_file: Path | None = None
    subject: str | None = None
    # Microsoft: a certificate credential (PEM certificate and its private key) instead of a secret.
    certificate_file: Path | None = None
    private_key_file: Path | None = None


@dataclass(frozen=True)
class MailboxSettings:
    """One watched IMAP mailbox."""

    name: str
    host: str
    port: int
    user: str
    password: str
    tls: TlsMode = TlsMode.NONE
    folder: str = "INBOX"
    processed_folder: str | None = "Processed"  # None: only flag processed mail
    address: str | None = None  # the help address mail to this mailbox is sent to
    auth: AuthKind = AuthKind.PASSWORD
    oauth: OAuthSettings | None = None  # set when auth is OAUTH2
    transport: Transport = Transport.IMAP  # GRAPH: host/port/tls unused, `user` is the mailbox (shared or not)
    graph_url: str = GRAPH_URL  # a national cloud's Graph, or a local stand-in in tests


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    tls: TlsMode = TlsMode.NONE
    auth: AuthKind = AuthKind.PASSWORD
    oauth: OAuthSettings | None = None  # set when auth is OAUTH2


@dataclass(frozen=True)
class BusinessHours:
    """Working time the SLA clocks count; outside it they stand still."""

    timezone: str = "UTC"
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    start: time = time(8, 0)
    end: time = time(18, 0)
    holidays: frozenset[date] = frozenset()


@dataclass(frozen=True)
class SlaTarget:
    response_minutes: int
    resolution_minutes: int


DEFAULT_SLA_TARGETS: dict[str, SlaTarget] = {
    "P1": SlaTarget(15, 4 * 60),
    "P2": SlaTarget(60, 8 * 60),
    "P3": SlaTarget(4 * 60, 24 * 60),
    "P4": SlaTarget(8 * 60, 72 * 60),
    "P5": SlaTarget(24 * 60, 120 * 60),
}


@dataclass(frozen=True)
class SlaSettings:
    targets: dict[str, SlaTarget] = field(default_factory=lambda: dict(DEFAULT_SLA_TARGETS))
    business_hours: BusinessHours | None = None  # None: the clock runs around the clock
    warn_ratio: float = 0.8
    manager: str | None = None  # address that breaches escalate to
    # Group name -> address that gets the group's escalations when a ticket has no assignee.
    group_addresses: dict[str, str] = field(default_factory=dict)


class RetentionAction(enum.Enum):
    """What happens to a closed ticket past the retention period."""

    ANONYMISE = "anonymise"  # the record stays for reports, its contents and addresses go
    DELETE = "delete"


@dataclass(frozen=True)
class AccessSettings:
    grant_days: int = 90
    expiry_warning_days: int = 14
    # Resource group -> addresses of the approvers for it; other groups go to every approver.
    approvers_by_group: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # False: approvers see in the console and API only the tickets they are asked to decide, without internal notes.
    approvers_see_all: bool = False


@dataclass(frozen=True)
class ConversationSettings:
    """Threading, agents by email and automatic-mail limits."""

    # Local-part suffix of the address for internal notes: help+comment@domain.
    comment_tag: str = "comment"
    # A reply to a ticket closed longer ago than this opens a new, linked ticket.
    closed_reopen_days: int = 7
    # Agent mail from these domains must also carry Authentication-Results dkim=pass or spf=pass.
    trusted_domains: tuple[str, ...] = ()
    # Only Authentication-Results written by this server count (None: the topmost header).
    authserv_id: str | None = None
    # Automatic mail per recipient address (acknowledgements, notifications); staff are exempt.
    auto_mail_per_hour: int = 10
    auto_mail_per_day: int = 40
    notify_agents: bool = True
    # Watchers a ticket takes from To/Cc (the rest stay recorded on the message), and so the most
    # that public mail goes to besides the requester: a mail Cc'ing thousands must not mail them all.
    max_watchers: int = 50


# Monitoring tools whose alert mail event management reads (`[events.NAME]` in the config file).
EVENT_SOURCES = ("nagios", "icinga", "zabbix", "alertmanager", "monit", "cron", "logwatch")


@dataclass(frozen=True)
class EventSource:
    """One monitoring integration: on or off, and which senders may speak for it."""

    enabled: bool = True
    sender: re.Pattern[str] | None = None  # the whole sender address must match; None: any sender


@dataclass(frozen=True)
class EventSettings:
    sources: dict[str, EventSource] = field(default_factory=dict)

    def source(self, name: str) -> EventSource:
        return self.sources.get(name, EventSource())


@dataclass(frozen=True)
class OidcSettings:
    """Console single sign-on with an OpenID Connect provider (Entra ID, Google, Keycloak, ...)."""

    issuer: str  # discovery is read from ISSUER/.well-known/openid-configuration
    client_id: str
    client_secret: str = field(default="", repr=False)  # kept out of logs and tracebacks
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    # (role, claim values that give it), strongest role first: the first role whose value a user has wins.
    roles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    roles_claim: str = "groups"  # the id_token claim (a list or one value) the roles are read from
    name: str = "single sign-on"  # shown as "Sign in with NAME"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    address: str = "help@example.org"
    secret_key: str = "change-me"
    subject_tag_prefix: str = "#"
    mailboxes: tuple[MailboxSettings, ...] = ()
    smtp: SmtpSettings | None = None
    max_message_bytes: int = 25 * 1024 * 1024
    poll_interval: float = 30.0
    lease_seconds: float = 60.0
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    web_proxies: int = 0  # trusted reverse proxies in front of the console (TLS ends there)
    # The console as users reach it, for links in mail (the portal's sign-in link); None: http://web_host:web_port.
    # Never taken from a request's Host header: a forged one would send the link elsewhere.
    web_url: str | None = None
    agent_addresses: tuple[str, ...] = field(default_factory=tuple)
    sla: SlaSettings = field(default_factory=SlaSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    catalogue_path: Path | None = None  # None: data_dir/catalogue.toml if present, else shipped
    rules_path: Path | None = None  # None: data_dir/rules.toml if present, else shipped
    priority_path: Path | None = None  # None: data_dir/priority.toml if present, else shipped
    # Rules, catalogue and matrix as read from those files once at start (helpdesk.config.load).
    rulebook: Rulebook = field(default_factory=shipped_rulebook, repr=False)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    retention_days: int | None = None  # closed tickets older than this are anonymised or deleted; None: kept
    retention_action: RetentionAction = RetentionAction.ANONYMISE
    events: EventSettings = field(default_factory=EventSettings)
    oidc: OidcSettings | None = None  # console single sign-on; None: passwords only
    local_login: bool = True  # False: console passwords are refused (sign-on only)
    search_language: str = "simple"  # PostgreSQL text search configuration of the queue search (core.search)

    @property
    def console_url(self) -> str:
        return (self.web_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def help_domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def help_local(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def comment_address(self) -> str:
        return f"{self.help_local}+{self.conversation.comment_tag}@{self.help_domain}".lower()
