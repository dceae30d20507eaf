"""Configuration: ``HELPDESK_*`` environment variables over an optional TOML file.

Every error names the setting and says what is wrong, in one line.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from helpdesk.core import configfile

# Defined in core, so that bad rules, catalogue and priority files are configuration errors too.
from helpdesk.core.configfile import ConfigError as ConfigError
from helpdesk.core.files import private_dir, write_private_once
from helpdesk.core.rulebook import load_rulebook
from helpdesk.core.settings import (
    DEFAULT_SLA_TARGETS,
    EVENT_SOURCES,
    GOOGLE_TOKEN_URL,
    GRAPH_URL,
    MICROSOFT_AUTHORITY,
    AccessSettings,
    AuthKind,
    BusinessHours,
    ConversationSettings,
    EventSettings,
    EventSource,
    MailboxSettings,
    OAuthFlow,
    OAuthProvider,
    OAuthSettings,
    OidcSettings,
    RetentionAction,
    Settings,
    SlaSettings,
    SlaTarget,
    SmtpSettings,
    TlsMode,
    Transport,
)

# The same readers the logins use, so a key file that passes here works there.
from helpdesk.mailgateway.oauth import TokenError, read_certificate, read_service_account

OAUTH_KEYS = (
    "PROVIDER", "FLOW", "CLIENT_ID", "CLIENT_SECRET", "TENANT", "AUTHORITY", "TOKEN_URL", "AUTHORIZE_URL", "SCOPES",
    "SERVICE_ACCOUNT_FILE", "CERTIFICATE_FILE", "PRIVATE_KEY_FILE",
)  # fmt: skip

# name -> (TOML key, help). The TOML file uses the same names in lower case without the prefix.
VARIABLES: dict[str, str] = {
    "HELPDESK_CONFIG": "path of a TOML file with the settings below (lower-case names, no prefix)",
    "HELPDESK_DATA_DIR": "where the SQLite database and attachments live (default ./data)",
    "HELPDESK_DATABASE_URL": "SQLAlchemy URL; default sqlite under the data dir; postgresql+psycopg://... for production",
    "HELPDESK_ADDRESS": "the help address users write to (default help@example.org)",
    "HELPDESK_SECRET_KEY": "signs reply tokens, Message-IDs and web sessions; set it in production",
    "HELPDESK_IMAP_HOST": "IMAP server; without it `helpdesk run` starts a local demo mail server",
    "HELPDESK_IMAP_PORT": "IMAP port (default 143, or 993 with ssl)",
    "HELPDESK_IMAP_USER": "IMAP login",
    "HELPDESK_IMAP_PASSWORD": "IMAP password",
    "HELPDESK_IMAP_TLS": "none | starttls | ssl (default starttls)",
    "HELPDESK_IMAP_FOLDER": "folder to watch (default INBOX)",
    "HELPDESK_IMAP_PROCESSED_FOLDER": "folder processed mail is moved to (default Processed; empty: only flag it)",
    "HELPDESK_IMAP_TRANSPORT": "imap | graph (Microsoft Graph instead of IMAP and SMTP; "
    "needs oauth2 with microsoft, no HELPDESK_IMAP_HOST)",
    "HELPDESK_GRAPH_URL": f"Microsoft Graph's address for mailboxes with transport graph (default {GRAPH_URL}; "
    "a national cloud's otherwise)",
    "HELPDESK_IMAP_AUTH": "password | oauth2 (XOAUTH2 with a token from HELPDESK_IMAP_OAUTH_*; default password)",
    "HELPDESK_IMAP_OAUTH_PROVIDER": "microsoft | google | generic",
    "HELPDESK_IMAP_OAUTH_FLOW": "app (client credentials, default) | delegated (an admin connects the mailbox in the console)",
    "HELPDESK_IMAP_OAUTH_CLIENT_ID": "the app's client id",
    "HELPDESK_IMAP_OAUTH_CLIENT_SECRET": "the app's client secret",
    "HELPDESK_IMAP_OAUTH_TENANT": "Microsoft: the tenant id or domain",
    "HELPDESK_IMAP_OAUTH_AUTHORITY": "Microsoft: authority URL (default https://login.microsoftonline.com/TENANT)",
    "HELPDESK_IMAP_OAUTH_TOKEN_URL": "generic (required) and Google: the token endpoint",
    "HELPDESK_IMAP_OAUTH_AUTHORIZE_URL": "delegated flow with generic: the authorization endpoint",
    "HELPDESK_IMAP_OAUTH_SCOPES": "space-separated scopes (defaults: Microsoft .default, Google https://mail.google.com/)",
    "HELPDESK_IMAP_OAUTH_SERVICE_ACCOUNT_FILE": (
        "Google app flow: the service account's JSON key; it acts for the mailbox user (domain-wide delegation)"
    ),
    "HELPDESK_IMAP_OAUTH_CERTIFICATE_FILE": "Microsoft: the app's certificate (PEM), a credential instead of the client secret",
    "HELPDESK_IMAP_OAUTH_PRIVATE_KEY_FILE": "Microsoft: the certificate's private key (PEM, unencrypted)",
    "HELPDESK_SMTP_HOST": "SMTP server for outbound mail",
    "HELPDESK_SMTP_PORT": "SMTP port (default 25, 465 with ssl, 587 with starttls)",
    "HELPDESK_SMTP_USER": "SMTP login (optional)",
    "HELPDESK_SMTP_PASSWORD": "SMTP password (optional)",
    "HELPDESK_SMTP_TLS": "none | starttls | ssl (default none)",
    "HELPDESK_SMTP_AUTH": "password | oauth2, with HELPDESK_SMTP_OAUTH_* named like the IMAP ones (default password)",
    **{f"HELPDESK_SMTP_OAUTH_{k}": "as HELPDESK_IMAP_OAUTH_" + k for k in OAUTH_KEYS},
    "HELPDESK_POLL_INTERVAL": "seconds between polls when the server has no IDLE (default 30)",
    "HELPDESK_LEASE_SECONDS": "a dead poller's mailboxes, and a killed sender's mail, are taken over after this (default 60)",
    "HELPDESK_SUBJECT_TAG_PREFIX": "what stands before the ticket number in the subject tag [#N] (default #)",
    "HELPDESK_COMMENT_TAG": "mail from agents to help+TAG@domain is an internal note (default comment)",
    "HELPDESK_CLOSED_REOPEN_DAYS": "a reply to a ticket closed longer ago opens a new linked ticket (default 7)",
    "HELPDESK_TRUSTED_DOMAINS": "comma-separated agent domains whose commands also need Authentication-Results dkim/spf=pass",
    "HELPDESK_AUTHSERV_ID": "only Authentication-Results from this server id count (default: the topmost header)",
    "HELPDESK_AUTO_MAIL_PER_HOUR": "automatic mails to one address per hour (default 10)",
    "HELPDESK_AUTO_MAIL_PER_DAY": "automatic mails to one address per day (default 40)",
    "HELPDESK_NOTIFY_AGENTS": "mail agents about new and updated tickets: yes | no (default yes)",
    "HELPDESK_MAX_WATCHERS": "To/Cc addresses a ticket takes as watchers, who get its public mail (default 50)",
    "HELPDESK_MAX_MESSAGE_BYTES": "attachment bytes kept per mail (default 26214400 = 25 MB)",
    "HELPDESK_WEB_HOST": "console address (default 127.0.0.1)",
    "HELPDESK_WEB_PORT": "console port (default 8080)",
    "HELPDESK_WEB_PROXIES": "reverse proxies in front of the console whose X-Forwarded-* headers are trusted (default 0)",
    "HELPDESK_WEB_URL": "the console's address as users reach it, for links in mail such as the portal's sign-in link (default http://WEB_HOST:WEB_PORT)",
    "HELPDESK_RULES_FILE": "classification rules (TOML; default DATA_DIR/rules.toml if present, else the shipped rules)",
    "HELPDESK_CATALOGUE_FILE": "service catalogue (TOML; default DATA_DIR/catalogue.toml if present, else shipped)",
    "HELPDESK_PRIORITY_FILE": (
        "impact x urgency -> priority matrix (TOML; default DATA_DIR/priority.toml if present, else shipped)"
    ),
    "HELPDESK_SLA_TARGETS": "response/resolution per priority, e.g. 'P1=15m/4h,P2=1h/8h' (defaults P1..P5)",
    "HELPDESK_SLA_MANAGER": "address SLA breaches escalate to after the assignee or group",
    "HELPDESK_BUSINESS_HOURS": "SLA calendar, e.g. 'mon-fri 08:00-18:00 Europe/Berlin' (default: around the clock)",
    "HELPDESK_ACCESS_GRANT_DAYS": "days an approved access grant lasts (default 90)",
    "HELPDESK_ACCESS_EXPIRY_WARNING_DAYS": "days before expiry the holder of a grant is warned (default 14)",
    "HELPDESK_APPROVERS_SEE_ALL": "approvers see every ticket and internal note: yes | no (default no: only what they decide)",
    "HELPDESK_RETENTION_DAYS": "closed tickets older than this many days are anonymised or deleted (default: kept)",
    "HELPDESK_RETENTION_ACTION": "what retention does to them: anonymise | delete (default anonymise)",
    "HELPDESK_OIDC_ISSUER": "console single sign-on: the OpenID Connect issuer URL (Entra ID, Google, Keycloak, ...)",
    "HELPDESK_OIDC_CLIENT_ID": "single sign-on: the console's client id at the provider",
    "HELPDESK_OIDC_CLIENT_SECRET": "single sign-on: its client secret",
    "HELPDESK_OIDC_SCOPES": "single sign-on: space-separated scopes (default 'openid email profile'; openid is always asked)",
    "HELPDESK_OIDC_ROLES": (
        "single sign-on: roles from claim values, e.g. 'admin=helpdesk-admins,agent=helpdesk-agents,approver=security'"
    ),
    "HELPDESK_OIDC_ROLES_CLAIM": "single sign-on: the id_token claim holding those values (default groups)",
    "HELPDESK_OIDC_NAME": "single sign-on: the provider's name on the login page (default: the issuer's host)",
    "HELPDESK_SEARCH_LANGUAGE": (
        "PostgreSQL text search configuration for the queue search: simple (default) | english | german | ..."
    ),
    "HELPDESK_LOCAL_LOGIN": "console passwords: yes | no (default yes; no needs HELPDESK_OIDC_ISSUER)",
}


MAX_DAYS = 36500  # day counts past this overflow date arithmetic long before they mean anything


def _tls(name: str, value: str) -> TlsMode:
    try:
        return TlsMode(value.strip().lower())
    except ValueError:
        raise ConfigError(f"{name}: must be one of none, starttls, ssl (got {value!r})") from None


def _int(name: str, value: str, *, low: int = 0, high: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name}: must be a whole number (got {value!r})") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}: must be {bounds} (got {number})")
    return number


def _float(name: str, value: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name}: must be a number of seconds (got {value!r})") from None
    if not math.isfinite(number) or number <= 0:  # nan and inf break the timers later, far from here
        raise ConfigError(f"{name}: must be more than 0 and finite (got {value!r})")
    return number


def is_address(value: str) -> bool:
    """Looks like local@domain.tld: what settings and ``user add`` take as an email address."""
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain and " " not in value)


def _address(name: str, value: str) -> str:
    value = value.strip()
    if not is_address(value):
        raise ConfigError(f"{name}: must be an email address like help@example.org (got {value!r})")
    return value.lower()


@dataclass
class _Tables:
    """What only the TOML file can say: ``[[mailboxes]]``, ``[access]`` and ``[sla]`` tables."""

    mailboxes: list[Any] = field(default_factory=list)
    access: dict[str, Any] = field(default_factory=dict)
    sla: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)


def _read_toml(path: str) -> tuple[dict[str, str], _Tables]:
    """The scalar settings (as HELPDESK_* strings) and the tables of a TOML file."""
    data = configfile.read_toml(Path(path), f"HELPDESK_CONFIG: {path}")
    tables = data.pop("mailboxes", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"HELPDESK_CONFIG: `mailboxes` in {path} must be [[mailboxes]] tables")
    access, sla, events = data.pop("access", {}), data.pop("sla", {}), data.pop("events", {})
    if not isinstance(events, dict):
        raise ConfigError(f"HELPDESK_CONFIG: `events` in {path} must be [events.NAME] tables")
    for name, table, keys in (("access", access, {"approvers"}), ("sla", sla, {"holidays", "groups"})):
        if not isinstance(table, dict):
            raise ConfigError(f"HELPDESK_CONFIG: `{name}` in {path} must be an [{name}] table")
        unknown_keys = sorted(set(table) - keys)
        if unknown_keys:
            raise ConfigError(f"HELPDESK_CONFIG: unknown key(s) in [{name}]: {', '.join(unknown_keys)} "
                              f"(known: {', '.join(sorted(keys))})")
    known = {k.removeprefix("HELPDESK_").lower() for k in VARIABLES}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"HELPDESK_CONFIG: unknown setting(s) in {path}: {', '.join(unknown)}")
    return {f"HELPDESK_{k.upper()}": str(v) for k, v in data.items()}, _Tables(tables, access, sla, events)


MAILBOX_KEYS = (
    "name", "transport", "host", "port", "user", "password", "tls", "folder", "processed_folder", "address", "auth",
    *(f"oauth_{k.lower()}" for k in OAUTH_KEYS),
)  # fmt: skip


def _one_of(name: str, value: str, kind: type[enum.Enum]) -> Any:
    try:
        return kind(value.strip().lower())
    except ValueError:
        choices = " | ".join(str(m.value) for m in kind)
        raise ConfigError(f"{name}: must be one of {choices} (got {value!r})") from None


def _url(name: str, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: must be an https:// (or http://) URL (got {value!r})")
    return value.strip()


def _auth(
    name: Callable[[str], str], value: Callable[[str], Any], protocol: str, user: str | None
) -> tuple[AuthKind, OAuthSettings | None]:
    """``auth`` and the ``oauth_*`` settings of one mailbox or of SMTP (logging in as `user`).

    `name(key)` is what errors call a key."""
    auth = _one_of(name("auth"), str(value("auth") or "password"), AuthKind)
    if auth is AuthKind.PASSWORD:
        return auth, None
    text = {k: str(value(f"oauth_{k.lower()}") or "").strip() for k in OAUTH_KEYS}

    def required(key: str) -> str:
        if not text[key]:
            raise ConfigError(f"{name('oauth_' + key.lower())}: required with auth = oauth2")
        return text[key]

    provider = _one_of(name("oauth_provider"), required("PROVIDER"), OAuthProvider)
    flow = _one_of(name("oauth_flow"), text["FLOW"] or "app", OAuthFlow)
    files = _oauth_files(name, text, provider)
    if not files.get("service_account_file"):
        required("CLIENT_ID")  # a service account's key file names its account
    if flow is OAuthFlow.APP and not text["CLIENT_SECRET"] and not files:
        raise ConfigError(f"{name('oauth_client_secret')}: required for the app (client credentials) flow")
    token_url, authority, tenant = text["TOKEN_URL"] or None, text["AUTHORITY"] or None, text["TENANT"] or None
    if provider is OAuthProvider.MICROSOFT:
        if not tenant and not authority:
            raise ConfigError(f"{name('oauth_tenant')}: required with the microsoft provider")
        authority = _url(name("oauth_authority"), authority or f"{MICROSOFT_AUTHORITY}/{tenant}")
    elif provider is OAuthProvider.GOOGLE:
        token_url = token_url or GOOGLE_TOKEN_URL
    elif not token_url:
        raise ConfigError(f"{name('oauth_token_url')}: required with the generic provider")
    scopes = tuple(text["SCOPES"].replace(",", " ").split()) or _default_scopes(provider, flow, protocol)
    return auth, OAuthSettings(
        provider=provider,
        client_id=text["CLIENT_ID"],
        client_secret=text["CLIENT_SECRET"],
        flow=flow,
        tenant=tenant,
        authority=authority,
        token_url=_url(name("oauth_token_url"), token_url) if token_url else None,
        authorize_url=_url(name("oauth_authorize_url"), text["AUTHORIZE_URL"]) if text["AUTHORIZE_URL"] else None,
        scopes=scopes,
        subject=user if files.get("service_account_file") else None,
        **files,
    )


def _oauth_files(name: Callable[[str], str], text: dict[str, str], provider: OAuthProvider) -> dict[str, Path]:
    """The key files of a Google service account or a Microsoft certificate credential, each checked to load."""
    paths = {k: Path(text[k]).expanduser() for k in ("SERVICE_ACCOUNT_FILE", "CERTIFICATE_FILE", "PRIVATE_KEY_FILE") if text[k]}
    if "SERVICE_ACCOUNT_FILE" in paths:
        if provider is not OAuthProvider.GOOGLE:
            raise ConfigError(f"{name('oauth_service_account_file')}: only with the google provider")
        try:
            read_service_account(paths["SERVICE_ACCOUNT_FILE"])
        except TokenError as exc:
            raise ConfigError(f"{name('oauth_service_account_file')}: {exc}") from None
    if "CERTIFICATE_FILE" in paths or "PRIVATE_KEY_FILE" in paths:
        if provider is not OAuthProvider.MICROSOFT:
            raise ConfigError(f"{name('oauth_certificate_file')}: only with the microsoft provider")
        for key in ("CERTIFICATE_FILE", "PRIVATE_KEY_FILE"):
            if key not in paths:
                raise ConfigError(f"{name('oauth_' + key.lower())}: required with a certificate credential")
        try:
            read_certificate(paths["CERTIFICATE_FILE"], paths["PRIVATE_KEY_FILE"])
        except TokenError as exc:
            raise ConfigError(f"{name('oauth_certificate_file')}: {exc}") from None
    return {k.lower(): v for k, v in paths.items()}


def _default_scopes(provider: OAuthProvider, flow: OAuthFlow, protocol: str) -> tuple[str, ...]:
    if provider is OAuthProvider.GOOGLE:
        return ("https://mail.google.com/",)
    if provider is OAuthProvider.MICROSOFT and protocol == "graph":
        if flow is OAuthFlow.APP:  # the application permissions Mail.ReadWrite and Mail.Send granted to the app
            return ("https://graph.microsoft.com/.default",)
        return ("https://graph.microsoft.com/Mail.ReadWrite", "https://graph.microsoft.com/Mail.Send")
    if provider is OAuthProvider.MICROSOFT:
        if flow is OAuthFlow.APP:  # app-only tokens carry the permissions granted to the app
            return ("https://outlook.office365.com/.default",)
        return ("https://outlook.office365.com/IMAP.AccessAsUser.All" if protocol == "imap"
                else "https://outlook.office365.com/SMTP.Send",)  # fmt: skip
    return ()


def _mailbox_table(n: int, table: dict[str, Any], default_address: str, graph_url: str) -> MailboxSettings:
    """One ``[[mailboxes]]`` table; errors name it as mailboxes[n].key."""
    where = f"HELPDESK_CONFIG: mailboxes[{n}]"
    unknown = sorted(set(table) - set(MAILBOX_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(MAILBOX_KEYS)})")
    transport = _one_of(f"{where}.transport", str(table.get("transport") or "imap"), Transport)
    for key in ("host", "user") if transport is Transport.IMAP else ("user",):
        if not str(table.get(key) or "").strip():
            raise ConfigError(f"{where}.{key}: required")
    tls = _tls(f"{where}.tls", str(table.get("tls") or "starttls"))
    port = _int(f"{where}.port", str(table.get("port") or ("993" if tls is TlsMode.SSL else "143")), low=1, high=65535)
    folder = str(table.get("folder") or "INBOX")
    processed = table.get("processed_folder", "Processed")
    address = table.get("address")
    auth, oauth = _auth(lambda key: f"{where}.{key}", table.get, transport.value, str(table["user"]))
    _check_graph(lambda key: f"{where}.{key}", transport, oauth, processed)
    host = str(table["host"]) if transport is Transport.IMAP else "graph"  # the name's default says where
    return MailboxSettings(
        name=str(table.get("name") or f"{table['user']}@{host}/{folder}"),
        host=host,
        port=port,
        user=str(table["user"]),
        password=str(table.get("password") or ""),
        tls=tls,
        folder=folder,
        processed_folder=str(processed) if processed else None,  # "" or false: only flag
        address=_address(f"{where}.address", str(address)) if address else default_address,
        auth=auth,
        oauth=oauth,
        transport=transport,
        graph_url=graph_url,
    )


def _check_graph(name: Callable[[str], str], transport: Transport, oauth: OAuthSettings | None, processed: object) -> None:
    """Graph takes only Microsoft's tokens, and must move what it read: a read mark would come back as a change."""
    if transport is not Transport.GRAPH:
        return
    if oauth is None or oauth.provider is not OAuthProvider.MICROSOFT:
        raise ConfigError(f"{name('transport')}: graph needs auth = oauth2 with oauth_provider = microsoft")
    if not processed:
        raise ConfigError(f"{name('processed_folder')}: required with transport = graph (mail is moved there once stored)")


def load(environ: Mapping[str, str] | None = None, config_file: str | None = None) -> Settings:
    """Build Settings from a TOML file (if any) overridden by the environment."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, str] = {}
    tables = _Tables()
    path = config_file or env.get("HELPDESK_CONFIG")
    if path:
        scalars, tables = _read_toml(path)
        values.update(scalars)
    values.update({k: v for k, v in env.items() if k.startswith("HELPDESK_")})
    get = values.get

    data_dir = Path(get("HELPDESK_DATA_DIR") or "data").expanduser().resolve()
    database_url = _database_url(get("HELPDESK_DATABASE_URL") or f"sqlite:///{data_dir / 'helpdesk.db'}")
    address = _address("HELPDESK_ADDRESS", get("HELPDESK_ADDRESS") or "help@example.org")

    mailboxes: tuple[MailboxSettings, ...] = ()
    graph_url = _url("HELPDESK_GRAPH_URL", get("HELPDESK_GRAPH_URL") or GRAPH_URL).rstrip("/")
    transport = _one_of("HELPDESK_IMAP_TRANSPORT", get("HELPDESK_IMAP_TRANSPORT") or "imap", Transport)
    if get("HELPDESK_IMAP_HOST") or transport is Transport.GRAPH:
        tls = _tls("HELPDESK_IMAP_TLS", get("HELPDESK_IMAP_TLS") or "starttls")
        default_port = "993" if tls is TlsMode.SSL else "143"
        port = _int("HELPDESK_IMAP_PORT", get("HELPDESK_IMAP_PORT") or default_port, low=1, high=65535)
        user = get("HELPDESK_IMAP_USER")
        if not user:
            given = "HELPDESK_IMAP_HOST" if transport is Transport.IMAP else "HELPDESK_IMAP_TRANSPORT = graph"
            raise ConfigError(f"HELPDESK_IMAP_USER: required when {given} is set")
        processed = get("HELPDESK_IMAP_PROCESSED_FOLDER")
        imap_auth, imap_oauth = _auth(
            lambda key: f"HELPDESK_IMAP_{key.upper()}", lambda key: get(f"HELPDESK_IMAP_{key.upper()}"),
            transport.value, user,
        )
        _check_graph(lambda key: f"HELPDESK_IMAP_{key.upper()}", transport, imap_oauth,
                     "Processed" if processed is None else processed)  # fmt: skip
        host = get("HELPDESK_IMAP_HOST") if transport is Transport.IMAP else "graph"
        mailboxes = (
            MailboxSettings(
                name=f"{user}@{host}/{get('HELPDESK_IMAP_FOLDER') or 'INBOX'}",
                host=host or "",
                port=port,
                user=user,
                password=get("HELPDESK_IMAP_PASSWORD") or "",
                tls=tls,
                folder=get("HELPDESK_IMAP_FOLDER") or "INBOX",
                processed_folder="Processed" if processed is None else (processed or None),
                address=address,
                auth=imap_auth,
                oauth=imap_oauth,
                transport=transport,
                graph_url=graph_url,
            ),
        )

    mailboxes += tuple(_mailbox_table(n, t, address, graph_url) for n, t in enumerate(tables.mailboxes))
    names = [m.name for m in mailboxes]
    if len(set(names)) != len(names):
        raise ConfigError(f"HELPDESK_CONFIG: mailbox names must differ (got {', '.join(names)})")
    days = get("HELPDESK_RETENTION_DAYS")
    files = {name: _file(f"HELPDESK_{name.upper()}_FILE", get(f"HELPDESK_{name.upper()}_FILE"))
             for name in ("rules", "catalogue", "priority")}

    smtp = None
    if get("HELPDESK_SMTP_HOST"):
        tls = _tls("HELPDESK_SMTP_TLS", get("HELPDESK_SMTP_TLS") or "none")
        default_port = {TlsMode.SSL: "465", TlsMode.STARTTLS: "587", TlsMode.NONE: "25"}[tls]
        smtp_auth, smtp_oauth = _auth(
            lambda key: f"HELPDESK_SMTP_{key.upper()}", lambda key: get(f"HELPDESK_SMTP_{key.upper()}"),
            "smtp", get("HELPDESK_SMTP_USER"),
        )
        if smtp_auth is AuthKind.OAUTH2 and not get("HELPDESK_SMTP_USER"):
            raise ConfigError("HELPDESK_SMTP_USER: required with HELPDESK_SMTP_AUTH = oauth2 (the mailbox the token sends as)")
        smtp = SmtpSettings(
            host=get("HELPDESK_SMTP_HOST") or "",
            port=_int("HELPDESK_SMTP_PORT", get("HELPDESK_SMTP_PORT") or default_port, low=1, high=65535),
            user=get("HELPDESK_SMTP_USER") or None,
            password=get("HELPDESK_SMTP_PASSWORD") or None,
            tls=tls,
            auth=smtp_auth,
            oauth=smtp_oauth,
        )

    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        address=address,
        secret_key=get("HELPDESK_SECRET_KEY") or _stored_secret(data_dir),  # "": made by ensure_secret
        subject_tag_prefix=_subject_tag_prefix(get("HELPDESK_SUBJECT_TAG_PREFIX")),
        mailboxes=mailboxes,
        smtp=smtp,
        max_message_bytes=_int("HELPDESK_MAX_MESSAGE_BYTES", get("HELPDESK_MAX_MESSAGE_BYTES") or str(25 * 1024 * 1024)),
        poll_interval=_float("HELPDESK_POLL_INTERVAL", get("HELPDESK_POLL_INTERVAL") or "30"),
        lease_seconds=_float("HELPDESK_LEASE_SECONDS", get("HELPDESK_LEASE_SECONDS") or "60"),
        web_host=get("HELPDESK_WEB_HOST") or "127.0.0.1",
        web_port=_int("HELPDESK_WEB_PORT", get("HELPDESK_WEB_PORT") or "8080", low=0, high=65535),
        web_proxies=_int("HELPDESK_WEB_PROXIES", get("HELPDESK_WEB_PROXIES") or "0", low=0, high=10),
        web_url=_url("HELPDESK_WEB_URL", get("HELPDESK_WEB_URL") or "") if get("HELPDESK_WEB_URL") else None,
        search_language=_search_language(get("HELPDESK_SEARCH_LANGUAGE")),
        sla=_sla(get, tables.sla),
        access=AccessSettings(
            approvers_by_group=_approvers(tables.access.get("approvers", {})),
            approvers_see_all=_yes_no("HELPDESK_APPROVERS_SEE_ALL", get("HELPDESK_APPROVERS_SEE_ALL"), default=False),
            grant_days=_int("HELPDESK_ACCESS_GRANT_DAYS", get("HELPDESK_ACCESS_GRANT_DAYS") or "90", low=1, high=MAX_DAYS),
            expiry_warning_days=_int(
                "HELPDESK_ACCESS_EXPIRY_WARNING_DAYS", get("HELPDESK_ACCESS_EXPIRY_WARNING_DAYS") or "14", low=0,
                high=MAX_DAYS,
            ),
        ),
        catalogue_path=files["catalogue"],
        rules_path=files["rules"],
        priority_path=files["priority"],
        rulebook=load_rulebook(data_dir, **files),  # read and checked here, once per process
        conversation=_conversation(get),
        retention_days=_int("HELPDESK_RETENTION_DAYS", days, low=1, high=MAX_DAYS) if days else None,
        retention_action=_retention_action(get("HELPDESK_RETENTION_ACTION")),
        events=event_settings(tables.events),
        oidc=_oidc(get),
        local_login=_local_login(get),
    )


CONSOLE_ROLES = ("admin", "agent", "approver")  # strongest first: a user with several gets the first


def _oidc(get: Callable[[str], str | None]) -> OidcSettings | None:
    """``HELPDESK_OIDC_*``: the console's single sign-on, or None when no issuer is set."""
    issuer = (get("HELPDESK_OIDC_ISSUER") or "").strip()
    if not issuer:
        stray = [k for k in VARIABLES if k.startswith("HELPDESK_OIDC_") and get(k)]
        if stray:
            raise ConfigError(f"{stray[0]}: needs HELPDESK_OIDC_ISSUER")
        return None
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ConfigError(f"HELPDESK_OIDC_ISSUER: must be an https:// URL (http only on loopback) (got {issuer!r})")
    for key in ("HELPDESK_OIDC_CLIENT_ID", "HELPDESK_OIDC_ROLES"):
        if not (get(key) or "").strip():
            example = " e.g. admin=helpdesk-admins,agent=helpdesk-agents" if key.endswith("ROLES") else ""
            raise ConfigError(f"{key}: required with HELPDESK_OIDC_ISSUER{example}")
    claim = get("HELPDESK_OIDC_ROLES_CLAIM")
    if claim is not None and not claim.strip():
        raise ConfigError("HELPDESK_OIDC_ROLES_CLAIM: must be a claim name like groups or roles (got an empty one)")
    scopes = (get("HELPDESK_OIDC_SCOPES") or "email profile").replace(",", " ").split()
    return OidcSettings(
        issuer=issuer,
        client_id=(get("HELPDESK_OIDC_CLIENT_ID") or "").strip(),
        client_secret=(get("HELPDESK_OIDC_CLIENT_SECRET") or "").strip(),
        scopes=("openid", *dict.fromkeys(s for s in scopes if s != "openid")),
        roles=_oidc_roles(get("HELPDESK_OIDC_ROLES") or ""),
        roles_claim=(claim or "groups").strip(),
        name=(get("HELPDESK_OIDC_NAME") or "").strip() or parts.hostname,
    )


def _oidc_roles(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """'admin=helpdesk-admins,agent=a,agent=b' -> ((admin, (helpdesk-admins,)), (agent, (a, b))), strongest first."""
    found: dict[str, list[str]] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        role, _, value = (p.strip() for p in item.partition("="))
        if role.lower() not in CONSOLE_ROLES or not value:
            raise ConfigError(f"HELPDESK_OIDC_ROLES: entries look like ROLE=GROUP with ROLE one of "
                              f"{', '.join(CONSOLE_ROLES)} (got {item!r})")
        found.setdefault(role.lower(), []).append(value)
    return tuple((role, tuple(found[role])) for role in CONSOLE_ROLES if role in found)


def _local_login(get: Callable[[str], str | None]) -> bool:
    allowed = _yes_no("HELPDESK_LOCAL_LOGIN", get("HELPDESK_LOCAL_LOGIN"), default=True)
    if not allowed and not (get("HELPDESK_OIDC_ISSUER") or "").strip():
        raise ConfigError("HELPDESK_LOCAL_LOGIN: no needs HELPDESK_OIDC_ISSUER (else nobody could log in)")
    return allowed


def event_settings(tables: Mapping[str, Any]) -> EventSettings:
    """``[events.nagios] enabled = true, sender = "regex"``: each monitoring integration on or off, and its senders."""
    sources: dict[str, EventSource] = {}
    for name, table in tables.items():
        key = f"HELPDESK_CONFIG: events.{name}"
        if name not in EVENT_SOURCES:
            raise ConfigError(f"{key}: unknown integration (known: {', '.join(EVENT_SOURCES)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: must be a table like [events.{name}] (got {table!r})")
        if unknown := sorted(set(table) - {"enabled", "sender"}):
            raise ConfigError(f"{key}: unknown key(s) {', '.join(unknown)} (known: enabled, sender)")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{key}.enabled: must be true or false (got {enabled!r})")
        sources[name] = EventSource(enabled, _sender_pattern(f"{key}.sender", table.get("sender")))
    return EventSettings(sources)


def _sender_pattern(key: str, value: Any) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a regular expression for the sender address (got {value!r})")
    try:
        return re.compile(value.strip(), re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{key}: not a valid regular expression: {exc} (got {value!r})") from None


def _retention_action(value: str | None) -> RetentionAction:
    try:
        return RetentionAction((value or "anonymise").strip().lower())
    except ValueError:
        raise ConfigError(f"HELPDESK_RETENTION_ACTION: must be anonymise or delete (got {value!r})") from None


# The drivers that are installed and tested (SQLAlchemy 2.1 reads a bare postgresql:// as psycopg).
# Anything else fails only when a command first connects, with an ImportError or a ModuleNotFoundError.
_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def _database_url(value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    name = "HELPDESK_DATABASE_URL"
    expected = "must be a sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB URL"
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(f"{name}: {expected} (got {_hide_password(value)!r})") from None
    if url.drivername not in _DRIVERS:
        raise ConfigError(f"{name}: {expected} (got {url.render_as_string(hide_password=True)!r})")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ConfigError(f"{name}: the port must be between 1 and 65535 (got {url.port})")
    return value


def _hide_password(value: str) -> str:
    """An unparsable URL may still hold a password: show it as *** like SQLAlchemy does."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", value)


def _yes_no(name: str, value: str | None, *, default: bool) -> bool:
    word = (value or "").strip().lower()
    if not word:
        return default
    if word not in ("yes", "no", "true", "false", "1", "0"):
        raise ConfigError(f"{name}: must be yes or no (got {word!r})")
    return word in ("yes", "true", "1")


def ensure_data_dir(data_dir: Path) -> None:
    """Create the data dir if needed; a path that cannot be one is an error naming the setting."""
    try:
        private_dir(data_dir)
    except OSError as exc:
        raise data_dir_error(data_dir, exc) from None


def data_dir_error(data_dir: Path, exc: OSError) -> ConfigError:
    reason = "not a directory" if os.path.exists(data_dir) and not os.path.isdir(data_dir) else exc.strerror or str(exc)
    return ConfigError(f"HELPDESK_DATA_DIR: cannot use {str(data_dir)!r}: {reason}")


def _subject_tag_prefix(value: str | None) -> str:
    if value is None:
        return "#"
    # The tag is found again in replies as [PREFIX<digits>]: a bracket or space would break it,
    # and a trailing digit would run into the ticket number ([T142] for ticket 42).
    if not re.fullmatch(r"[^\s\[\]]{1,20}", value) or value[-1].isdigit():
        raise ConfigError(
            "HELPDESK_SUBJECT_TAG_PREFIX: must be 1 to 20 characters without spaces or brackets, "
            f"not ending in a digit, like # or IT- (got {value!r})"
        )
    return value


def _conversation(get: Any) -> ConversationSettings:
    tag = (get("HELPDESK_COMMENT_TAG") or "comment").strip().lower()
    if not tag or not tag.replace("-", "").replace("_", "").isalnum() or tag.isdigit():
        raise ConfigError(f"HELPDESK_COMMENT_TAG: must be letters, digits, - or _ and not only digits (got {tag!r})")
    notify = (get("HELPDESK_NOTIFY_AGENTS") or "yes").strip().lower()
    if notify not in ("yes", "no", "true", "false", "1", "0"):
        raise ConfigError(f"HELPDESK_NOTIFY_AGENTS: must be yes or no (got {notify!r})")
    domains = tuple(d.strip().lower() for d in (get("HELPDESK_TRUSTED_DOMAINS") or "").split(",") if d.strip())
    return ConversationSettings(
        comment_tag=tag,
        closed_reopen_days=_int(
            "HELPDESK_CLOSED_REOPEN_DAYS", get("HELPDESK_CLOSED_REOPEN_DAYS") or "7", high=MAX_DAYS
        ),
        trusted_domains=domains,
        authserv_id=(get("HELPDESK_AUTHSERV_ID") or "").strip().lower() or None,
        auto_mail_per_hour=_int("HELPDESK_AUTO_MAIL_PER_HOUR", get("HELPDESK_AUTO_MAIL_PER_HOUR") or "10"),
        auto_mail_per_day=_int("HELPDESK_AUTO_MAIL_PER_DAY", get("HELPDESK_AUTO_MAIL_PER_DAY") or "40"),
        notify_agents=notify in ("yes", "true", "1"),
        max_watchers=_int("HELPDESK_MAX_WATCHERS", get("HELPDESK_MAX_WATCHERS") or "50", high=10000),
    )


def _file(name: str, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}: no such file {value!r}")
    return path


_UNITS = {"m": 1, "h": 60, "d": 24 * 60}
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


MAX_SLA_DAYS = 365  # a target past this is a typo; far larger ones overflow the due-date arithmetic


def _minutes(name: str, text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if not m:
        raise ConfigError(f"{name}: durations look like 15m, 4h or 2d (got {text!r})")
    minutes = int(m.group(1)) * _UNITS[m.group(2)]
    if minutes > MAX_SLA_DAYS * _UNITS["d"]:
        raise ConfigError(f"{name}: durations must be at most {MAX_SLA_DAYS}d (got {text.strip()!r})")
    return minutes


def _group_table(key: str, value: Any) -> dict[str, Any]:
    """A TOML table keyed by group name; errors name it as HELPDESK_CONFIG: key."""
    if not isinstance(value, dict) or not all(isinstance(g, str) and g.strip() for g in value):
        raise ConfigError(f"HELPDESK_CONFIG: {key}: must be a table of group = ... (got {value!r})")
    return value


def _approvers(value: Any) -> dict[str, tuple[str, ...]]:
    """``[access.approvers] hr = ["jack@example.org"]``: who approves access to a resource group."""
    found: dict[str, tuple[str, ...]] = {}
    for group, addresses in _group_table("access.approvers", value).items():
        key = f"HELPDESK_CONFIG: access.approvers.{group}"
        addresses = [addresses] if isinstance(addresses, str) else addresses
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f"{key}: must be a list of email addresses (got {addresses!r})")
        found[group] = tuple(_address(key, a) for a in addresses)
    return found


def _holidays(value: Any) -> frozenset[date]:
    """``[sla] holidays = ["2026-12-25", ...]`` (TOML dates work too)."""
    key = "HELPDESK_CONFIG: sla.holidays"
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of dates like \"2026-12-25\" (got {value!r})")
    return frozenset(_day(key, item) for item in value)


def _day(key: str, item: Any) -> date:
    if type(item) is date:  # a TOML date; a datetime (a subclass) is not a day
        return item
    if isinstance(item, str):
        try:
            return date.fromisoformat(item.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: dates look like \"2026-12-25\" (got {item!r})")


def _sla(get: Any, table: dict[str, Any]) -> SlaSettings:
    targets = dict(DEFAULT_SLA_TARGETS)
    for item in filter(None, (get("HELPDESK_SLA_TARGETS") or "").split(",")):
        priority, _, spans = item.partition("=")
        priority = priority.strip().upper()
        response, _, resolution = spans.partition("/")
        if priority not in targets or not resolution:
            raise ConfigError(f"HELPDESK_SLA_TARGETS: entries look like P1=15m/4h (got {item.strip()!r})")
        targets[priority] = SlaTarget(
            _minutes("HELPDESK_SLA_TARGETS", response), _minutes("HELPDESK_SLA_TARGETS", resolution)
        )
    manager = get("HELPDESK_SLA_MANAGER")
    hours = _business_hours(get("HELPDESK_BUSINESS_HOURS"))
    if "holidays" in table:
        if hours is None:  # a clock that runs around the clock has no days off: say so, not ignore them
            raise ConfigError("HELPDESK_CONFIG: sla.holidays: needs HELPDESK_BUSINESS_HOURS")
        hours = replace(hours, holidays=_holidays(table["holidays"]))
    groups = _group_table("sla.groups", table.get("groups", {}))
    for group, value in groups.items():
        if not isinstance(value, str):
            raise ConfigError(f"HELPDESK_CONFIG: sla.groups.{group}: must be one email address (got {value!r})")
    return SlaSettings(
        targets=targets,
        business_hours=hours,
        manager=_address("HELPDESK_SLA_MANAGER", manager) if manager else None,
        group_addresses={g: _address(f"HELPDESK_CONFIG: sla.groups.{g}", a) for g, a in groups.items()},
    )


def _business_hours(value: str | None) -> BusinessHours | None:
    if not value:
        return None
    name = "HELPDESK_BUSINESS_HOURS"
    m = re.fullmatch(r"\s*([a-z]{3})-([a-z]{3})\s+(\d\d):(\d\d)-(\d\d):(\d\d)(?:\s+(\S+))?\s*", value.lower())
    if not m or m.group(1) not in _WEEKDAYS or m.group(2) not in _WEEKDAYS:
        raise ConfigError(f"{name}: looks like 'mon-fri 08:00-18:00 Europe/Berlin' (got {value!r})")
    first, last = _WEEKDAYS.index(m.group(1)), _WEEKDAYS.index(m.group(2))
    try:
        start, end = time(int(m.group(3)), int(m.group(4))), time(int(m.group(5)), int(m.group(6)))
    except ValueError:  # 25:00 or 08:99
        raise ConfigError(f"{name}: times run from 00:00 to 23:59 (got {value!r})") from None
    if end <= start or first > last:
        raise ConfigError(f"{name}: the end must come after the start (got {value!r})")
    zone = value.split()[-1] if m.group(7) else "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}: unknown time zone {zone!r}") from None
    return BusinessHours(timezone=zone, weekdays=frozenset(range(first, last + 1)), start=start, end=end)


SECRET_FILE = "secret_key"


def _stored_secret(data_dir: Path) -> str:
    """The key a first start kept in the data dir; "" before that (load() writes nothing)."""
    try:
        return (data_dir / SECRET_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):  # no key yet, or no data dir: ensure_data_dir names that
        return ""
    except OSError as exc:  # no permission, ...
        raise data_dir_error(data_dir, exc) from None


def ensure_secret(settings: Settings) -> Settings:
    """Settings with a secret key: without HELPDESK_SECRET_KEY, a random one kept in the data dir and made
    by the first command that needs one (init, run, web, poll, ...), the same on every start after."""
    import secrets

    if settings.secret_key:
        return settings
    try:
        private_dir(settings.data_dir)
        # Two commands starting at once agree on one key.
        key = write_private_once(settings.data_dir / SECRET_FILE, secrets.token_hex(32).encode()).decode().strip()
    except OSError as exc:  # a file, read-only, under /proc, ...
        raise data_dir_error(settings.data_dir, exc) from None
    return replace(settings, secret_key=key)


def _search_language(value: str | None) -> str:
    language = (value or "simple").strip().lower()
    if not re.fullmatch(r"[a-z_]+", language):
        raise ConfigError(
            f"HELPDESK_SEARCH_LANGUAGE: {value!r} is not a text search configuration name (e.g. simple, english, german)"
        )
    return language
