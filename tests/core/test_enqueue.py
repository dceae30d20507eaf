"""enqueue hands back what it wrote: the outbox rows and the thread's copy of the mail."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.core import tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Direction, Message, TicketKind
from helpdesk.core.notify import AutoSubmitted, enqueue
from tests.core.desk import make_desk


def test_enqueue_returns_the_message_it_records_in_the_thread(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    with transaction(desk.factory) as session:
        requester = tickets.contact_for(session, "alice@example.com")
        ticket = tickets.open_ticket(session, requester=requester, subject="Printer", kind=TicketKind.INCIDENT)
        queued = enqueue(session, desk.settings, template="reply", ticket=ticket, to=["alice@example.com"],
                         context={"text": "Fixed.", "author": requester}, auto_submitted=AutoSubmitted.NO)
        # A later message in the thread does not change what enqueue said it recorded.
        tickets.add_note(session, ticket, requester, "a note after the reply")
        unrecorded = enqueue(session, desk.settings, template="reply", ticket=ticket, to=["alice@example.com"],
                             context={"text": "Again.", "author": requester}, record=False)
        number, recorded_id = ticket.id, queued.message.id if queued.message else None
        assert [row.rcpt for row in queued.rows] == ["alice@example.com"]
        assert unrecorded.message is None and len(unrecorded.rows) == 1
    with desk.factory() as session:
        [out] = session.scalars(select(Message).where(Message.ticket_id == number, Message.direction == Direction.OUT))
        assert out.id == recorded_id and "Fixed." in (out.text or "")
        assert out.message_id == queued.rows[0].message_id


def test_enqueue_to_nobody_records_nothing(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    with transaction(desk.factory) as session:
        requester = tickets.contact_for(session, "alice@example.com")
        requester.undeliverable = True  # every recipient bounces
        ticket = tickets.open_ticket(session, requester=requester, subject="Printer", kind=TicketKind.INCIDENT)
        queued = enqueue(session, desk.settings, template="reply", ticket=ticket, to=["alice@example.com"],
                         context={"text": "Fixed.", "author": requester}, auto_submitted=AutoSubmitted.NO)
        assert queued.rows == [] and queued.message is None
