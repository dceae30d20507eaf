"""A huge To/Cc list: intake stays linear (a bounded number of SQL statements), makes at most the cap of
watchers, records the rest, and no later mail of the ticket goes to more than the cap.

A review ingested 2,500 Cc addresses in 4 s, 10,000 in 124 s, 60,000 never (the database stayed locked),
and resolving such a ticket queued 2,800 mails to strangers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Contact, Ticket, TicketStatus, Watcher
from helpdesk.core.notify import notify_status
from helpdesk.core.settings import ConversationSettings
from tests.core.desk import Desk, mail, make_desk

CAP = ConversationSettings().max_watchers


def _cc(count: int, start: int = 0) -> str:
    return ", ".join(f"person{n}@example.net" for n in range(start, start + count))


def _many_cc(count: int) -> bytes:
    """A mail with ``count`` Cc addresses, in Cc headers of 1,000 (each header is read up to 64 kB)."""
    headers = "".join(f"Cc: {_cc(min(1000, count - start), start)}\r\n" for start in range(0, count, 1000))
    return (
        "From: alice@example.com\r\nTo: help@example.org\r\n" + headers
        + "Subject: Printer jammed again\r\nMessage-ID: <many-cc@client.example>\r\n\r\nStill jammed.\r\n"
    ).encode()


@contextmanager
def _statements(factory: sessionmaker[Session]) -> Iterator[list[str]]:
    engine = factory.kw["bind"]
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _resolve(desk: Desk, number: int) -> int:
    """Resolve the ticket as an agent does; the number of resolution mails queued."""
    desk.clear_outbox()
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        tickets.change(session, ticket, "agent@example.org", status=TicketStatus.RESOLVED)
        notify_status(session, desk.settings, ticket, actor="agent@example.org")
    return len(desk.outbox("resolution"))


def test_a_mail_with_5000_cc_is_taken_in_bounded_statements_and_makes_at_most_the_cap_of_watchers(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    with _statements(session_factory) as small:
        desk.deliver(mail(subject="Printer jammed", cc=_cc(3, start=90000)))
    with _statements(session_factory) as big:
        result = desk.deliver(_many_cc(5000))

    assert len(big) <= len(small) + 3, f"{len(big)} statements for 5,000 Cc, {len(small)} for 3"
    assert result.ticket_id is not None
    ticket = desk.ticket(result.ticket_id)
    assert ticket["watchers"] == [f"person{n}@example.net" for n in range(CAP)]  # the first ones, in order
    assert len(ticket["messages"][0]["cc"]) == 5000  # every address stays recorded on the message
    with desk.factory() as session:
        [capped] = session.scalars(
            select(AuditEntry).where(AuditEntry.object_id == result.ticket_id, AuditEntry.action == "ticket.watchers_capped")
        ).all()
        assert capped.after is not None and capped.after["left_out"] == 5000 - CAP
        assert session.scalar(select(Contact.id).where(Contact.email == f"person{CAP}@example.net")) is None

    assert _resolve(desk, result.ticket_id) <= CAP + 1  # the watchers and the requester, nobody else


def test_replies_with_more_cc_never_take_a_ticket_past_the_cap(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path, max_watchers=5)
    first = desk.deliver(mail(cc=_cc(3), message_id="<first@client.example>"))
    desk.deliver(mail(subject="Re: Printer", cc=_cc(10, start=100), in_reply_to="<first@client.example>"))
    assert first.ticket_id is not None
    watchers = desk.ticket(first.ticket_id)["watchers"]
    assert watchers == [*(f"person{n}@example.net" for n in range(3)), "person100@example.net", "person101@example.net"]
    assert _resolve(desk, first.ticket_id) == 6


def test_a_ticket_with_watchers_past_the_cap_from_before_mails_at_most_the_cap(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    result = desk.deliver(mail())
    assert result.ticket_id is not None
    with transaction(desk.factory) as session:  # watchers stored by an older release, without the cap
        contacts = [Contact(email=f"old{n}@example.net") for n in range(CAP * 3)]
        session.add_all(contacts)
        session.flush()
        session.add_all(Watcher(ticket_id=result.ticket_id, contact_id=c.id) for c in contacts)
    assert _resolve(desk, result.ticket_id) == CAP + 1
