"""Pages of a text search: the same tickets, once each, in the queue's order, on both databases.

On SQLite a page sorted by number or relevance is read from the FTS5 index's matches joined to their
tickets (in ticket order, only as far as the page needs); the index keeps ticket subjects beside the
messages under the same ticket-ordered keys, and an index of the earlier layout (subjects in a table
of their own) is moved over by ensure_index.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Direction, Message, Ticket, TicketStatus
from helpdesk.core.queue import QueueQuery, Sort, list_tickets
from helpdesk.core.search import ensure_index
from tests.web.conftest import make_ticket


def _reply(factory: sessionmaker[Session], number: int, text_: str, times: int = 1) -> None:
    with transaction(factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        for _ in range(times):
            tickets.append_message(session, ticket, Message(
                direction=Direction.OUT, from_address="agent@example.org", subject="Re", text=text_))


def _pages(factory: sessionmaker[Session], query: QueueQuery) -> tuple[list[int], int]:
    """Every page's tickets in order, and the total each page gave."""
    found, totals, page = [], set(), 1
    with factory() as session:
        while True:
            listed = list_tickets(session, replace(query, page=page))
            found += [t.id for t in listed.tickets]
            totals.add(listed.total)
            if page >= listed.pages:
                break
            page += 1
    assert len(totals) == 1
    return found, totals.pop()


def test_each_page_of_a_search_holds_the_next_matching_tickets_once(session_factory: sessionmaker[Session]) -> None:
    ensure_index(session_factory.kw["bind"])
    made = [make_ticket(session_factory, f"Request {chr(97 + i)}", "nothing to see").number for i in range(9)]
    by_subject = make_ticket(session_factory, "Wombat printer", "it is broken").number
    _reply(session_factory, made[1], "the wombat ate the cable")
    _reply(session_factory, made[4], "wombat again, wombat everywhere", times=3)  # several matching messages
    _reply(session_factory, made[6], "no wombat here? a wombat")
    _reply(session_factory, made[7], "a wombat")
    _reply(session_factory, made[8], "wombat")
    with transaction(session_factory) as session:
        resolved = session.get(Ticket, made[7])
        assert resolved is not None
        resolved.status = TicketStatus.RESOLVED
    matching = sorted([made[1], made[4], made[6], made[7], made[8], by_subject], reverse=True)
    unresolved = [n for n in matching if n != made[7]]

    assert _pages(session_factory, QueueQuery(text="wombat", per_page=2)) == (matching, 6)
    assert _pages(session_factory, QueueQuery(text="wombat", open_only=True, per_page=2)) == (unresolved, 5)
    assert _pages(session_factory, QueueQuery(text="wombat", sort=Sort.OLDEST, per_page=4)) == (matching[::-1], 6)
    assert _pages(session_factory, QueueQuery(text="wombat", priority="P1", per_page=2)) == ([], 0)
    ranked, total = _pages(session_factory, QueueQuery(text="wombat", sort=Sort.RELEVANCE, open_only=True, per_page=2))
    assert sorted(ranked, reverse=True) == unresolved and total == 5
    assert ranked[0] in (by_subject, made[4])  # a short subject with the word, or the word six times
    # An agent's groups first (the console's default view), each part newest first.
    with transaction(session_factory) as session:
        for number in (made[1], made[6], by_subject):
            ticket = session.get(Ticket, number)
            assert ticket is not None
            ticket.group = "network"
    theirs = [by_subject, made[6], made[1]]
    others = [made[8], made[7], made[4]]
    for per_page in (2, 3, 4):
        assert _pages(session_factory, QueueQuery(text="wombat", first=("network",), per_page=per_page)) == (
            theirs + others, 6)
    assert _pages(session_factory, QueueQuery(text="wombat", first=("network",), sort=Sort.OLDEST, per_page=2)) == (
        theirs[::-1] + others[::-1], 6)
    ranked, _ = _pages(session_factory, QueueQuery(text="wombat", first=("network",), sort=Sort.RELEVANCE, per_page=2))
    assert sorted(ranked[:3]) == sorted(theirs) and sorted(ranked[3:]) == sorted(others)
    with session_factory() as session:
        for sort in (Sort.NEWEST, Sort.RELEVANCE):
            for cap, counted in ((5, (5, True)), (6, (6, False)), (None, (6, False))):
                for page in (1, 9):  # a page past the last one still counts
                    listed = list_tickets(session, QueueQuery(text="wombat", sort=sort, page=page), count_cap=cap)
                    assert (listed.total, listed.capped) == counted, (sort, cap, page)
    # A ticket number is found by its number too (the text is no index word then).
    assert _pages(session_factory, QueueQuery(text=f"#{made[2]}", sort=Sort.RELEVANCE)) == ([made[2]], 1)


def _statement_steps(factory: sessionmaker[Session], query: QueueQuery) -> int:
    """SQLite virtual machine steps (in tens) of the page's own statement, not the count's."""
    steps: dict[str, int] = {}
    engine = factory.kw["bind"]

    def start(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        def step() -> int:
            steps[statement] += 1
            return 0

        steps[statement] = 0
        conn.connection.driver_connection.set_progress_handler(step, 10)

    event.listen(engine, "before_cursor_execute", start)
    try:
        with factory() as session:
            list_tickets(session, query)
    finally:
        event.remove(engine, "before_cursor_execute", start)
    (page,) = [n for statement, n in steps.items() if "message_search" in statement and "count(" not in statement]
    return page


def test_on_sqlite_the_newest_page_reads_the_index_only_as_far_as_the_page(
    sqlite_session_factory: sessionmaker[Session],
) -> None:
    factory = sqlite_session_factory
    ensure_index(factory.kw["bind"])
    oldest = make_ticket(factory, "Printer", "toner is low").number
    make_ticket(factory, "Toner order", "please order toner")
    query = QueueQuery(text="toner", per_page=1)
    few = _statement_steps(factory, query)
    _reply(factory, oldest, "toner toner, and still more toner", times=400)  # matches the page never reaches
    many = _statement_steps(factory, query)
    assert many < few + 50, (few, many)  # collecting the 400 more matches first took some 200 more


def test_an_index_of_the_earlier_layout_is_moved_over(sqlite_session_factory: sessionmaker[Session]) -> None:
    # Before: subjects in an external content table of their own, messages keyed as now.
    factory = sqlite_session_factory
    engine = factory.kw["bind"]
    made = make_ticket(factory, "Capybara escaped", "the enclosure is open")
    with engine.begin() as conn:
        conn.execute(text("CREATE VIRTUAL TABLE message_search USING fts5(subject, text, content='')"))
        conn.execute(text("INSERT INTO message_search(rowid, subject, text)"
                          " SELECT ticket_id * 1000000000 + id, subject, text FROM message"))
        conn.execute(text("CREATE VIRTUAL TABLE ticket_search USING fts5(subject, content='ticket', content_rowid='id')"))
        conn.execute(text("INSERT INTO ticket_search(ticket_search) VALUES ('rebuild')"))
        conn.execute(text("CREATE TRIGGER ticket_search_au AFTER UPDATE OF subject ON ticket BEGIN"
                          " INSERT INTO ticket_search(ticket_search, rowid, subject) VALUES ('delete', old.id, old.subject);"
                          " INSERT INTO ticket_search(rowid, subject) VALUES (new.id, new.subject); END"))
        conn.execute(text("UPDATE ticket SET subject = 'Ocelot escaped' WHERE id = :n"), {"n": made.number})
    ensure_index(engine)
    ensure_index(engine)  # once moved, nothing to do
    with factory() as session:
        assert session.scalar(text("SELECT count(*) FROM sqlite_master WHERE name LIKE 'ticket_search%'"
                                   " AND type IN ('table', 'trigger')")) == 0
        assert [t.id for t in list_tickets(session, QueueQuery(text="ocelot")).tickets] == [made.number]
        assert [t.id for t in list_tickets(session, QueueQuery(text="enclosure")).tickets] == [made.number]
    with transaction(factory) as session:
        ticket = session.get(Ticket, made.number)
        assert ticket is not None
        ticket.subject = "Lynx escaped"
    with factory() as session:
        assert [t.id for t in list_tickets(session, QueueQuery(text="lynx")).tickets] == [made.number]
        assert list_tickets(session, QueueQuery(text="ocelot")).tickets == []
        session.execute(text("INSERT INTO message_search(message_search) VALUES ('integrity-check')"))
