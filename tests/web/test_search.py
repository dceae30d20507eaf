"""Queue search on both databases: FTS5 on SQLite, a substring match on PostgreSQL."""

from __future__ import annotations

from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from core.queue import QueueQuery, list_tickets
from core.search import ensure_index, fts_query
from tests.web.conftest import make_ticket


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
    office = make_ticket(session_factory, "Wifi down at HQ", "no network on floor 2")
    make_ticket(session_factory, "Printer jam", "paper stuck in tray")
    with session_factory() as session:
        found = partial(_found, session)
        assert found("hq") == [office.number]
        assert found("on") == [office.number]
        assert found("wif") == [office.number]
        if session.get_bind().dialect.name == "sqlite":
            assert found("w") == []  # no word is just "w"
