"""Queue search on both databases: FTS5 on SQLite, tsvector and GIN indexes on PostgreSQL."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import queue, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Direction, Message, Role, Ticket, TicketKind
from helpdesk.core.queue import QueueQuery, Sort, list_tickets
from helpdesk.core.search import UnknownSearchLanguage, ensure_index, fts_query, ts_query
from helpdesk.core.settings import Settings
from helpdesk.core.users import create_user, issue_api_token
from helpdesk.web import create_app
from tests.web.conftest import PASSWORD, STAFF, login, make_ticket


def _found(session: Session, text: str) -> list[int]:
    return [t.id for t in list_tickets(session, QueueQuery(text=text)).tickets]


def test_search_matches_subjects_and_texts_on_each_database(session_factory: sessionmaker[Session]) -> None:
    ensure_index(session_factory.kw["bind"])
    vpn = make_ticket(session_factory, "VPN down", "tunnel keeps dropping since the update")
    printer = make_ticket(session_factory, "Printer 3rd floor", "paper jam, 100% of jobs fail")
    with session_factory() as session:
        found = partial(_found, session)
        assert found("vpn") == [vpn.number]
        assert found("tunnel") == [vpn.number]
        assert found("paper jam") == [printer.number]
        assert found(f"#{printer.number}") == [printer.number]
        assert found("nothing like it") == []
        assert found("100%") == [printer.number]


def test_user_text_cannot_inject_fts_syntax() -> None:
    assert fts_query('a" OR b NEAR(cat') == '"a" "OR" "b" "NEAR" "cat"*'
    assert fts_query("  ...  ") is None


def test_a_short_last_word_is_matched_whole_not_as_a_prefix(session_factory: sessionmaker[Session]) -> None:
    # "w*" expands to every indexed word starting with w: seconds on 100,000 tickets.
    assert fts_query("vpn w") == '"vpn" "w"'
    assert fts_query("vpn wi") == '"vpn" "wi"'
    assert fts_query("vpn wif") == '"vpn" "wif"*'
    ensure_index(session_factory.kw["bind"])
    office = make_ticket(session_factory, "Wifi down at HQ", "no network on floor 2. Das Netzwerk im zweiten Stock fällt aus")
    make_ticket(session_factory, "Printer jam", "paper stuck in tray")
    with session_factory() as session:
        found = partial(_found, session)
        assert found("netzwerk stock") == [office.number]
        assert found("netzwerk printer") == []  # every word must occur
        assert found("wifi zwei") == [office.number]
        assert found("WIFI fällt") == [office.number]
        assert found("hq") == [office.number]
        assert found("on") == [office.number]
        assert found("wif") == [office.number]
        if session.get_bind().dialect.name == "sqlite":
            assert found("w") == []  # no word is just "w"


def test_user_text_cannot_inject_tsquery_syntax() -> None:
    assert ts_query("a' | !b & <-> (cat") == "'a' & 'b' & 'cat':*"
    assert ts_query("vpn wi") == "'vpn' & 'wi'"
    assert ts_query("  ...  ") is None


def test_punctuation_and_quotes_in_a_search_are_words_not_syntax(session_factory: sessionmaker[Session]) -> None:
    ensure_index(session_factory.kw["bind"])
    vpn = make_ticket(session_factory, "VPN down", "tunnel keeps dropping since the update")
    with session_factory() as session:
        found = partial(_found, session)
        for text_ in ("vpn'", "'vpn", "vpn\\", 'vpn" OR 1=1', "vpn | tunnel", "!vpn", "vpn:*", "(vpn", "vpn & ",
                      "vpn <-> tunnel", "o'brien", "vpn;--", "%_", "vpn: tunnel!"):
            assert found(text_) in ([vpn.number], []), text_
        assert found("vpn | tunnel") == [vpn.number]
        assert found("vpn | tunnel | printer") == []  # every word must occur, '|' is no "or"


def test_relevance_puts_the_best_match_first(session_factory: sessionmaker[Session]) -> None:
    ensure_index(session_factory.kw["bind"])
    strong = make_ticket(session_factory, "Toner empty", "toner toner toner: the printer toner is empty")
    weak = make_ticket(session_factory, "Laptop slow", "it is slow since the toner was changed on the printer")
    newest = make_ticket(session_factory, "Badge", "my badge does not open the door")
    with session_factory() as session:
        by_relevance = list_tickets(session, QueueQuery(text="toner", sort=Sort.RELEVANCE)).tickets
        assert [t.id for t in by_relevance] == [strong.number, weak.number]
        assert [t.id for t in list_tickets(session, QueueQuery(text="toner")).tickets] == [weak.number, strong.number]
        unranked = list_tickets(session, QueueQuery(sort=Sort.RELEVANCE)).tickets
        assert [t.id for t in unranked] == [newest.number, weak.number, strong.number]


def test_a_message_is_found_in_the_transaction_that_writes_it(session_factory: sessionmaker[Session]) -> None:
    ensure_index(session_factory.kw["bind"])
    made = make_ticket(session_factory, "Laptop", "screen flickers")
    with session_factory() as session, session.begin():
        ticket = session.get(Ticket, made.number)
        assert ticket is not None
        tickets.append_message(
            session, ticket, Message(direction=Direction.OUT, from_address="agent@example.org",
                                     subject="Re: Laptop", text="replaced the docking station")
        )
        session.flush()
        assert _found(session, "docking station") == [made.number]
        message = session.get(Message, made.message_id)
        assert message is not None
        message.text = "the hinge cable was loose"
        ticket.subject = "Laptop hinge"
        session.flush()
        assert _found(session, "hinge cable") == [made.number]
        assert _found(session, "flickers") == []
        session.rollback()
    with session_factory() as session:
        assert _found(session, "docking") == []
        assert _found(session, "flickers") == [made.number]


def test_an_unknown_search_language_is_refused_in_one_line(pg_session_factory: sessionmaker[Session]) -> None:
    engine = pg_session_factory.kw["bind"]  # SQLite's FTS5 has no language configurations
    with pytest.raises(UnknownSearchLanguage, match="klingon"):
        ensure_index(engine, "klingon")


def test_a_changed_search_language_reindexes_and_the_index_answers(pg_session_factory: sessionmaker[Session]) -> None:
    session_factory = pg_session_factory  # the language is a PostgreSQL text search configuration
    engine = session_factory.kw["bind"]
    ensure_index(engine, "english")
    running = make_ticket(session_factory, "Backups running late", "the jobs are running slowly")
    with session_factory() as session:
        assert _found(session, "run late") == [running.number]  # english stems running -> run
        session.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(session.execute(text(
            "EXPLAIN SELECT id FROM ticket WHERE search_vector @@ to_tsquery(helpdesk_search_config(), 'run')"
        )).scalars())
        assert "ticket_search_vector" in plan
    ensure_index(engine, "simple")
    with session_factory() as session:
        assert _found(session, "run late") == []  # simple keeps words as written
        assert _found(session, "running late") == [running.number]


def _reply(session_factory: sessionmaker[Session], number: int, text_: str) -> None:
    with transaction(session_factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        tickets.append_message(session, ticket, Message(
            direction=Direction.OUT, from_address="agent@example.org", subject="Re: ticket", text=text_))


def test_on_postgresql_the_words_may_be_spread_over_the_subject_and_the_messages(
    pg_session_factory: sessionmaker[Session],
) -> None:
    # One vector per ticket: the subject names the printer, a later reply the toner. (SQLite's FTS5
    # index is per message: there every word must be in the subject or in one message.)
    session_factory = pg_session_factory
    ensure_index(session_factory.kw["bind"])
    made = make_ticket(session_factory, "Printer on floor 3", "it prints stripes")
    _reply(session_factory, made.number, "is the toner new?")
    with session_factory() as session:
        assert _found(session, "printer toner") == [made.number]
        assert _found(session, "stripes toner") == [made.number]
        assert [t.id for t in list_tickets(session, QueueQuery(text="toner stripes", sort=Sort.RELEVANCE)).tickets] == [
            made.number]


def test_a_thread_with_more_words_than_a_tsvector_holds_is_stored_and_its_start_found(
    pg_session_factory: sessionmaker[Session],
) -> None:
    # PostgreSQL's tsvector holds 1 MB: a pasted log of 30,000 distinct words would exceed it and fail
    # the write; the ticket keeps the words of its first quarter million characters instead.
    session_factory = pg_session_factory
    ensure_index(session_factory.kw["bind"])
    made = make_ticket(session_factory, "Sync log", "see below")
    log = " ".join(hashlib.md5(str(i).encode()).hexdigest() for i in range(30_000))
    with session_factory() as session, session.begin():
        ticket = session.get(Ticket, made.number)
        assert ticket is not None
        tickets.append_message(session, ticket, Message(
            direction=Direction.IN, from_address="user@example.com", subject="Re: Sync log", text=log))
    first, last = log.split()[0], log.split()[-1]
    with session_factory() as session:
        assert _found(session, first) == [made.number]
        assert _found(session, "sync below") == [made.number]
        assert _found(session, last) == []
        session.execute(text("UPDATE ticket SET subject = 'Sync log (long)' WHERE id = :n"), {"n": made.number})
        assert _found(session, f"long {first}") == [made.number]


def _tickets_about_toner(session_factory: sessionmaker[Session], n: int) -> None:
    with transaction(session_factory) as session:
        requester = tickets.contact_for(session, "user@example.com")
        for i in range(n):
            ticket = tickets.open_ticket(session, requester=requester, subject=f"Toner {i}", kind=TicketKind.INCIDENT,
                                         category="general", priority="P4", classification=[])
            tickets.append_message(session, ticket, Message(
                direction=Direction.IN, from_address="user@example.com", subject=f"Toner {i}", text="toner is empty"))


def test_a_text_search_counts_its_matches_to_a_cap_and_the_queue_counts_exactly(
    session_factory: sessionmaker[Session],
) -> None:
    # Counting a common word's 30,000 matches cost more than the page: a search counts to a cap.
    ensure_index(session_factory.kw["bind"])
    _tickets_about_toner(session_factory, 7)
    make_ticket(session_factory, "Badge", "my badge does not open the door")
    with session_factory() as session:
        capped = list_tickets(session, QueueQuery(text="toner", per_page=2), count_cap=5)
        assert (capped.total, capped.capped, capped.pages, len(capped.tickets)) == (5, True, 3, 2)
        assert [t.subject for t in capped.tickets] == ["Toner 6", "Toner 5"]
        last = list_tickets(session, QueueQuery(text="toner", per_page=2, page=3), count_cap=5)
        assert [t.subject for t in last.tickets] == ["Toner 2", "Toner 1"]
        at_cap = list_tickets(session, QueueQuery(text="toner", per_page=2), count_cap=7)
        assert (at_cap.total, at_cap.capped, at_cap.pages) == (7, False, 4)
        exact = list_tickets(session, QueueQuery(text="toner", per_page=2))
        assert (exact.total, exact.capped) == (7, False)
        queue_ = list_tickets(session, QueueQuery(per_page=2), count_cap=5)  # no text: counted exactly
        assert (queue_.total, queue_.capped, queue_.pages) == (8, False, 4)
        # By relevance the count comes with the page (the sort reads every match), capped the same way.
        ranked = list_tickets(session, QueueQuery(text="toner", sort=Sort.RELEVANCE, per_page=2), count_cap=5)
        assert (ranked.total, ranked.capped, ranked.pages, len(ranked.tickets)) == (5, True, 3, 2)
        ranked = list_tickets(session, QueueQuery(text="toner", sort=Sort.RELEVANCE, per_page=3, page=3))
        assert (ranked.total, ranked.capped, [t.subject for t in ranked.tickets]) == (7, False, ["Toner 0"])
        past = list_tickets(session, QueueQuery(text="toner", sort=Sort.RELEVANCE, per_page=2, page=9), count_cap=5)
        assert (past.total, past.capped, past.tickets) == (5, True, [])


@pytest.fixture
def console_on(session_factory: sessionmaker[Session], tmp_path: Path) -> Flask:
    """The console on each database (the shared fixtures' console runs on SQLite)."""
    ensure_index(session_factory.kw["bind"])
    with transaction(session_factory) as session:
        for role, email in STAFF.items():
            create_user(session, email, role, PASSWORD)
    url = session_factory.kw["bind"].url.render_as_string(hide_password=False)
    return create_app(Settings(data_dir=tmp_path, database_url=url, secret_key="test-secret"), session_factory,
                      testing=True)


def test_the_console_says_more_than_the_cap_and_pages_to_it_while_the_api_counts_exactly(
    console_on: Flask, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _tickets_about_toner(session_factory, 2 * QueueQuery.per_page + 3)
    monkeypatch.setattr(queue, "COUNT_CAP", QueueQuery.per_page + 1)
    agent = login(console_on.test_client(), Role.AGENT)
    body = agent.get("/tickets?q=toner").get_data(as_text=True)
    assert f"more than {QueueQuery.per_page + 1} tickets" in body
    assert "Page 1 of the first 2" in body
    assert 'rel="next"' in body
    second = agent.get("/tickets?q=toner&page=2").get_data(as_text=True)
    assert "Page 2 of the first 2" in second and 'rel="next"' not in second
    everything = agent.get("/tickets").get_data(as_text=True)
    assert f"{2 * QueueQuery.per_page + 3} tickets" in everything and "Page 1 of 3" in everything
    with session_factory() as session, session.begin():
        contact = session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one()
        token = issue_api_token(session, contact)
    api = console_on.test_client().get("/api/tickets?q=toner", headers={"Authorization": f"Bearer {token}"}).json
    assert (api["total"], api["pages"]) == (2 * QueueQuery.per_page + 3, 3)




def test_on_postgresql_the_ranking_reads_the_subject_and_first_message_and_a_better_match_ranks_first(
    pg_session_factory: sessionmaker[Session],
) -> None:
    # The ranking vector is small enough to stay in the ticket row (the thread's vector is read from
    # TOAST: 20-30 ms for 5,000 matches). A ticket found only by a later reply is listed after.
    session_factory = pg_session_factory
    ensure_index(session_factory.kw["bind"])
    in_subject = make_ticket(session_factory, "Printer toner empty", "the toner of the printer is empty")
    in_first = make_ticket(session_factory, "Office supplies", "could someone order printer toner")
    in_reply = make_ticket(session_factory, "Laptop slow", "it takes minutes to start")
    _reply(session_factory, in_reply.number, "printer toner printer toner printer toner")
    newest = make_ticket(session_factory, "Printer toner", "see subject")
    with session_factory() as session:
        ranked = [t.id for t in list_tickets(session, QueueQuery(text="printer toner", sort=Sort.RELEVANCE)).tickets]
        assert ranked == [in_subject.number, newest.number, in_first.number, in_reply.number]
        by_number = list_tickets(session, QueueQuery(text=f"#{in_reply.number}", sort=Sort.RELEVANCE)).tickets
        assert [t.id for t in by_number] == [in_reply.number]


def _rank_vectors(session_factory: sessionmaker[Session]) -> dict[int, tuple[str, bool]]:
    """Each ticket's ranking vector and whether it is what the ticket's subject and first message make."""
    with session_factory() as session:
        return {n: (v, same) for n, v, same in session.execute(text(
            "SELECT id, rank_vector::text, rank_vector = helpdesk_rank_vector(id, subject) FROM ticket"))}


def test_on_postgresql_the_ranking_vector_follows_the_subject_and_the_first_message(
    pg_session_factory: sessionmaker[Session],
) -> None:
    session_factory = pg_session_factory
    engine = session_factory.kw["bind"]
    ensure_index(engine)
    laptop = make_ticket(session_factory, "Laptop", "screen flickers")
    _reply(session_factory, laptop.number, "replaced the docking station")
    vector, current = _rank_vectors(session_factory)[laptop.number]
    assert current and "flickers" in vector and "laptop" in vector and "docking" not in vector
    with transaction(session_factory) as session:
        session.execute(text("UPDATE ticket SET subject = 'Dock' WHERE id = :n"), {"n": laptop.number})
        session.execute(text("UPDATE message SET text = 'hinge cable loose' WHERE id = :m"), {"m": laptop.message_id})
    vector, current = _rank_vectors(session_factory)[laptop.number]
    assert current and "'dock'" in vector and "hinge" in vector and "flickers" not in vector
    with transaction(session_factory) as session:  # the reply becomes the first message
        session.execute(text("DELETE FROM message WHERE id = :m"), {"m": laptop.message_id})
    vector, current = _rank_vectors(session_factory)[laptop.number]
    assert current and "docking" in vector and "hinge" not in vector
    # A long first message: only its start ranks, and the vector stays small enough for the row.
    long = make_ticket(session_factory, "Sync log", " ".join(hashlib.md5(str(i).encode()).hexdigest()[:8]
                                                               for i in range(5_000)))
    with session_factory() as session:
        size = session.scalar(text("SELECT pg_column_size(rank_vector) FROM ticket WHERE id = :n"), {"n": long.number})
        assert size is not None and size < 1_500
        assert _found(session, hashlib.md5(b"4999").hexdigest()[:8]) == [long.number]  # found by the thread's vector
    # A database indexed before the ranking vector gets one at the next start.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE ticket DROP COLUMN rank_vector CASCADE"))
    ensure_index(engine)
    assert all(current for _, current in _rank_vectors(session_factory).values())
