"""Typed settings the domain needs. Loading them (environment, TOML) is the CLI's job."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class TlsMode(enum.Enum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


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


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    tls: TlsMode = TlsMode.NONE


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
    agent_addresses: tuple[str, ...] = field(default_factory=tuple)

    @property
    def help_domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def help_local(self) -> str:
        return self.address.rpartition("@")[0]
