"""De-duplication by Message-ID needs evidence that it is the same mail: nothing that arrives is dropped
as a copy of an unrelated mail (CRLF mail quoting a Message-ID in its body, a Message-ID reused by a
monitoring tool or a stranger), while true copies still make one ticket."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import AuditEntry, Inbound, InboundStatus, Ticket
from tests.core.desk import make_desk


def crlf_mail(
    subject: str, body: str, *, sender: str = "alice@example.com", message_id: str | None = None,
    date: str = "Wed, 25 Nov 2026 09:00:00 +0000", in_reply_to: str | None = None,
) -> bytes:
    """A mail as IMAP and SMTP hand it over: CRLF line ends."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "help@example.org"
    msg["Subject"] = subject
    msg["Date"] = date
    if message_id:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(body)
    raw = msg.as_bytes(policy=SMTP)
    assert b"\r\n\r\n" in raw and b"\n\n" not in raw
    return raw


def _rows(factory: sessionmaker[Session]) -> list[Inbound]:
    with factory() as session:
        rows = list(session.scalars(select(Inbound).order_by(Inbound.id)))
        session.expunge_all()
        return rows


def test_crlf_mail_without_message_id_is_not_taken_for_the_mail_its_body_quotes(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    first = desk.deliver(crlf_mail("VPN is down", "Since 8:00.", message_id="<vpn-1@client.example>"))
    quoting = crlf_mail(
        "Headers of the phishing mail", "Here are the headers you asked for:\r\n\r\nMessage-ID: <vpn-1@client.example>\r\n",
        sender="bob@example.com",
    )
    second = desk.deliver(quoting)
    assert first.status is second.status is InboundStatus.PROCESSED
    assert second.ticket_id is not None and second.ticket_id != first.ticket_id
    assert [r.message_id for r in _rows(session_factory)] == ["vpn-1@client.example", None]
