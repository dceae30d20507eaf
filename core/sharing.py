"""How workers share queued work on each database: the one place where SQLite and PostgreSQL differ.

PostgreSQL is what several processes share (pollers, senders on other hosts): rows are claimed with
``FOR UPDATE SKIP LOCKED``, so two workers never take the same row, and a stored mail is processed
in a transaction of its own, since locks held across mails (a Message-ID's, the writers', a ticket's
row) could deadlock with another worker or the console. A mail's audit entries are chained just
before its commit, so the writers' lock (the audit chain's head) is held for that moment, not for the
whole mail: two workers overlap. A worker claims and processes on one connection, which holds each
mail it claimed (a session advisory lock) from the claim's commit to the end of the mail's
processing: between the two, the row itself is not locked, and another worker claimed it too,
counting a run that never happened; two workers taking turns at the lowest mail did so until it was
quarantined. A worker that dies takes its connection, and its claims, with it. A claimed outbox row
may stay locked while its mail is on the wire.

SQLite has one writer at a time. A claim takes the database's write lock before it reads, so the
transaction never has to upgrade a read (which fails at once if another writer came between);
stored mail goes a batch per transaction, each mail in its own savepoint, because a commit per mail
costs more than most mails' processing; and no lock is held over a network call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


@dataclass(frozen=True)
class Sharing:
    database: str
    process_batch: int  # stored mails per processing transaction
    write_lock_first: bool  # a claim takes the write lock before reading what to claim
    holds_rows_while_sending: bool  # a claimed row stays locked while its mail is on the wire
    audit_at_commit: bool  # a mail's audit entries are chained at its commit (core.audit.chain_at_commit)
    claims_held: bool  # a worker's connection holds the stored mails it claimed until processed


POSTGRESQL = Sharing(
    "postgresql", process_batch=1, write_lock_first=False, holds_rows_while_sending=True, audit_at_commit=True,
    claims_held=True,
)
SQLITE = Sharing(
    "sqlite", process_batch=50, write_lock_first=True, holds_rows_while_sending=False, audit_at_commit=False,
    claims_held=False,
)


def sharing(bind: sessionmaker[Session] | Session | Engine | Connection) -> Sharing:
    """The policy for the database behind ``bind``."""
    if isinstance(bind, sessionmaker):
        engine: Engine | Connection = bind.kw["bind"]
    elif isinstance(bind, Session):
        engine = bind.get_bind()
    else:
        engine = bind
    return SQLITE if engine.dialect.name == "sqlite" else POSTGRESQL


@contextmanager
def worker_connection(factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    """Sessions for one worker's claims and processing: on PostgreSQL all on one connection, which
    holds the worker's claims (``hold_claims``) and lets them go when it ends."""
    engine = factory.kw["bind"]
    if not sharing(factory).claims_held or not isinstance(engine, Engine):  # (or pinned already)
        yield factory
        return
    with engine.connect() as connection:
        try:
            yield sessionmaker(class_=factory.class_, **{**factory.kw, "bind": connection})
        finally:
            with suppress(SQLAlchemyError):  # the connection is gone, and its claims with it
                release_claims(connection)


def hold_claims(session: Session, rows: Sequence[T], size: int) -> list[T]:
    """The first ``size`` of these stored mails (rows with an ``id``) that no other worker holds,
    held for this worker until ``release_claims``."""
    if not sharing(session).claims_held:
        return list(rows[:size])
    held: list[T] = []
    for row in rows:
        if len(held) == size:
            break
        key = {"k": f"claim:{row.id}"}  # type: ignore[attr-defined]
        if session.scalar(text("SELECT pg_try_advisory_lock(hashtextextended(:k, 0))"), key):
            held.append(row)
    return held


def release_claims(bind: sessionmaker[Session] | Connection) -> None:
    """Let go of every mail this worker's connection holds (its claims' processing has ended)."""
    if isinstance(bind, sessionmaker):
        if not sharing(bind).claims_held:
            return
        bind = bind.kw["bind"]
    assert isinstance(bind, Connection)
    bind.execute(text("SELECT pg_advisory_unlock_all()"))
    bind.commit()
