"""Intake's hot path: a plain mail that opens a ticket costs a fixed, small number of ORM flushes.

Each flush is a pass of SQLAlchemy's unit of work (about half a millisecond of Python, whatever it
writes); bench/ingest.py showed them as the largest part of processing. Counted, not timed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import audit
from helpdesk.core.models import AuditEntry
from tests.core.desk import mail, make_desk


@contextmanager
def _statements(factory: sessionmaker[Session]) -> Iterator[list[str]]:
    engine = factory.kw["bind"]
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


@contextmanager
def _flushes() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(session: Session, _context: Any, _instances: Any) -> None:
        seen.append(", ".join(sorted({type(o).__name__ for o in [*session.new, *session.dirty]})))

    event.listen(Session, "before_flush", count)
    try:
        yield seen
    finally:
        event.remove(Session, "before_flush", count)


def test_a_plain_mail_is_stored_opens_its_ticket_and_is_acknowledged_in_four_flushes(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # SQLite: one process is the whole desk there (bench/ingest.py). PostgreSQL's workers chain the
    # audit entries in a flush of their own at commit, so that the writers' lock is held only then.
    session_factory = sqlite_session_factory
    desk = make_desk(session_factory, tmp_path)
    desk.deliver(mail(subject="Printer on floor 3 is jammed"))  # alice is known from now on
    with _flushes() as flushes:
        result = desk.deliver(mail(subject="Monitor flickers since this morning"))

    # The store's; the claim's; the new ticket's insert (its number is needed); the end of the mail
    # (audit entry, acknowledgement, the inbound row's status) with its savepoint.
    assert len(flushes) <= 4, flushes
    assert result.ticket_id is not None and result.created
    [ack] = [m for rcpt, m in desk.sent("acknowledgement") if "Monitor flickers" in str(m["Subject"])]
    assert ack["To"] == "alice@example.com"
    assert desk.ticket(result.ticket_id)["messages"][-1]["direction"] == "out"  # the acknowledgement, in the thread
    with session_factory() as session:
        assert audit.verify(session).ok
        opened = session.scalars(
            select(AuditEntry).where(AuditEntry.object_id == result.ticket_id, AuditEntry.action == "ticket.open")
        ).all()
        assert len(opened) == 1


def test_the_copy_check_of_a_mail_with_a_new_message_id_is_one_statement(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    desk.deliver(mail(subject="Printer on floor 3 is jammed"))
    with _statements(session_factory) as statements:
        result = desk.deliver(mail(subject="Monitor flickers since this morning"))

    assert result.created
    by_message_id = [s for s in statements if s.startswith("SELECT") and "FROM inbound" in s and "message_id =" in s]
    assert len(by_message_id) == 1, by_message_id


def test_a_copy_and_a_reused_message_id_are_still_told_apart(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    first = desk.deliver(mail(subject="Printer on floor 3 is jammed", message_id="<same@client.example>"))
    copy = desk.deliver(mail(subject="Printer on floor 3 is jammed", message_id="<same@client.example>"))
    other = desk.deliver(mail(subject="VPN drops every hour", message_id="<same@client.example>"))

    assert copy.status.value == "duplicate" and copy.ticket_id == first.ticket_id
    assert other.created and other.ticket_id != first.ticket_id
    assert other.reason is not None and f"also inbound {first.inbound_id}" in other.reason
