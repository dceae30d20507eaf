"""Display names and subjects from mail are one line of plain text, and never a staff member's name."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import select

from helpdesk.core.models import Contact, Role
from tests.core.desk import Desk, make_desk, mail

AGENT = "agent@example.org"
# "Evil\r\nInjected: x" as an encoded word: how a CR/LF reaches a display name through a real parser.
EVIL = '"=?utf-8?q?Evil=0D=0AInjected:_x?="'


def _raw(sender: str, subject: str, body: str, **headers: str) -> bytes:
    """A mail written byte by byte: EmailMessage would refuse (or re-encode) the hostile headers."""
    head = {"From": sender, "To": "help@example.org", "Subject": subject, "Message-ID": f"<{abs(hash(body))}@x.example>",
            "Date": "Wed, 25 Nov 2026 09:00:00 +0000", **headers}
    return ("".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n" + body + "\r\n").encode()


def _name(desk: Desk, address: str) -> str | None:
    with desk.factory() as session:
        return session.scalars(select(Contact.name).where(Contact.email == address)).one()


def _injected(raw: bytes) -> list[str]:
    """Lines of an outbound mail (headers and every part, decoded) that start with an injected field."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    lines = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            lines += part.get_content().splitlines()
    return [line for line in lines if line.lstrip("<p>").startswith(("Injected", "Bcc"))]


@pytest.fixture
def desk(sqlite_session_factory, tmp_path) -> Desk:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.add_user(AGENT)
    return desk


def test_a_mail_from_an_agents_address_does_not_name_the_agent(desk: Desk) -> None:
    desk.deliver(_raw(f"{EVIL} <{AGENT}>", "My laptop will not boot", "It beeps three times."))
    assert _name(desk, AGENT) is None
    # Nor does an approver's, and the agent's replies are signed without anything planted.
    desk.add_user("sec@example.org", Role.APPROVER)
    desk.deliver(_raw(f"{EVIL} <sec@example.org>", "VPN token lost", "Need a new one."))
    assert _name(desk, "sec@example.org") is None
    user = desk.deliver(mail())
    [note] = [m for rcpt, m in desk.sent("agent notification")
              if rcpt == AGENT and m["X-Helpdesk-Ticket"] == str(user.ticket_id)]
    desk.deliver(_raw(f"{EVIL} <{AGENT}>", f"Re: {note['Subject']}", "On my way.", **{
        "To": note["Reply-To"], "In-Reply-To": note["Message-ID"]}))
    [reply] = [row for row in desk.outbox("reply") if row.recipients == ["alice@example.com"]]
    assert b"On my way." in reply.raw
    assert _injected(reply.raw) == [] and b"Evil" not in reply.raw


def test_a_requesters_name_is_one_line_without_control_characters_and_capped(desk: Desk) -> None:
    long = '"=?utf-8?q?Alice=0D=0ABcc:_boss@example.com=07=1B[31m' + "x" * 150 + '?="'
    result = desk.deliver(_raw(f"{long} <alice@example.com>", "Printer jammed", "Error 42."))
    name = _name(desk, "alice@example.com")
    assert name is not None and name.startswith("Alice Bcc: boss@example.com [31mxxx") and len(name) == 100
    assert not any(ord(c) < 32 or ord(c) == 127 for c in name)
    message = desk.ticket(result.ticket_id)["messages"][0]
    assert message["from"] == "alice@example.com"
    [ack] = desk.outbox("acknowledgement")
    assert _injected(ack.raw) == [] and b"\x1b" not in ack.raw and b"\x07" not in ack.raw


def test_a_subject_with_line_breaks_stays_one_line_in_every_mail(desk: Desk) -> None:
    result = desk.deliver(_raw("alice@example.com", "=?utf-8?q?Printer=0D=0AInjected:_yes=0A=0Abody?=", "Error 42."))
    assert desk.ticket(result.ticket_id)["subject"] == "Printer Injected: yes body"
    sent = desk.outbox()
    assert {row.purpose for row in sent} == {"acknowledgement", "agent notification"}
    for row in sent:
        assert _injected(row.raw) == [], row.purpose
