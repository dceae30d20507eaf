"""Queue search on both databases: FTS5 on SQLite, a substring match on PostgreSQL."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.queue import QueueQuery, list_tickets
from core.search import ensure_index, fts_query
from tests.web.conftest import make_ticket


def test_search_matches_subjects_and_texts_on_each_database(session_factory: sessionmaker[Session]) -> None:
    ensure_index(session_factory.kw["bind"])
    vpn = make_ticket(session_factory, "VPN down", "tunnel keeps dropping since the update")
    printer = make_ticket(session_factory, "Printer 3rd floor", "paper jam, 100% of jobs fail")
    with session_factory() as session:
        def found(text: str) -> list[int]:
            return [t.id for t in list_tickets(session, QueueQuery(text=text)).tickets]

        assert found("vpn") == [vpn.number]
        assert found("tunnel") == [vpn.number]
        assert found("paper jam") == [printer.number]
        assert found(f"#{printer.number}") == [printer.number]
        assert found("nothing like it") == []
        assert found("100%") == [printer.number]


def test_user_text_cannot_inject_fts_syntax() -> None:
    assert fts_query('a" OR b NEAR(c') == '"a" "OR" "b" "NEAR" "c"*'
    assert fts_query("  ...  ") is None
