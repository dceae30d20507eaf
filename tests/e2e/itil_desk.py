"""A helpdesk on real servers for the ITIL process tests: mail in over IMAP, mail out over SMTP.

Polling and sending run in-process through the same functions as `helpdesk poll --once` and
`helpdesk send --once` (a subprocess costs ~0.8 s); the commands a test is about (`sla --check`,
`events --json`, `audit verify`, `report --json`) run as the real CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.core.models import AuditEntry, Outbox, Ticket, utcnow
from helpdesk.core.db import transaction
from helpdesk import config
from helpdesk.wiring import App, build
from helpdesk.mailgateway.smtp import send_once
from helpdesk.mailgateway.watcher import poll_once
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.servers.imap import ImapServer
from tests.servers.smtp import ReceivedMail, SmtpSink

HELP = "help@example.org"


def mail(
    sender: str,
    subject: str,
    body: str,
    *,
    to: str = HELP,
    reply_to: EmailMessage | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A mail as a client would send it; ``reply_to``: our mail being answered (threads and token)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = str(reply_to["Reply-To"]) if reply_to is not None else to
    msg["Subject"] = subject if reply_to is None else f"Re: {reply_to['Subject']}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">"))
    if reply_to is not None:
        msg["In-Reply-To"] = str(reply_to["Message-ID"])
        msg["References"] = " ".join(filter(None, [str(reply_to.get("References") or ""), str(reply_to["Message-ID"])]))
        quoted = "\n".join("> " + line for line in reply_to.get_body(("plain",)).get_content().splitlines())  # type: ignore[union-attr]
        body = f"{body}\n\nOn some day the service desk wrote:\n{quoted}\n"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return bytes(msg)


class Desk:
    def __init__(self, data_dir: Path, database_url: str, imap: ImapServer, smtp: SmtpSink, **env: str) -> None:
        self.imap = imap
        self.smtp = smtp
        self.env = helpdesk_env(data_dir, database_url, imap, smtp, **env)
        self.app: App = build(config.load(self.env))
        self._seen = 0

    def close(self) -> None:
        self.app.engine.dispose()

    # -- mail ----------------------------------------------------------------------------------
    def deliver(self, *raws: bytes) -> None:
        """Put mail into the help mailbox and let the helpdesk fetch and process it."""
        for raw in raws:
            self.imap.append(raw)
        for mailbox in self.app.settings.mailboxes:
            poll_once(self.app.factory, self.app.intake, mailbox, lease_seconds=self.app.settings.lease_seconds)

    def send(self) -> list[ReceivedMail]:
        """Drain the outbox to the SMTP sink; the mails that arrived since the last call."""
        assert self.app.settings.smtp is not None
        sent, failed = send_once(self.app.factory, self.app.settings.smtp)
        assert failed == 0
        arrived = self.smtp.wait_for(self._seen + sent)[self._seen :]
        self._seen += len(arrived)
        return arrived

    # -- the real CLI ----------------------------------------------------------------------------
    def cli(self, *args: str, **env: str) -> str:
        return run({**self.env, **env}, *args).stdout.decode()

    def cli_json(self, *args: str, **env: str) -> Any:
        return run_json({**self.env, **env}, *args)

    # -- reading the database --------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        with transaction(self.app.factory) as session:
            yield session

    def tickets(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [
                {"id": t.id, "kind": t.kind.value, "status": t.status.value, "priority": t.priority,
                 "category": t.category, "item": t.catalogue_item, "due_at": t.due_at, "created_at": t.created_at, "subject": t.subject,
                 "requester": t.requester.email, "classification": t.classification}
                for t in s.scalars(select(Ticket).order_by(Ticket.id))
            ]

    def audit(self, action: str) -> list[AuditEntry]:
        with self.session() as s:
            rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))
            s.expunge_all()
            return rows

    def notes(self, ticket_id: int) -> list[str]:
        with self.session() as s:
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            return [m.text or "" for m in ticket.messages if m.internal]

    def outbox_purposes(self) -> list[tuple[str, list[str]]]:
        with self.session() as s:
            return [(o.purpose, list(o.recipients)) for o in s.scalars(select(Outbox).order_by(Outbox.id))]


def to(received: list[ReceivedMail], address: str) -> list[EmailMessage]:
    """The mails among ``received`` addressed to ``address``."""
    return [m.message for m in received if address in m.rcpt_tos]


def text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


@contextmanager
def desk(tmp_path: Path, database_url: str | None, imap: ImapServer, smtp: SmtpSink, **env: str) -> Iterator[Desk]:
    """A desk on ``database_url``; None: a SQLite file (for tests whose point is not the database)."""
    made = Desk(tmp_path / "data", database_url or f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}", imap, smtp, **env)
    try:
        yield made
    finally:
        made.close()


def add_users(d: Desk, roles: dict[str, str]) -> None:
    """Contacts with roles, as `helpdesk user add` makes them (in-process: no passwords needed here)."""
    from helpdesk.core import users
    from helpdesk.core.models import Role

    with d.session() as s:
        for address, role in roles.items():
            users.create_user(s, address, Role(role), None)
