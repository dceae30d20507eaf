"""The ticket page says what the parser found: signed (not verified), encrypted (could not be
read), and a calendar invitation's summary, time and organiser."""

from __future__ import annotations

from flask.testing import FlaskClient

from helpdesk.core.db import transaction
from helpdesk.core.mail import Protection
from helpdesk.core.models import Message
from tests.web.conftest import make_ticket

EVENT = {"summary": "Printer maintenance", "start": "2025-03-10T09:00:00+01:00", "end": "2025-03-10T10:00:00+01:00",
         "organiser": "Anna Berg <anna@example.org>", "location": "Room 3.14", "method": "REQUEST"}


def _with(factory, subject: str, **fields) -> int:  # noqa: ANN001, ANN003
    made = make_ticket(factory, subject, "" if fields.get("protection") is Protection.ENCRYPTED else "Hello")
    with transaction(factory) as session:
        message = session.get(Message, made.message_id)
        for name, value in fields.items():
            setattr(message, name, value)
    return made.number


def test_ticket_page_says_signed_encrypted_and_invitation(as_agent: FlaskClient, factory) -> None:  # noqa: ANN001
    signed = _with(factory, "Signed", protection=Protection.SIGNED)
    encrypted = _with(factory, "Encrypted", protection=Protection.ENCRYPTED)
    invite = _with(factory, "Invite", calendar=[EVENT])
    page = as_agent.get(f"/tickets/{signed}").get_data(as_text=True)
    assert "signed, not verified" in page and "could not be read" not in page
    page = as_agent.get(f"/tickets/{encrypted}").get_data(as_text=True)
    assert "encrypted" in page and "could not be read" in page
    page = as_agent.get(f"/tickets/{invite}").get_data(as_text=True)
    assert "Printer maintenance" in page and "2025-03-10T09:00:00+01:00" in page
    assert "Anna Berg &lt;anna@example.org&gt;" in page and "Room 3.14" in page
    assert "signed, not verified" not in page
