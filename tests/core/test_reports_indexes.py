"""The reports read narrow indexes over the tickets, never the whole ticket rows (SQLite's plans)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from helpdesk.core import reports, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Ticket, TicketKind, utcnow


def test_report_and_weekly_series_scan_covering_indexes_not_the_ticket_table(sqlite_session_factory):
    engine = sqlite_session_factory.kw["bind"]
    with transaction(sqlite_session_factory) as session:
        user = tickets.contact_for(session, "ida@example.org")
        for n in range(30):
            tickets.open_ticket(session, requester=user, subject=f"t{n}", kind=TicketKind.INCIDENT)
    statements: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM ticket" in statement and "EXPLAIN" not in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with transaction(sqlite_session_factory) as session:
            figures = reports.report(session, utcnow())
            reports.weekly_counts(session, Ticket.priority, utcnow() - timedelta(weeks=12), 12)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert figures["tickets"] == 30 and figures["sla"]["response"]["running"] == 30
    assert len(statements) >= 5
    with engine.connect() as conn:
        for statement in statements:
            plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                              _placeholders(statement)))
            assert "SCAN ticket" not in plan or "COVERING INDEX" in plan or "SEARCH ticket" in plan, (statement, plan)


def _placeholders(statement: str) -> tuple[None, ...]:
    return (None,) * statement.count("?")
