"""Challenge-response filters (Boxbe, Spam Arrest) answer our mail with 'prove you are a person': automatic mail.

Answering them would start a loop, and taking them for bounces would silence a user whose mailbox works.
"""

from __future__ import annotations

from helpdesk.core.models import Contact, InboundStatus
from tests.core.desk import Desk, mail
from tests.core.test_conversation import _ack, desk  # noqa: F401 (desk is a fixture)


def _boxbe(original_id: str | None) -> bytes:
    """A Boxbe 'Action Required' notice as it answers a mail from an unknown sender (the helpdesk)."""
    thread = f"In-Reply-To: {original_id}\r\nReferences: {original_id}\r\n" if original_id else ""
    return (
        "Return-Path: <bounce-alice=example.com@boxbe.com>\r\n"
        "From: Alice Example via Boxbe <notify@boxbe.com>\r\nReply-To: alice@example.com\r\nTo: help@example.org\r\n"
        "Subject: Re: Your request was received (Action Required)\r\nMessage-ID: <bx-4711@boxbe.com>\r\n"
        f"{thread}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello help@example.org,\r\n\r\nI use Boxbe to protect my inbox. Your message has been placed in my "
        "Waiting List and has not been delivered to my inbox.\r\n\r\nTo make sure your messages reach me, please "
        "click the link below and add yourself to my Guest List:\r\nhttps://www.boxbe.com/anno?tc=0123_4567\r\n\r\n"
        "Thank you,\r\nalice@example.com\r\n\r\nPowered by Boxbe -- \"End Email Overload\"\r\n"
    ).encode()


def test_a_challenge_to_our_acknowledgement_is_kept_on_the_ticket_and_never_answered(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack_id = _ack(desk, first.ticket_id)["Message-ID"]
    desk.clear_outbox()
    result = desk.deliver(_boxbe(ack_id))
    assert result.ticket_id == first.ticket_id and not result.created
    assert desk.outbox() == []  # no acknowledgement, no agent notification
    assert desk.ticket(first.ticket_id)["messages"][-1]["subject"].endswith("(Action Required)")
    with desk.factory() as session:
        assert session.query(Contact).filter_by(undeliverable=True).count() == 0


def test_a_challenge_about_no_mail_of_ours_is_only_recorded(desk: Desk) -> None:
    result = desk.deliver(_boxbe(None))
    assert result.status is InboundStatus.IGNORED and result.ticket_id is None
    assert "challenge" in (result.reason or "")
    assert desk.outbox() == []
