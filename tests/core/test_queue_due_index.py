"""The queue sorted by due date reads an index in order on SQLite and PostgreSQL, not a sort of every ticket."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, insert, text

from helpdesk.core import queueindex
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Role, Ticket, utcnow
from helpdesk.core.queue import QueueQuery, Sort, list_tickets

TICKETS = 4000


def _fill(session) -> None:
    now = utcnow()
    requester = session.scalar(insert(Contact).values(email="due@example.org", role=Role.USER).returning(Contact.id))
    statuses = ("new", "open", "pending", "closed", "resolved")
    session.execute(insert(Ticket), [
        {"kind": "incident", "category": "general", "impact": 3, "urgency": 3, "priority": "P4",
         "status": statuses[n % 5], "subject": f"t{n}", "requester_id": requester, "classification": [],
         "created_at": now, "updated_at": now,
         "due_at": None if n % 3 == 0 else now + timedelta(minutes=(n * 7919) % 10007)}
        for n in range(TICKETS)
    ])


def _plan_of_the_page(session, query: QueueQuery) -> tuple[list[Ticket], str]:
    engine = session.get_bind()
    seen: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "ORDER BY" in statement and "LIMIT" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        page = list_tickets(session, query).tickets
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    (statement, parameters), = seen
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    rows = session.connection().exec_driver_sql(explain + statement, parameters).all()
    return page, "\n".join(str(tuple(r)) for r in rows)


def test_queue_by_due_date_reads_the_due_index_in_order(session_factory):
    engine = session_factory.kw["bind"]
    with transaction(session_factory) as session:
        _fill(session)
    queueindex.ensure_sort_indexes(engine)
    queueindex.ensure_sort_indexes(engine)  # again at the next start: nothing to do
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    with transaction(session_factory) as session:
        for query in (QueueQuery(sort=Sort.DUE), QueueQuery(sort=Sort.DUE, open_only=True)):
            page, plan = _plan_of_the_page(session, query)
            assert queueindex.DUE_ORDER in plan, plan
            assert "TEMP B-TREE" not in plan and "Sort " not in plan, plan  # no sort of the matching tickets
            dues = [t.due_at for t in page]
            assert len(page) == 50 and None not in dues and dues == sorted(dues)
        last, _ = _plan_of_the_page(session, QueueQuery(sort=Sort.DUE, page=TICKETS // 50))
        assert {t.due_at for t in last} == {None}  # no due date: at the end
