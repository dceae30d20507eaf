"""Search stays right when messages move or go: merge and its undo, split, erasure and retention.

On PostgreSQL each ticket keeps one vector of its subject and messages (kept by triggers); on SQLite
the FTS5 index is keyed by ticket and message. Both must follow a message to its new ticket and
forget what was erased or deleted, in the transaction that does it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.core import merge, privacy, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Direction, Message, Ticket, TicketStatus, utcnow
from helpdesk.core.queue import QueueQuery, Sort, list_tickets
from helpdesk.core.search import ensure_index
from helpdesk.core.settings import RetentionAction
from tests.core.desk import Desk, mail, make_desk

AGENT = "agent@example.org"
ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def desk(session_factory, tmp_path) -> Desk:  # type: ignore[no-untyped-def]
    ensure_index(session_factory.kw["bind"])
    desk = make_desk(session_factory, tmp_path)
    desk.add_user(AGENT)
    return desk


def found(desk: Desk, words: str, sort: Sort = Sort.NEWEST) -> list[int]:
    with desk.factory() as session:
        return [t.id for t in list_tickets(session, QueueQuery(text=words, sort=sort)).tickets]


def _agent(session) -> Contact:  # type: ignore[no-untyped-def]
    return session.scalars(select(Contact).where(Contact.email == AGENT)).one()


def test_after_a_merge_the_sources_words_find_the_target_and_after_the_undo_the_source(desk: Desk) -> None:
    target = desk.deliver(mail(ALICE, "VPN is down", "No tunnel since nine.")).ticket_id
    source = desk.deliver(mail(BOB, "Cannot connect", "The gateway refuses my zebracorn token.")).ticket_id
    assert found(desk, "zebracorn") == [source]
    with transaction(desk.factory) as session:
        merge.merge(session, desk.settings, session.get(Ticket, source), session.get(Ticket, target), _agent(session))
    assert found(desk, "zebracorn") == [target]
    assert found(desk, "zebracorn token", Sort.RELEVANCE) == [target]
    assert found(desk, "tunnel") == [target]
    with transaction(desk.factory) as session:
        merge.undo(session, desk.settings, session.get(Ticket, source), _agent(session))
    assert found(desk, "zebracorn") == [source]
    assert found(desk, "tunnel") == [target]


def test_a_split_off_mail_is_found_in_its_new_ticket_only(desk: Desk) -> None:
    first = desk.deliver(mail(ALICE, "Printer jam", "Tray two is stuck.")).ticket_id
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, first)
        assert ticket is not None
        other = tickets.append_message(session, ticket, Message(
            direction=Direction.IN, from_address=BOB, subject="Re: Printer jam",
            text="Unrelated: my quokkaphone is broken.", message_id="<bob-1@example.com>"))
        session.flush()
        other_id = other.id
    assert found(desk, "quokkaphone") == [first]
    with transaction(desk.factory) as session:
        message = session.get(Message, other_id)
        assert message is not None
        new = merge.split(session, desk.settings, message, _agent(session)).id
    assert found(desk, "quokkaphone") == [new]
    assert found(desk, "tray") == [first]


def test_erasure_and_retention_leave_no_words_to_find(desk: Desk) -> None:
    erased = desk.deliver(mail(ALICE, "Badge for Alice Wombatson", "My wombatson badge is lost.")).ticket_id
    kept = desk.deliver(mail(BOB, "Badge", "Mine is lost too, not a wombatson one.")).ticket_id
    assert found(desk, "wombatson") == [kept, erased]
    with transaction(desk.factory) as session:
        privacy.erase_person(session, desk.settings, ALICE, actor="admin@example.org")
    assert found(desk, "wombatson") == [kept]
    assert found(desk, "badge lost") == [kept]

    for action in (RetentionAction.ANONYMISE, RetentionAction.DELETE):
        old = desk.deliver(mail(BOB, "Old capybara issue", "The capybara report is wrong.")).ticket_id
        with transaction(desk.factory) as session:
            ticket = session.get(Ticket, old)
            assert ticket is not None
            ticket.status, ticket.closed_at = TicketStatus.CLOSED, utcnow() - timedelta(days=400)
        assert found(desk, "capybara") == [old]
        settings = replace(desk.settings, retention_days=30, retention_action=action)
        with transaction(desk.factory) as session:
            privacy.apply_retention(session, settings, utcnow())
        assert found(desk, "capybara") == [], action
    with desk.factory() as session:
        assert session.get(Ticket, old) is None
