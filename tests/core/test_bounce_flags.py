"""Who a bounce silences: only someone our bounced mail really went to, never for a delay, and not for good."""

from __future__ import annotations

from core.models import Contact, InboundStatus
from tests.core.desk import Desk, mail
from tests.core.test_conversation import _ack, desk  # noqa: F401 (desk is a fixture)


def _flagged(desk: Desk) -> set[str]:
    with desk.factory() as session:
        return {c.email for c in session.query(Contact).filter_by(undeliverable=True)}


def _text_bounce(failed: str, original_id: str, *, sender: str = "MAILER-DAEMON@mx.example.com") -> bytes:
    return (
        f"From: {sender}\r\nTo: help@example.org\r\nSubject: Mail delivery failed: returning message to sender\r\n"
        "Message-ID: <b-1@mx.example.com>\r\nAuto-Submitted: auto-replied\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        f"  {failed}\r\n    mailbox unavailable\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n\r\n"
        f"Message-ID: {original_id}\r\nSubject: whatever\r\n\r\nHello\r\n"
    ).encode()


def test_a_bounce_flags_the_recipient_of_our_bounced_mail(desk: Desk) -> None:
    first = desk.deliver(mail())
    result = desk.deliver(_text_bounce("alice@example.com", _ack(desk, first.ticket_id)["Message-ID"]))
    assert result.ticket_id == first.ticket_id and result.reason == "bounce attached"
    assert _flagged(desk) == {"alice@example.com"}


def test_a_bounce_of_no_mail_of_ours_flags_nobody(desk: Desk) -> None:
    desk.deliver(mail())  # alice is a contact
    forged = desk.deliver(_text_bounce("alice@example.com", "<made-up@evil.example>", sender="MAILER-DAEMON@evil.example"))
    assert forged.status is InboundStatus.IGNORED and "no known mail" in (forged.reason or "")
    assert _flagged(desk) == set()


def test_a_bounce_naming_someone_our_mail_did_not_go_to_flags_nobody(desk: Desk) -> None:
    first = desk.deliver(mail())
    desk.deliver(mail("bob@example.com", "Another problem", "Printer."))  # bob is a contact too
    desk.deliver(_text_bounce("bob@example.com", _ack(desk, first.ticket_id)["Message-ID"]))
    assert _flagged(desk) == set()


def test_a_delay_warning_flags_nobody(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack_id = _ack(desk, first.ticket_id)["Message-ID"]
    delay = (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.com>\r\nTo: help@example.org\r\n"
        "Subject: Warning: message 1abc-0002 delayed 24 hours\r\nAuto-Submitted: auto-replied\r\n"
        "Message-ID: <d-1@mx.example.com>\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n"
        "A message that you sent has not yet been delivered to one or more of its\r\n"
        "recipients after more than 24 hours on the queue on mx.example.com.\r\n\r\n"
        "  alice@example.com\r\n    host mx.example.com: connection timed out\r\n\r\n"
        "No action is required on your part. Delivery attempts will continue for\r\nsome time.\r\n\r\n"
        "------ This is a copy of the message's headers. ------\r\n\r\n"
        f"Message-ID: {ack_id}\r\n"
    ).encode()
    result = desk.deliver(delay)
    assert result.ticket_id == first.ticket_id  # still attached for the agents to see
    assert _flagged(desk) == set()


def test_writing_in_again_lifts_the_flag(desk: Desk) -> None:
    first = desk.deliver(mail())
    desk.deliver(_text_bounce("alice@example.com", _ack(desk, first.ticket_id)["Message-ID"]))
    assert _flagged(desk) == {"alice@example.com"}
    desk.clear_outbox()
    second = desk.deliver(mail("alice@example.com", "New laptop please", "My mailbox works again."))
    assert _flagged(desk) == set()
    assert [rcpt for rcpt, _ in desk.sent("acknowledgement")] == ["alice@example.com"]
    assert second.created



def test_a_users_mail_forwarded_to_us_by_gmail_is_not_taken_for_our_own(desk: Desk) -> None:
    # Gmail's forwarding rewrites the envelope to a sub-address of the forwarding mailbox: ours.
    forwarded = (
        "Return-Path: <help+caf_=desk=example.net@example.org>\r\nFrom: Alice <alice@example.com>\r\n"
        "To: help@example.org\r\nSubject: Laptop will not boot\r\nMessage-ID: <gm-1@example.com>\r\n\r\nIt beeps.\r\n"
    ).encode()
    result = desk.deliver(forwarded)
    assert result.created and result.status is InboundStatus.PROCESSED, result.reason
    # Our own mail coming back is still recognised by its envelope.
    echoed = ("Return-Path: <help@example.org>\r\nFrom: Someone <someone@example.com>\r\nTo: help@example.org\r\n"
              "Subject: hi\r\nMessage-ID: <e-1@example.com>\r\n\r\nx\r\n").encode()
    assert "own" in (desk.deliver(echoed).reason or "")
