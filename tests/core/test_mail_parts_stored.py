"""What the parser read of signed, encrypted and invitation mail is stored with the message,
on SQLite and PostgreSQL, so the console can say it."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.core.mail import Protection
from helpdesk.core.models import Attachment, Direction, InboundStatus, Message
from tests.core.desk import make_desk

HEAD = (b"From: Anna <anna@example.org>\r\nTo: help@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
        b"MIME-Version: 1.0\r\n")
SIGNED = HEAD % (b"VPN token", b"signed-1") + (
    b'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=S\r\n\r\n'
    b"--S\r\nContent-Type: text/plain\r\n\r\nPlease reset my VPN token.\r\n"
    b"--S\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nabc\r\n"
    b"-----END PGP SIGNATURE-----\r\n--S--\r\n"
)
ENCRYPTED = HEAD % (b"Secret", b"encrypted-1") + (
    b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n"
)
INVITE = HEAD % (b"Printer maintenance", b"invite-1") + (
    b"Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
    b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20250301T120000Z\r\n"
    b"ORGANIZER;CN=Anna Berg:mailto:anna@example.org\r\nSUMMARY:Printer maintenance\r\n"
    b"DTSTART:20250310T080000Z\r\nDTEND:20250310T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _stored(desk, session_factory, raw: bytes) -> tuple[Message, list[str]]:  # noqa: ANN001
    result = desk.deliver(raw)
    assert result.status is InboundStatus.PROCESSED and result.created, result.reason
    with session_factory() as session:
        message = session.scalars(select(Message).where(Message.ticket_id == result.ticket_id, Message.direction == Direction.IN)).one()
        files = session.scalars(select(Attachment.filename).where(Attachment.message_id == message.id)).all()
        session.expunge(message)
    return message, list(files)


def test_signed_encrypted_and_invitation_mail_is_stored_as_read(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    signed, files = _stored(desk, session_factory, SIGNED)
    assert (signed.protection, signed.text, files) == (Protection.SIGNED, "Please reset my VPN token.", ["signature.asc"])
    encrypted, files = _stored(desk, session_factory, ENCRYPTED)
    assert (encrypted.protection, encrypted.text, files) == (Protection.ENCRYPTED, "", ["smime.p7m"])
    invite, files = _stored(desk, session_factory, INVITE)
    assert invite.protection is None and files == ["invite.ics"]
    assert invite.calendar == [{
        "summary": "Printer maintenance", "start": "2025-03-10T08:00:00+00:00", "end": "2025-03-10T09:00:00+00:00",
        "organiser": "Anna Berg <anna@example.org>", "location": "", "method": "REQUEST",
    }]
