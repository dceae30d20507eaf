"""How each mailbox's login fares, and the OAuth2 refresh tokens that keep it logged in.

A failing login (revoked consent, an expired client secret) must never go unnoticed while mail
piles up on the server: it is recorded here, shown by `helpdesk mailboxes` and as a banner to admins
in the console, and mailed to the admins at most once a day. Refresh tokens are kept encrypted with
a key derived from the secret key, so a copy of the database alone does not open the mailbox.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import audit
from helpdesk.core.conversation import make_message_id
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, MailLogin, Outbox, Role, aware, utcnow
from helpdesk.core.notify import SEND_DEADLINE
from helpdesk.core.settings import AuthKind, Settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

ALERT_EVERY = timedelta(days=1)
# What an admin should look at when a login of each kind fails (the alert mail, the watcher's log line).
WHAT_TO_CHECK = {
    AuthKind.PASSWORD: "check the mailbox user and password in the configuration",
    AuthKind.OAUTH2: "check the OAuth2 app's consent and its client secret, certificate or key (revoked or expired?); "
    "a delegated mailbox is then reconnected in the console",
}
ALERT_PURPOSE = "mail_login_failed"


@dataclass(frozen=True)
class LoginStatus:
    name: str
    auth_kind: str
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    token_expires_at: datetime | None
    connected: bool  # a refresh token is stored (delegated flow)

    @property
    def failing(self) -> bool:
        """The last attempt failed (nothing has worked since the error)."""
        if self.last_error_at is None:
            return False
        return self.last_success_at is None or self.last_error_at >= self.last_success_at


def _status(row: MailLogin) -> LoginStatus:
    def at(value: datetime | None) -> datetime | None:
        return aware(value) if value is not None else None

    return LoginStatus(
        name=row.name,
        auth_kind=row.auth_kind,
        last_success_at=at(row.last_success_at),
        last_error=row.last_error,
        last_error_at=at(row.last_error_at),
        token_expires_at=at(row.token_expires_at),
        connected=row.refresh_token is not None,
    )


def statuses(session: Session) -> dict[str, LoginStatus]:
    return {row.name: _status(row) for row in session.scalars(select(MailLogin).order_by(MailLogin.name))}


def failing(session: Session) -> list[LoginStatus]:
    """Logins whose last attempt failed: what the console's banner shows admins."""
    return [status for status in statuses(session).values() if status.failing]


# -- refresh tokens, encrypted -------------------------------------------------------------------


REFRESH_TOKENS = b"helpdesk oauth2 refresh tokens"


def _fernet(secret_key: str, purpose: bytes) -> Fernet:
    # A key of its own for each purpose, derived from the secret key (never the secret key itself).
    # (cryptography is imported here: a poll or a send with a password login never needs it, ~0.01 s.)
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: str, token: str, purpose: bytes = REFRESH_TOKENS) -> str:
    return _fernet(secret_key, purpose).encrypt(token.encode()).decode()


def unseal(secret_key: str, sealed: str, purpose: bytes = REFRESH_TOKENS) -> str | None:
    """The refresh token (or other secret), or None when it was sealed with another secret key (the mailbox must be
    reconnected, the webhook given a new secret)."""
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(secret_key, purpose).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def _row(session: Session, name: str, kind: AuthKind) -> MailLogin:
    row = session.get(MailLogin, name, with_for_update=True)
    if row is None:
        row = MailLogin(name=name, auth_kind=kind.value)
        session.add(row)
    row.auth_kind = kind.value
    return row


def connect_mailbox(session: Session, settings: Settings, name: str, refresh_token: str, *, actor: str) -> None:
    """An admin signed in for the mailbox (delegated flow): keep the refresh token, sealed; audited."""
    row = _row(session, name, AuthKind.OAUTH2)
    row.refresh_token = seal(settings.secret_key, refresh_token)
    row.alerted_at = None  # a new failure is worth a new mail at once
    audit.record(session, actor=actor, action="mailbox.connect", object_type="mailbox", object_id=None,
                 after={"name": name})  # fmt: skip


# -- the store mailgateway.oauth.TokenSource writes to -------------------------------------------


class DbTokenStore:
    """Refresh tokens and login outcomes in the database (mailgateway.oauth.TokenStore)."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory = factory
        self.settings = settings

    def refresh_token(self, mailbox: str) -> str | None:
        with self.factory() as session:
            sealed = session.scalar(select(MailLogin.refresh_token).where(MailLogin.name == mailbox))
        return unseal(self.settings.secret_key, sealed) if sealed else None

    def save_refresh_token(self, mailbox: str, token: str) -> None:
        with transaction(self.factory) as session:
            _row(session, mailbox, AuthKind.OAUTH2).refresh_token = seal(self.settings.secret_key, token)

    def succeeded(self, mailbox: str, expires_at: float | None, kind: AuthKind = AuthKind.OAUTH2) -> None:
        with transaction(self.factory) as session:
            row = _row(session, mailbox, kind)
            row.last_success_at = utcnow()
            row.token_expires_at = datetime.fromtimestamp(expires_at, UTC) if expires_at else None
            row.alerted_at = None

    def failed(self, mailbox: str, error: str, kind: AuthKind = AuthKind.OAUTH2) -> None:
        with transaction(self.factory) as session:
            row = _row(session, mailbox, kind)
            now = utcnow()
            row.last_error, row.last_error_at = error[:2000], now
            due = row.alerted_at is None or aware(row.alerted_at) <= now - ALERT_EVERY
            if due and _alert_admins(session, self.settings, mailbox, error, kind):
                row.alerted_at = now


def _alert_admins(session: Session, settings: Settings, mailbox: str, error: str, kind: AuthKind) -> bool:
    """One mail per admin, through the outbox (sent when SMTP works: it may be the login that fails)."""
    admins = list(session.scalars(select(Contact.email).where(Contact.role == Role.ADMIN).order_by(Contact.email)))
    for admin in admins:
        msg = EmailMessage()
        mid = make_message_id(settings, None)
        msg["From"] = formataddr(("IT Service Desk", settings.address))
        msg["To"] = admin
        msg["Subject"] = f"Mailbox {mailbox}: login failing, mail is waiting on the server"
        msg["Date"] = format_datetime(utcnow())
        msg["Message-ID"] = f"<{mid}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(
            f"The helpdesk cannot log in to {mailbox}:\n\n  {error}\n\n"
            "Nothing is lost: mail stays on the server and is read once the login works again.\n"
            f"{WHAT_TO_CHECK[kind][0].upper()}{WHAT_TO_CHECK[kind][1:]}.\n"
            "`helpdesk mailboxes` shows every mailbox's status (at most one such mail a day).\n"
        )
        session.add(
            Outbox(
                message_id=mid,
                purpose=ALERT_PURPOSE,
                mail_from=settings.address,
                recipients=[admin],
                raw=msg.as_bytes(),
                deadline_at=utcnow() + SEND_DEADLINE,
                automatic=True,
                rcpt=admin,
            )
        )
    return bool(admins)
