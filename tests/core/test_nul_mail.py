"""A mail with NUL characters is a ticket on PostgreSQL as on SQLite (PostgreSQL's text refuses NUL)."""

from __future__ import annotations

from helpdesk.core.models import InboundStatus
from tests.core.desk import make_desk


def test_mail_with_nul_characters_becomes_a_ticket_on_every_database(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    raw = (b"From: Al\x00ice <alice@example.com>\r\nTo: help@example.org\r\nSubject: Printer\x00 broken\r\n"
           b"Message-ID: <nul-1@example.com>\r\nIn-Reply-To: <a\x00b@example.com>\r\n"
           b"References: <c\x00d@example.com> <e@example.com>\r\n\r\nIt prints\x00 nothing.\r\n")
    result = desk.deliver(raw)
    assert result.status is InboundStatus.PROCESSED and result.created, result.reason
    ticket = desk.ticket(result.ticket_id)
    assert ticket["subject"] == "Printer\ufffd broken"
    assert "It prints\ufffd nothing." in ticket["messages"][0]["text"]


def test_a_quarantine_reason_is_one_line_without_the_sql_and_the_mails_values() -> None:
    from helpdesk.core.intake import _why

    exc = ValueError("(psycopg.DataError) cannot store this\n[SQL: INSERT INTO message ...]\n[parameters: ('secret text',)]")
    assert _why(exc) == "ValueError: (psycopg.DataError) cannot store this"
    assert _why(RuntimeError()) == "RuntimeError: "
