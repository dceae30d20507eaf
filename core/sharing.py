"""How workers share queued work on each database: the one place where SQLite and PostgreSQL differ.

PostgreSQL is what several processes share (pollers, senders on other hosts): rows are claimed with
``FOR UPDATE SKIP LOCKED``, so two workers never take the same row, and a stored mail is processed
in a transaction of its own, since locks held across mails (a Message-ID's, the writers', a ticket's
row) could deadlock with another worker or the console. A claimed outbox row may stay locked while
its mail is on the wire.

SQLite has one writer at a time. A claim takes the database's write lock before it reads, so the
transaction never has to upgrade a read (which fails at once if another writer came between);
stored mail goes a batch per transaction, each mail in its own savepoint, because a commit per mail
costs more than most mails' processing; and no lock is held over a network call.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class Sharing:
    database: str
    process_batch: int  # stored mails per processing transaction
    write_lock_first: bool  # a claim takes the write lock before reading what to claim
    holds_rows_while_sending: bool  # a claimed row stays locked while its mail is on the wire


POSTGRESQL = Sharing("postgresql", process_batch=1, write_lock_first=False, holds_rows_while_sending=True)
SQLITE = Sharing("sqlite", process_batch=50, write_lock_first=True, holds_rows_while_sending=False)


def sharing(bind: sessionmaker[Session] | Session | Engine | Connection) -> Sharing:
    """The policy for the database behind ``bind``."""
    if isinstance(bind, sessionmaker):
        engine: Engine | Connection = bind.kw["bind"]
    elif isinstance(bind, Session):
        engine = bind.get_bind()
    else:
        engine = bind
    return SQLITE if engine.dialect.name == "sqlite" else POSTGRESQL
