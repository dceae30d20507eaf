"""Full-text search over ticket subjects and message texts.

On SQLite FTS5 indexes, kept in step by triggers, answer a search over hundreds of thousands
of messages in milliseconds. On PostgreSQL GIN indexes over to_tsvector(subject, text) do the
same; being indexes, PostgreSQL keeps them current in the writing transaction itself. Both live
outside the Alembic models because they are derived data: `ensure_index` creates them when missing
and fills them from the tables. Other databases fall back to a case-insensitive substring match.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Engine, Float, Integer, Subquery, column, exists, false, or_, text
from sqlalchemy.orm import Session

from helpdesk.core.models import Message, Ticket

# Message text is indexed contentless, under a rowid that carries the ticket number
# (ticket * TICKET_SHIFT + message id): a match yields ticket numbers without reading a single
# message row, which keeps a search for a common word fast at hundreds of thousands of messages.
TICKET_SHIFT = 1_000_000_000
_KEY_NEW = f"new.ticket_id * {TICKET_SHIFT} + new.id"
_KEY_OLD = f"old.ticket_id * {TICKET_SHIFT} + old.id"
_TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
_TABLES = {
    "message_search": f"CREATE VIRTUAL TABLE message_search USING fts5(subject, text, content='', {_TOKENIZE})",
    "ticket_search": f"CREATE VIRTUAL TABLE ticket_search USING fts5(subject, content='ticket', content_rowid='id', {_TOKENIZE})",
}
_FILL = {
    "message_search": (
        f"INSERT INTO message_search(rowid, subject, text) SELECT ticket_id * {TICKET_SHIFT} + id, subject, text"
        " FROM message"
    ),
    "ticket_search": "INSERT INTO ticket_search(ticket_search) VALUES ('rebuild')",
}
_MESSAGE_DELETE = (
    "INSERT INTO message_search(message_search, rowid, subject, text)"
    f" VALUES ('delete', {_KEY_OLD}, old.subject, old.text);"
)
_MESSAGE_INSERT = f"INSERT INTO message_search(rowid, subject, text) VALUES ({_KEY_NEW}, new.subject, new.text);"
_TICKET_DELETE = "INSERT INTO ticket_search(ticket_search, rowid, subject) VALUES ('delete', old.id, old.subject);"
_TICKET_INSERT = "INSERT INTO ticket_search(rowid, subject) VALUES (new.id, new.subject);"
_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS message_search_ai AFTER INSERT ON message BEGIN {_MESSAGE_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS message_search_ad AFTER DELETE ON message BEGIN {_MESSAGE_DELETE} END",
    "CREATE TRIGGER IF NOT EXISTS message_search_au AFTER UPDATE OF ticket_id, subject, text ON message"
    f" BEGIN {_MESSAGE_DELETE} {_MESSAGE_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS ticket_search_ai AFTER INSERT ON ticket BEGIN {_TICKET_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS ticket_search_ad AFTER DELETE ON ticket BEGIN {_TICKET_DELETE} END",
    "CREATE TRIGGER IF NOT EXISTS ticket_search_au AFTER UPDATE OF subject ON ticket"
    f" BEGIN {_TICKET_DELETE} {_TICKET_INSERT} END",
)
# The first index (message rows looked up per match) was too slow for common words.
_SUPERSEDED = tuple(
    f"DROP TRIGGER IF EXISTS {t}_fts_{op}" for t in ("message", "ticket") for op in ("ai", "ad", "au")
) + ("DROP TABLE IF EXISTS message_fts", "DROP TABLE IF EXISTS ticket_fts")
_WORD = re.compile(r"\w+", re.UNICODE)
# A shorter prefix expands to thousands of indexed words (seconds on a large database); a word of
# one or two letters is looked up as it is, which stays fast however common it is.
PREFIX_MIN = 3
# 'simple' only lower-cases: German and English words are both found as written, where a
# language's stemmer would mangle the other language's words (and drop its stop words too).
DEFAULT_LANGUAGE = "simple"
# PostgreSQL: the text search configuration is kept in the database, as an immutable function the
# indexes and every query share (inlined by the planner, so the GIN indexes match the queries).
_PG_CONFIG = "helpdesk_search_config()"
_PG_TICKET_VECTOR = f"to_tsvector({_PG_CONFIG}, subject)"
_PG_MESSAGE_VECTOR = f"to_tsvector({_PG_CONFIG}, subject || ' ' || text)"
_PG_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS ticket_search ON ticket USING gin ({_PG_TICKET_VECTOR})",
    f"CREATE INDEX IF NOT EXISTS message_search ON message USING gin ({_PG_MESSAGE_VECTOR})",
)


class UnknownSearchLanguage(ValueError):
    """The configured search language is not a text search configuration of the database."""


def uses_fts(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def uses_tsvector(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ensure_index(engine: Engine, language: str = DEFAULT_LANGUAGE) -> None:
    """Create the search index and its triggers if missing (filling it from existing rows)."""
    if uses_tsvector(engine):
        _ensure_pg_index(engine, language)
    if not uses_fts(engine):
        return
    with engine.begin() as conn:
        for old in _SUPERSEDED:
            conn.execute(text(old))
        existing = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars())
        for name, ddl in _TABLES.items():
            if name not in existing:
                conn.execute(text(ddl))
                conn.execute(text(_FILL[name]))
        for trigger in _TRIGGERS:
            conn.execute(text(trigger))


def _ensure_pg_index(engine: Engine, language: str) -> None:
    if not re.fullmatch(r"[a-z_]+", language):
        raise UnknownSearchLanguage(f"search language {language!r} is not a text search configuration name")
    with engine.begin() as conn:
        # Several processes start at once (console, poller): one at a time changes the function.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('helpdesk_search'))"))
        if conn.scalar(text("SELECT count(*) FROM pg_ts_config WHERE cfgname = :l"), {"l": language}) != 1:
            raise UnknownSearchLanguage(f"search language {language!r} is not a text search configuration of the database")
        current = conn.scalar(
            text("SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.proname = 'helpdesk_search_config'")
        )
        wanted = f"'pg_catalog.{language}'::regconfig"
        if current is None or wanted not in current:
            conn.execute(
                text(
                    f"CREATE OR REPLACE FUNCTION {_PG_CONFIG} RETURNS regconfig LANGUAGE sql IMMUTABLE"
                    f" PARALLEL SAFE AS $$ SELECT {wanted} $$"
                )
            )
            # Words indexed under another language no longer match the queries: index them anew.
            conn.execute(text("DROP INDEX IF EXISTS ticket_search"))
            conn.execute(text("DROP INDEX IF EXISTS message_search"))
        for ddl in _PG_INDEXES:
            conn.execute(text(ddl))


def _words(words: str) -> tuple[list[str], bool] | None:
    """The words of user text, and whether the last one is looked up as a prefix."""
    tokens = _WORD.findall(words)
    if not tokens:
        return None
    return tokens, len(tokens[-1]) >= PREFIX_MIN


def _query(words: str, quote: str, prefix_mark: str, conjunction: str) -> str | None:
    """Every word of the user's text quoted as a plain term (\\w+ holds no quote or operator), all required."""
    found = _words(words)
    if found is None:
        return None
    tokens, prefix = found
    quoted = [f"{quote}{t}{quote}" for t in tokens]
    if prefix:
        quoted[-1] += prefix_mark
    return conjunction.join(quoted)


def ts_query(words: str) -> str | None:
    """User text as a PostgreSQL tsquery (to_tsquery syntax): every word, the last one as a prefix if long enough."""
    return _query(words, "'", ":*", " & ")


def fts_query(words: str) -> str | None:
    """User text as an FTS5 query: every word must occur, the last one as a prefix if it is long enough."""
    return _query(words, '"', "*", " ")


_FTS_MATCH = (
    "SELECT rowid FROM ticket_search WHERE ticket_search MATCH :q"
    f" UNION SELECT rowid / {TICKET_SHIFT} FROM message_search WHERE message_search MATCH :q"
)
_PG_MATCH = (
    f"SELECT id FROM ticket WHERE {_PG_TICKET_VECTOR} @@ to_tsquery({_PG_CONFIG}, :q)"
    f" UNION SELECT ticket_id FROM message WHERE {_PG_MESSAGE_VECTOR} @@ to_tsquery({_PG_CONFIG}, :q)"
)


def matches(session: Session, words: str) -> ColumnElement[bool]:
    """A condition on Ticket: its subject or one of its messages contains the words."""
    words = words.strip()
    number = words.lstrip("#")
    by_number = Ticket.id == int(number) if number.isdigit() and len(number) < 10 else None
    engine = session.get_bind().engine
    if uses_fts(engine) or uses_tsvector(engine):
        query = fts_query(words) if uses_fts(engine) else ts_query(words)
        if query is None:
            return by_number if by_number is not None else false()
        condition: ColumnElement[bool] = Ticket.id.in_(text(_FTS_MATCH if uses_fts(engine) else _PG_MATCH).bindparams(q=query))
    else:
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        condition = or_(
            Ticket.subject.ilike(pattern, escape="\\"),
            exists().where(Message.ticket_id == Ticket.id, Message.text.ilike(pattern, escape="\\")),
        )
    return or_(by_number, condition) if by_number is not None else condition


# One pass over the matches gives every matching ticket its best score (smaller is better):
# ticket by ticket, a correlated lookup took seconds for a common word at 100,000 tickets.
_FTS_RANKS = (
    "SELECT t AS ticket_id, min(r) AS score FROM ("
    " SELECT rowid AS t, rank AS r FROM ticket_search WHERE ticket_search MATCH :rq"
    f" UNION ALL SELECT rowid / {TICKET_SHIFT}, rank FROM message_search WHERE message_search MATCH :rq"
    ") GROUP BY t"
)
_PG_RANKS = (  # ts_rank: larger is better, negated to sort as bm25 does
    "SELECT t AS ticket_id, -max(r) AS score FROM ("
    f" SELECT id AS t, ts_rank({_PG_TICKET_VECTOR}, to_tsquery({_PG_CONFIG}, :rq)) AS r FROM ticket"
    f" WHERE {_PG_TICKET_VECTOR} @@ to_tsquery({_PG_CONFIG}, :rq)"
    f" UNION ALL SELECT ticket_id, ts_rank({_PG_MESSAGE_VECTOR}, to_tsquery({_PG_CONFIG}, :rq)) FROM message"
    f" WHERE {_PG_MESSAGE_VECTOR} @@ to_tsquery({_PG_CONFIG}, :rq)"
    ") AS matched GROUP BY t"
)


def relevance(session: Session, words: str) -> Subquery | None:
    """Matching tickets' scores (ticket_id, score; best first when sorted ascending); None where not ranked."""
    engine = session.get_bind().engine
    if not (uses_fts(engine) or uses_tsvector(engine)):
        return None
    query = fts_query(words) if uses_fts(engine) else ts_query(words)
    if query is None:
        return None
    ranks = text(_FTS_RANKS if uses_fts(engine) else _PG_RANKS).bindparams(rq=query)
    return ranks.columns(column("ticket_id", Integer), column("score", Float)).subquery("ranked")
