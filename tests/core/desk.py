"""A helpdesk on a real database for conversation tests: deliver raw mail, read tickets and the outbox."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import tickets
from helpdesk.core.classify import load_rules
from helpdesk.core.db import transaction
from helpdesk.core.intake import Intake, IntakeResult, process_pending
from helpdesk.core.models import Outbox, Role, Ticket
from helpdesk.core.settings import ConversationSettings, EventSettings, Settings
from helpdesk.core.users import create_user
from helpdesk.mailgateway.parse import parse_message


def mail(
    sender: str = "alice@example.com",
    subject: str = "Printer on floor 3 is jammed",
    body: str = "The printer shows error 42.",
    *,
    to: str = "help@example.org",
    cc: str | None = None,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="client.example")
    msg["Date"] = "Wed, 25 Nov 2026 09:00:00 +0000"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


@dataclass
class Desk:
    factory: sessionmaker[Session]
    settings: Settings
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        self.intake = Intake(self.settings, load_rules(None), parse_message)

    def deliver(self, raw: bytes) -> IntakeResult:
        with transaction(self.factory) as session:
            inbound = self.intake.store(session, raw, source="test")
            assert inbound is not None
        [result] = process_pending(self.factory, self.intake)
        return result

    def ticket(self, number: int) -> dict:
        with self.factory() as session:
            found = tickets.get(session, number)
            assert found is not None
            return tickets.to_json(found)

    def tickets(self) -> list[int]:
        with self.factory() as session:
            return list(session.scalars(select(Ticket.id).order_by(Ticket.id)))

    def outbox(self, purpose: str | None = None) -> list[Outbox]:
        with self.factory() as session:
            query = select(Outbox).order_by(Outbox.id)
            if purpose:
                query = query.where(Outbox.purpose == purpose)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def sent(self, purpose: str | None = None) -> list[tuple[str, EmailMessage]]:
        """(recipient, parsed mail) for every queued mail."""
        found = []
        for row in self.outbox(purpose):
            parsed = email.message_from_bytes(row.raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append((row.recipients[0], parsed))
        return found

    def add_user(self, address: str, role: Role = Role.AGENT) -> None:
        with transaction(self.factory) as session:
            create_user(session, address, role, None)

    def clear_outbox(self) -> None:
        with transaction(self.factory) as session:
            for row in session.scalars(select(Outbox)):
                session.delete(row)


def make_desk(
    factory: sessionmaker[Session], tmp_path: Path, *, events: EventSettings | None = None, **conversation: object
) -> Desk:
    settings = Settings(
        data_dir=tmp_path,
        database_url="unused",
        secret_key="test-secret",
        conversation=ConversationSettings(**conversation),  # type: ignore[arg-type]
        events=events or EventSettings(),
    )
    return Desk(factory, settings)
