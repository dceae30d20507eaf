"""De-duplication by Message-ID needs evidence that it is the same mail: nothing that arrives is dropped
as a copy of an unrelated mail (CRLF mail quoting a Message-ID in its body, a Message-ID reused by a
monitoring tool or a stranger), while true copies still make one ticket."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import AuditEntry, Inbound, InboundStatus, Ticket
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


def test_same_message_id_on_a_different_mail_is_processed_and_the_reuse_recorded(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    reused = "<alert@scanner.example>"  # a device that gives every mail the same Message-ID
    first = desk.deliver(crlf_mail("Scan 1", "Scanned page one.", sender="scanner@example.com", message_id=reused))
    second = desk.deliver(crlf_mail("Scan 2", "Scanned page two.", sender="scanner@example.com", message_id=reused,
                                     date="Wed, 25 Nov 2026 09:05:00 +0000"))
    stranger = desk.deliver(crlf_mail("Printer jammed", "Error 42.", sender="eve@example.net", message_id=reused))
    results = [first, second, stranger]
    assert [r.status for r in results] == [InboundStatus.PROCESSED] * 3
    assert len({r.ticket_id for r in results}) == 3 and len(desk.tickets()) == 3
    rows = _rows(session_factory)
    assert rows[0].reason is None or "reused" not in rows[0].reason
    for row in rows[1:]:
        assert row.reason is not None and f"Message-ID reused (also inbound {rows[0].id})" in row.reason
    with session_factory() as session:
        noted = list(session.scalars(select(AuditEntry.object_id).where(AuditEntry.action == "inbound.message_id_reused")))
    assert sorted(noted) == sorted(r.ticket_id for r in results[1:])  # shown in those tickets' trail

    # Replies to the reused Message-ID: the newest mail's sender continues that ticket; the others
    # never join a stranger's ticket through it.
    eve = desk.deliver(crlf_mail("Re: Printer jammed", "Still jammed.", sender="eve@example.net",
                                 message_id="<reply-1@example.net>", in_reply_to=reused))
    assert eve.status is InboundStatus.PROCESSED and eve.ticket_id == stranger.ticket_id
    scanner = desk.deliver(crlf_mail("Re: Scan 2", "Page three.", sender="scanner@example.com",
                                     message_id="<reply-2@scanner.example>", in_reply_to=reused))
    assert scanner.status is InboundStatus.PROCESSED and scanner.ticket_id != stranger.ticket_id
    incoming = [m["from"] for m in desk.ticket(stranger.ticket_id)["messages"] if m["direction"] == "in"]
    assert incoming == ["eve@example.net"] * 2


def test_copies_of_one_mail_still_make_one_ticket(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    desk = make_desk(session_factory, tmp_path)
    raw = crlf_mail("Outlook crashes", "On start.", message_id="<copy-1@client.example>")
    first = desk.deliver(raw)
    again = desk.deliver(raw)  # re-fetched after a UIDVALIDITY change: the same bytes
    # Delivered to a second mailbox: the same mail with other trace headers in front.
    other_box = b"Delivered-To: it@example.org\r\nReceived: from mx2.example.org by imap2\r\n" + raw
    copy = desk.deliver(other_box)
    # Kept as a file with LF line ends, or by an old Mac with CR: still the same mail.
    unix, mac = desk.deliver(raw.replace(b"\r\n", b"\n")), desk.deliver(raw.replace(b"\r\n", b"\r"))
    assert first.status is InboundStatus.PROCESSED
    assert [r.status for r in (again, copy, unix, mac)] == [InboundStatus.DUPLICATE] * 4
    assert {r.ticket_id for r in (again, copy, unix, mac)} == {first.ticket_id}
    with session_factory() as session:
        assert len(list(session.scalars(select(Ticket.id)))) == 1
