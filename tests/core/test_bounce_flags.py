"""Who a bounce silences: only someone our bounced mail really went to, never for a delay, and not for good."""

from __future__ import annotations

from helpdesk.core.models import Contact, InboundStatus
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


# A real Postfix delay notice whose DSN fields are plain text (no multipart/report): sisimai's rfc3464-34.
POSTFIX_DELAY = "sisimai-set-of-emails/maildir/bsd/rfc3464-34.eml"


def test_a_postfix_delay_without_mime_flags_nobody(desk: Desk, corpus_dir) -> None:
    first = desk.deliver(mail())
    ack_id = _ack(desk, first.ticket_id)["Message-ID"]
    raw = (corpus_dir / POSTFIX_DELAY).read_bytes()
    # The same mail about our acknowledgement to alice (its recipient and Message-ID put in).
    raw = raw.replace(b"kijitora@example.com", b"alice@example.com")
    raw = raw.replace(b"<20170429233445.FFFFFFFF02@smtp.neko.example.org>", ack_id.encode())
    result = desk.deliver(raw)
    assert _flagged(desk) == set()
    assert result.ticket_id == first.ticket_id and result.reason == "delay notice attached"


def _dsn_delay(original_id: str, *, actions: tuple[str, ...] = ("delayed",)) -> bytes:
    """A multipart/report DSN (RFC 3464) as Postfix writes it for mail still in its queue."""
    recipients = "".join(
        f"\r\nFinal-Recipient: rfc822; {who}@example.com\r\nOriginal-Recipient: rfc822;{who}@example.com\r\n"
        f"Action: {action}\r\nStatus: {'4.4.1' if action == 'delayed' else '5.1.1'}\r\n"
        f"Diagnostic-Code: X-Postfix; connect to mx.example.com[192.0.2.7]:25: Connection timed out\r\n"
        + ("Will-Retry-Until: Sun, 29 Nov 2026 09:00:01 +0000 (UTC)\r\n" if action == "delayed" else "")
        for who, action in zip(("alice", "bob"), actions)
    )
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "Subject: Delayed Mail (still being retried)\r\nTo: help@example.org\r\nAuto-Submitted: auto-replied\r\n"
        "Message-ID: <20261125130001.AB12@mx.example.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.example.org.\r\n\r\n"
        "####################################################################\r\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
        "####################################################################\r\n\r\n"
        "Your message could not be delivered for more than 4 hour(s).\r\nIt will be retried until it is 5 day(s) old.\r\n\r\n"
        "<alice@example.com>: connect to mx.example.com[192.0.2.7]:25: Connection timed out\r\n\r\n"
        "--B1\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\nX-Postfix-Queue-ID: AB12\r\n"
        "Arrival-Date: Wed, 25 Nov 2026 09:00:01 +0000 (UTC)\r\n"
        f"{recipients}\r\n"
        "--B1\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: help@example.org\r\nTo: alice@example.com\r\nMessage-ID: {original_id}\r\nSubject: [#1] ack\r\n\r\n"
        "--B1--\r\n"
    ).encode()


def test_a_delayed_dsn_is_attached_as_a_delay_and_flags_nobody(desk: Desk) -> None:
    first = desk.deliver(mail())
    result = desk.deliver(_dsn_delay(_ack(desk, first.ticket_id)["Message-ID"]))
    assert result.ticket_id == first.ticket_id and result.reason == "delay notice attached"
    assert _flagged(desk) == set()
    assert len(desk.outbox("acknowledgement")) == 1  # only the first mail's: a delay is never answered


def test_a_dsn_with_a_failure_beside_a_delay_is_a_bounce(desk: Desk) -> None:
    first = desk.deliver(mail())
    result = desk.deliver(_dsn_delay(_ack(desk, first.ticket_id)["Message-ID"], actions=("failed", "delayed")))
    assert result.reason == "bounce attached"
    assert _flagged(desk) == {"alice@example.com"}
