"""Full-text search over ticket subjects and message texts.

On SQLite an FTS5 index (external content, kept in step by triggers) answers a search over
hundreds of thousands of messages in milliseconds. It lives outside the Alembic models because
it is derived data: `ensure_index` creates it when missing and fills it from the tables. Other
databases fall back to a case-insensitive substring match.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Engine, exists, or_, select, text
from sqlalchemy.orm import Session

from core.models import Message, Ticket

_DDL = (
    "CREATE VIRTUAL TABLE message_fts USING fts5(subject, text, content='message', content_rowid='id',"
    " tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE ticket_fts USING fts5(subject, content='ticket', content_rowid='id',"
    " tokenize='unicode61 remove_diacritics 2')",
)
_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS message_fts_ai AFTER INSERT ON message BEGIN
         INSERT INTO message_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END""",
    """CREATE TRIGGER IF NOT EXISTS message_fts_ad AFTER DELETE ON message BEGIN
         INSERT INTO message_fts(message_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS message_fts_au AFTER UPDATE OF subject, text ON message BEGIN
         INSERT INTO message_fts(message_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text);
         INSERT INTO message_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END""",
    """CREATE TRIGGER IF NOT EXISTS ticket_fts_ai AFTER INSERT ON ticket BEGIN
         INSERT INTO ticket_fts(rowid, subject) VALUES (new.id, new.subject); END""",
    """CREATE TRIGGER IF NOT EXISTS ticket_fts_ad AFTER DELETE ON ticket BEGIN
         INSERT INTO ticket_fts(ticket_fts, rowid, subject) VALUES ('delete', old.id, old.subject); END""",
    """CREATE TRIGGER IF NOT EXISTS ticket_fts_au AFTER UPDATE OF subject ON ticket BEGIN
         INSERT INTO ticket_fts(ticket_fts, rowid, subject) VALUES ('delete', old.id, old.subject);
         INSERT INTO ticket_fts(rowid, subject) VALUES (new.id, new.subject); END""",
)
_WORD = re.compile(r"\w+", re.UNICODE)


def uses_fts(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def ensure_index(engine: Engine) -> None:
    """Create the search index and its triggers if missing (filling it from existing rows)."""
    if not uses_fts(engine):
        return
    with engine.begin() as conn:
        existing = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars())
        for ddl, name in zip(_DDL, ("message_fts", "ticket_fts")):
            if name not in existing:
                conn.execute(text(ddl))
                conn.execute(text(f"INSERT INTO {name}({name}) VALUES ('rebuild')"))
        for trigger in _TRIGGERS:
            conn.execute(text(trigger))


def fts_query(words: str) -> str | None:
    """User text as an FTS5 query: every word must occur, the last one as a prefix."""
    tokens = _WORD.findall(words)
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens]
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
        in_subject = Ticket.id.in_(
            text("SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH :tq").bindparams(tq=query)
        )
        in_messages = Ticket.id.in_(
            select(Message.ticket_id).where(
                Message.id.in_(text("SELECT rowid FROM message_fts WHERE message_fts MATCH :mq").bindparams(mq=query))
            )
        )
        condition = or_(in_subject, in_messages)
    else:
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        condition = or_(
            Ticket.subject.ilike(pattern, escape="\\"),
            exists().where(Message.ticket_id == Ticket.id, Message.text.ilike(pattern, escape="\\")),
        )
    return or_(by_number, condition) if by_number is not None else condition
