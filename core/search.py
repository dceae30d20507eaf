"""Full-text search over ticket subjects and message texts.

On SQLite one FTS5 index of subjects and messages, kept in step by triggers, answers a search over
hundreds of thousands of messages in milliseconds (every word in the subject or in one message). On
PostgreSQL each ticket keeps one tsvector of its subject and all its messages, kept current by
triggers in the writing transaction and indexed by GIN. Both live outside the Alembic models because
they are derived data (and PostgreSQL's depends on the configured language): `ensure_index` creates
them when missing and fills them from the tables. Other databases fall back to a case-insensitive
substring match."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    Integer,
    Subquery,
    case,
    column,
    exists,
    false,
    func,
    literal_column,
    null,
    or_,
    text,
)
from sqlalchemy.orm import Session

from helpdesk.core.models import Message, Ticket

# Message text and ticket subjects are indexed contentless in one table, under a rowid that carries
# the ticket number: ticket * TICKET_SHIFT + message id for a message, ticket * TICKET_SHIFT for the
# ticket's own subject. A match yields ticket numbers without reading a single message row, and in
# ticket order: a page of the newest matches stops after its first tickets instead of collecting
# every match of a common word (core.queue joins `hits`).
TICKET_SHIFT = 1_000_000_000
_KEY_NEW = f"new.ticket_id * {TICKET_SHIFT} + new.id"
_KEY_OLD = f"old.ticket_id * {TICKET_SHIFT} + old.id"
_TOKENIZE = "tokenize='unicode61 remove_diacritics 2'"
_TABLE = "message_search"
_CREATE = f"CREATE VIRTUAL TABLE {_TABLE} USING fts5(subject, text, content='', {_TOKENIZE})"
_FILL_SUBJECTS = f"INSERT INTO {_TABLE}(rowid, subject, text) SELECT id * {TICKET_SHIFT}, subject, '' FROM ticket"
_FILL = (
    f"INSERT INTO {_TABLE}(rowid, subject, text) SELECT ticket_id * {TICKET_SHIFT} + id, subject, text FROM message",
    _FILL_SUBJECTS,
)
_MESSAGE_DELETE = (
    f"INSERT INTO {_TABLE}({_TABLE}, rowid, subject, text) VALUES ('delete', {_KEY_OLD}, old.subject, old.text);"
)
_MESSAGE_INSERT = f"INSERT INTO {_TABLE}(rowid, subject, text) VALUES ({_KEY_NEW}, new.subject, new.text);"
_TICKET_DELETE = (
    f"INSERT INTO {_TABLE}({_TABLE}, rowid, subject, text) VALUES ('delete', old.id * {TICKET_SHIFT}, old.subject, '');"
)
_TICKET_INSERT = f"INSERT INTO {_TABLE}(rowid, subject, text) VALUES (new.id * {TICKET_SHIFT}, new.subject, '');"
_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS message_search_ai AFTER INSERT ON message BEGIN {_MESSAGE_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS message_search_ad AFTER DELETE ON message BEGIN {_MESSAGE_DELETE} END",
    "CREATE TRIGGER IF NOT EXISTS message_search_au AFTER UPDATE OF ticket_id, subject, text ON message"
    f" BEGIN {_MESSAGE_DELETE} {_MESSAGE_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS ticket_subject_ai AFTER INSERT ON ticket BEGIN {_TICKET_INSERT} END",
    f"CREATE TRIGGER IF NOT EXISTS ticket_subject_ad AFTER DELETE ON ticket BEGIN {_TICKET_DELETE} END",
    "CREATE TRIGGER IF NOT EXISTS ticket_subject_au AFTER UPDATE OF subject ON ticket"
    f" BEGIN {_TICKET_DELETE} {_TICKET_INSERT} END",
)
# The first index (message rows looked up per match) was too slow for common words.
_SUPERSEDED = tuple(
    f"DROP TRIGGER IF EXISTS {t}_fts_{op}" for t in ("message", "ticket") for op in ("ai", "ad", "au")
) + ("DROP TABLE IF EXISTS message_fts", "DROP TABLE IF EXISTS ticket_fts")
# The second kept ticket subjects in a table of their own (external content), whose matches could
# not be read in ticket order together with the messages'; its subjects move into message_search.
_SUBJECTS_APART = ("ticket_search", tuple(f"DROP TRIGGER IF EXISTS ticket_search_{op}" for op in ("ai", "ad", "au")))
_STATUS = "ticket_search_status"
_WORD = re.compile(r"\w+", re.UNICODE)
# A shorter prefix expands to thousands of indexed words (seconds on a large database); a word of
# one or two letters is looked up as it is, which stays fast however common it is.
PREFIX_MIN = 3
# 'simple' only lower-cases: German and English words are both found as written, where a
# language's stemmer would mangle the other language's words (and drop its stop words too).
DEFAULT_LANGUAGE = "simple"
# PostgreSQL: one stored tsvector per ticket (its subject, weighted A, then every message's subject and
# text in order), kept by triggers in the writing transaction. A common word walks the page's ordering
# and stops once the page is full; a rare one reads the GIN index; a ranking reads the small ranking vector.
# The text search configuration is kept in the database, as an immutable function the triggers and
# every query share.
_PG_CONFIG = "helpdesk_search_config()"
_PG_TEXTS = "string_agg(m.subject || ' ' || m.text, ' ' ORDER BY m.id)"
# A tsvector holds at most 1 MB: a thread with more distinct words than that (pasted logs) keeps the
# words of its first quarter million characters rather than fail the write.
_PG_CAP = 250_000
# Ranking reads a second, small vector: the subject (weighted A) and the start of the first message,
# what a ticket is about. Small enough to stay in the ticket row: ranking the whole thread's vector
# (about 3 KB, out of line in TOAST) cost 20-30 ms for a search with 5,000 matches.
RANK_CHARS = 600
_PG_RANK_FIRST = (
    f"(SELECT to_tsvector({_PG_CONFIG}, left(m.text, {RANK_CHARS})) FROM message m"
    " WHERE m.ticket_id = ticket ORDER BY m.id LIMIT 1)"
)
_PG_FUNCTIONS = (
    # The vector of a ticket, from its subject and every message.
    "CREATE OR REPLACE FUNCTION helpdesk_search_vector(ticket integer, subject text) RETURNS tsvector"
    " LANGUAGE plpgsql STABLE AS $$ BEGIN"
    f" RETURN setweight(to_tsvector({_PG_CONFIG}, subject), 'A') || coalesce("
    f"(SELECT to_tsvector({_PG_CONFIG}, {_PG_TEXTS}) FROM message m WHERE m.ticket_id = ticket), '');"
    " EXCEPTION WHEN program_limit_exceeded THEN"
    f" RETURN setweight(to_tsvector({_PG_CONFIG}, left(subject, 1000)), 'A') || coalesce("
    f"(SELECT to_tsvector({_PG_CONFIG}, left({_PG_TEXTS}, {_PG_CAP})) FROM message m WHERE m.ticket_id = ticket), '');"
    " END $$",
    # The ranking vector of a ticket: its subject and the start of its first message.
    "CREATE OR REPLACE FUNCTION helpdesk_rank_vector(ticket integer, subject text) RETURNS tsvector"
    " LANGUAGE sql STABLE AS $$"
    f" SELECT setweight(to_tsvector({_PG_CONFIG}, left(subject, {RANK_CHARS})), 'A') || coalesce({_PG_RANK_FIRST}, '')"
    " $$",
    # Tickets whose messages changed or moved (merge, split, erasure, retention): their vectors anew.
    "CREATE OR REPLACE FUNCTION helpdesk_search_refresh(ids integer[]) RETURNS void LANGUAGE sql AS $$"
    " UPDATE ticket t SET search_vector = helpdesk_search_vector(t.id, t.subject),"
    " rank_vector = helpdesk_rank_vector(t.id, t.subject) WHERE t.id = ANY(ids) $$",
    "CREATE OR REPLACE FUNCTION helpdesk_search_ticket() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    f" IF TG_OP = 'INSERT' THEN NEW.search_vector := setweight(to_tsvector({_PG_CONFIG}, NEW.subject), 'A');"
    f" NEW.rank_vector := setweight(to_tsvector({_PG_CONFIG}, left(NEW.subject, {RANK_CHARS})), 'A');"
    " ELSIF NEW.subject IS DISTINCT FROM OLD.subject THEN"
    " NEW.search_vector := helpdesk_search_vector(NEW.id, NEW.subject);"
    " NEW.rank_vector := helpdesk_rank_vector(NEW.id, NEW.subject);"
    " END IF; RETURN NEW; END $$",
    # A new message (the usual write) is appended to its ticket's vector, not worked out anew; the
    # ranking vector changes only with a ticket's first message.
    "CREATE OR REPLACE FUNCTION helpdesk_search_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE r record; BEGIN"
    " FOR r IN SELECT m.ticket_id, min(m.id) AS first_id,"
    " string_agg(m.subject || ' ' || m.text, ' ' ORDER BY m.id) AS texts"
    " FROM added m GROUP BY m.ticket_id LOOP"
    " BEGIN"
    " UPDATE ticket t SET search_vector = coalesce(t.search_vector, '')"
    f" || to_tsvector({_PG_CONFIG}, r.texts),"
    " rank_vector = CASE WHEN EXISTS (SELECT 1 FROM message o WHERE o.ticket_id = r.ticket_id AND o.id < r.first_id)"
    " THEN t.rank_vector ELSE helpdesk_rank_vector(t.id, t.subject) END WHERE t.id = r.ticket_id;"
    " EXCEPTION WHEN program_limit_exceeded THEN PERFORM helpdesk_search_refresh(ARRAY[r.ticket_id]);"
    " END; END LOOP; RETURN NULL; END $$",
    "CREATE OR REPLACE FUNCTION helpdesk_search_message_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " PERFORM helpdesk_search_refresh(ARRAY(SELECT DISTINCT ticket_id FROM removed)); RETURN NULL; END $$",
    "CREATE OR REPLACE FUNCTION helpdesk_search_message_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " PERFORM helpdesk_search_refresh(ARRAY("
    " SELECT DISTINCT t FROM before_rows o JOIN after_rows n ON n.id = o.id, unnest(ARRAY[o.ticket_id, n.ticket_id]) t"
    " WHERE (n.ticket_id, n.subject, n.text) IS DISTINCT FROM (o.ticket_id, o.subject, o.text)"
    ")); RETURN NULL; END $$",
)
_PG_TRIGGERS = (
    "CREATE OR REPLACE TRIGGER ticket_search BEFORE INSERT OR UPDATE OF subject ON ticket"
    " FOR EACH ROW EXECUTE FUNCTION helpdesk_search_ticket()",
    # Statement triggers: a merge moving 200 messages works out each of its two tickets once.
    "CREATE OR REPLACE TRIGGER message_search_insert AFTER INSERT ON message REFERENCING NEW TABLE AS added"
    " FOR EACH STATEMENT EXECUTE FUNCTION helpdesk_search_message_insert()",
    "CREATE OR REPLACE TRIGGER message_search_delete AFTER DELETE ON message REFERENCING OLD TABLE AS removed"
    " FOR EACH STATEMENT EXECUTE FUNCTION helpdesk_search_message_delete()",
    "CREATE OR REPLACE TRIGGER message_search_update AFTER UPDATE ON message"
    " REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION helpdesk_search_message_update()",
)
# Indexes of the first PostgreSQL search: one vector per message made a common word's matches a set of
# tens of thousands of tickets to sort.
_PG_SUPERSEDED = ("DROP INDEX IF EXISTS ticket_search", "DROP INDEX IF EXISTS message_search")
_PG_INDEX = "ticket_search_vector"


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
        apart, triggers = _SUBJECTS_APART
        for old in triggers:
            conn.execute(text(old))
        if _TABLE not in existing:
            conn.execute(text(_CREATE))
            for fill in _FILL:
                conn.execute(text(fill))
        elif apart in existing:
            conn.execute(text(_FILL_SUBJECTS))
        conn.execute(text(f"DROP TABLE IF EXISTS {apart}"))
        for trigger in _TRIGGERS:
            conn.execute(text(trigger))
        # A search's matches are a set of ticket numbers; the queue's status filter on each of them
        # reads this narrow index, not the ticket rows (a common word: some 30,000 lookups). The
        # planner takes it once it knows its size.
        if not conn.scalar(text("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": _STATUS}):
            conn.execute(text(f"CREATE INDEX {_STATUS} ON ticket (id, status)"))
            conn.execute(text(f"ANALYZE {_STATUS}"))


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
        stale = current is None or wanted not in current
        if stale:
            conn.execute(
                text(
                    f"CREATE OR REPLACE FUNCTION {_PG_CONFIG} RETURNS regconfig LANGUAGE sql IMMUTABLE"
                    f" PARALLEL SAFE AS $$ SELECT {wanted} $$"
                )
            )
        columns = set(conn.scalars(text(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'ticket'"
            " AND column_name IN ('search_vector', 'rank_vector')"
        )))
        stale |= "search_vector" not in columns
        unranked = "rank_vector" not in columns  # a database indexed before the ranking vector
        for old in _PG_SUPERSEDED:
            conn.execute(text(old))
        conn.execute(text("ALTER TABLE ticket ADD COLUMN IF NOT EXISTS search_vector tsvector"))
        conn.execute(text("ALTER TABLE ticket ADD COLUMN IF NOT EXISTS rank_vector tsvector"))
        for ddl in _PG_FUNCTIONS:
            conn.execute(text(ddl))
        for ddl in _PG_TRIGGERS:
            conn.execute(text(ddl))
        if stale:
            # New, or words indexed under another language no longer match the queries: index them anew.
            conn.execute(text(f"DROP INDEX IF EXISTS {_PG_INDEX}"))
            conn.execute(text(
                "UPDATE ticket t SET search_vector = helpdesk_search_vector(t.id, t.subject),"
                " rank_vector = helpdesk_rank_vector(t.id, t.subject)"
            ))
        elif unranked:
            conn.execute(text("UPDATE ticket t SET rank_vector = helpdesk_rank_vector(t.id, t.subject)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {_PG_INDEX} ON ticket USING gin (search_vector)"))
    if stale or unranked:
        # The fill left a dead version of every ticket row, which every scan of the queue would read
        # until autovacuum came; and the planner learns which words are common (walk the queue's order
        # or read the index).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) ticket"))


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


_FTS_MATCH = f"SELECT rowid / {TICKET_SHIFT} FROM {_TABLE} WHERE {_TABLE} MATCH :q"


def _number(words: str) -> int | None:
    """The ticket number the text is, if it is one ("1234" or "#1234")."""
    number = words.strip().lstrip("#")
    return int(number) if number.isdigit() and len(number) < 10 else None


def matches(session: Session, words: str) -> ColumnElement[bool]:
    """A condition on Ticket: its subject or one of its messages contains the words."""
    words = words.strip()
    number = _number(words)
    by_number = Ticket.id == number if number is not None else None
    engine = session.get_bind().engine
    if uses_fts(engine) or uses_tsvector(engine):
        query = fts_query(words) if uses_fts(engine) else ts_query(words)
        if query is None:
            return by_number if by_number is not None else false()
        if uses_fts(engine):
            condition: ColumnElement[bool] = Ticket.id.in_(text(_FTS_MATCH).bindparams(q=query))
        else:  # on the ticket row itself: the queue's ordering can stop once a page is full
            condition = _pg_match(query)[0]
    else:
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        condition = or_(
            Ticket.subject.ilike(pattern, escape="\\"),
            exists().where(Message.ticket_id == Ticket.id, Message.text.ilike(pattern, escape="\\")),
        )
    return or_(by_number, condition) if by_number is not None else condition


_FTS_HITS = f"SELECT rowid AS key, rowid / {TICKET_SHIFT} AS ticket_id{{score}} FROM {_TABLE} WHERE {_TABLE} MATCH :q"


def hits(session: Session, words: str, *, scored: bool = False) -> Subquery | None:
    """SQLite: the index's matches as rows to join to their tickets, one per matching message or subject:
    ``key`` (ticket * TICKET_SHIFT + message id, in ticket order), ``ticket_id``, and with ``scored``
    the match's bm25 ``score`` (smaller is better). Joined, the index is read in order and only as far
    as a page needs, and a match is scored only once its ticket passed the other filters. None: no
    such rows (another database, no words, or a ticket number, which `matches` also finds by number)."""
    if not uses_fts(session.get_bind().engine) or _number(words.strip()) is not None:
        return None
    query = fts_query(words)
    if query is None:
        return None
    columns = [column("key", Integer), column("ticket_id", Integer)]
    if scored:
        columns.append(column("score", Float))
    sql = text(_FTS_HITS.format(score=", rank AS score" if scored else "")).bindparams(q=query)
    return sql.columns(*columns).subquery("hit")


# One pass over the matches gives every matching ticket its best score (smaller is better):
# ticket by ticket, a correlated lookup took seconds for a common word at 100,000 tickets.
_FTS_RANKS = (
    f"SELECT rowid / {TICKET_SHIFT} AS ticket_id, min(rank) AS score FROM {_TABLE} WHERE {_TABLE} MATCH :rq GROUP BY 1"
)
# The stored vectors, read from the ticket row of the query (literal: the columns are no part of the models).
_PG_VECTOR: ColumnElement[Any] = literal_column("ticket.search_vector")
_PG_RANK_VECTOR: ColumnElement[Any] = literal_column("ticket.rank_vector")


def _pg_match(query: str) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """The condition on the ticket row, and the tsquery (to_tsquery syntax) it matches."""
    tsquery = func.to_tsquery(func.helpdesk_search_config(), query)
    return _PG_VECTOR.bool_op("@@")(tsquery), tsquery


@dataclass(frozen=True)
class Ranking:
    """How to sort tickets by relevance: ``score`` (smaller is better, NULL: no score), read from the
    ``scores`` subquery (ticket_id, score) when there is one, to be outer-joined to the tickets."""

    score: ColumnElement[float]
    scores: Subquery | None = None


def relevance(session: Session, words: str) -> Ranking | None:
    """Matching tickets' scores; None where not ranked."""
    engine = session.get_bind().engine
    if not (uses_fts(engine) or uses_tsvector(engine)):
        return None
    query = fts_query(words) if uses_fts(engine) else ts_query(words)
    if query is None:
        return None
    if uses_tsvector(engine):
        # ts_rank on the ticket's ranking vector (its subject and the start of its first message, in the
        # row itself): larger is better, negated to sort as bm25 does. A ticket found only by later
        # messages scores 0 and follows, newest first. The ticket the text names by number has no score.
        rank = -func.ts_rank(_PG_RANK_VECTOR, _pg_match(query)[1], type_=Float)
        number = _number(words)
        return Ranking(rank if number is None else case((Ticket.id == number, null()), else_=rank))
    ranks = text(_FTS_RANKS).bindparams(rq=query)
    scores = ranks.columns(column("ticket_id", Integer), column("score", Float)).subquery("ranked")
    return Ranking(scores.c.score, scores)
