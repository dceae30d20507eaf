"""Full-text search over ticket subjects and message texts.

On SQLite FTS5 indexes, kept in step by triggers, answer a search over hundreds of thousands
of messages in milliseconds. It lives outside the Alembic models because
it is derived data: `ensure_index` creates it when missing and fills it from the tables. Other
databases fall back to a case-insensitive substring match.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Engine, exists, or_, text
from sqlalchemy.orm import Session

from core.models import Message, Ticket

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
    "message_search": f"INSERT INTO message_search(rowid, subject, text) SELECT ticket_id * {TICKET_SHIFT} + id, subject, text FROM message",
    "ticket_search": "INSERT INTO ticket_search(ticket_search) VALUES ('rebuild')",
}
_MESSAGE_DELETE = f"INSERT INTO message_search(message_search, rowid, subject, text) VALUES ('delete', {_KEY_OLD}, old.subject, old.text);"
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
    f"CREATE TRIGGER IF NOT EXISTS ticket_search_au AFTER UPDATE OF subject ON ticket BEGIN {_TICKET_DELETE} {_TICKET_INSERT} END",
)
# The first index (message rows looked up per match) was too slow for common words.
_SUPERSEDED = tuple(
    f"DROP TRIGGER IF EXISTS {t}_fts_{op}" for t in ("message", "ticket") for op in ("ai", "ad", "au")
) + ("DROP TABLE IF EXISTS message_fts", "DROP TABLE IF EXISTS ticket_fts")
_WORD = re.compile(r"\w+", re.UNICODE)
# A shorter prefix expands to thousands of indexed words (seconds on a large database); a word of
# one or two letters is looked up as it is, which stays fast however common it is.
PREFIX_MIN = 3


def uses_fts(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def ensure_index(engine: Engine) -> None:
    """Create the search index and its triggers if missing (filling it from existing rows)."""
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


def fts_query(words: str) -> str | None:
    """User text as an FTS5 query: every word must occur, the last one as a prefix if it is long enough."""
    tokens = _WORD.findall(words)
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens]
    if len(tokens[-1]) >= PREFIX_MIN:
        quoted[-1] += "*"
    return " ".join(quoted)


def matches(session: Session, words: str) -> ColumnElement[bool]:
    """A condition on Ticket: its subject or one of its messages contains the words."""
    words = words.strip()
    number = words.lstrip("#")
    by_number = Ticket.id == int(number) if number.isdigit() and len(number) < 10 else None
    if uses_fts(session.get_bind().engine):
        query = fts_query(words)
        if query is None:
            return by_number if by_number is not None else text("0 = 1")
        condition = Ticket.id.in_(
            text(
                "SELECT rowid FROM ticket_search WHERE ticket_search MATCH :q"
                f" UNION SELECT rowid / {TICKET_SHIFT} FROM message_search WHERE message_search MATCH :q"
            ).bindparams(q=query)
        )
    else:
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        condition = or_(
            Ticket.subject.ilike(pattern, escape="\\"),
            exists().where(Message.ticket_id == Ticket.id, Message.text.ilike(pattern, escape="\\")),
        )
    return or_(by_number, condition) if by_number is not None else condition
