"""Mailbox leases: one watcher at a time reads a mailbox, even with several pollers on one database.

The lease lives on the mailbox's cursor row (``lease_holder``, ``lease_until``). Taking or
renewing it is one conditional UPDATE, so two pollers racing for it cannot both win. A holder
that dies stops renewing; once ``lease_until`` has passed, another poller takes the mailbox over.

The lease keeps pollers from doing the same work; correctness does not rest on it alone: the
cursor row is locked while a batch is stored, and (mailbox, uidvalidity, uid) is unique.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import rowcount, transaction
from helpdesk.core.models import MailboxCursor, utcnow


def holder_name() -> str:
    """Who we are, readable in the database: host, process id and a random tail (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ensure_row(factory: sessionmaker[Session], mailbox: str) -> None:
    with factory() as session:
        if session.get(MailboxCursor, mailbox) is not None:
            return
    try:
        with transaction(factory) as session:
            session.add(MailboxCursor(mailbox=mailbox, last_uid=0))
    except IntegrityError:
        pass  # another poller created it a moment ago


def acquire(
    factory: sessionmaker[Session], mailbox: str, holder: str, seconds: float, *, now: datetime | None = None
) -> bool:
    """Take or renew the lease on ``mailbox`` for ``seconds``. False while someone else holds it."""
    _ensure_row(factory, mailbox)
    now = now or utcnow()
    with transaction(factory) as session:
        done = session.execute(
            update(MailboxCursor)
            .where(
                MailboxCursor.mailbox == mailbox,
                or_(
                    MailboxCursor.lease_holder.is_(None),
                    MailboxCursor.lease_holder == holder,
                    MailboxCursor.lease_until.is_(None),
                    MailboxCursor.lease_until < now,
                ),
            )
            .values(lease_holder=holder, lease_until=now + timedelta(seconds=seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(done))


def release(factory: sessionmaker[Session], mailbox: str, holder: str) -> None:
    """Give the mailbox up at once (a clean shutdown), so another poller need not wait."""
    with transaction(factory) as session:
        session.execute(
            update(MailboxCursor)
            .where(MailboxCursor.mailbox == mailbox, MailboxCursor.lease_holder == holder)
            .values(lease_holder=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


def holds(cursor: MailboxCursor, holder: str) -> bool:
    """Whether ``holder`` still holds the lease on a (locked) cursor row."""
    until = cursor.lease_until
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)  # SQLite hands datetimes back naive
    return cursor.lease_holder == holder and until is not None and until > utcnow()


def extend(cursor: MailboxCursor, seconds: float) -> None:
    """Renew a lease we hold on a locked cursor row (during a long backlog)."""
    cursor.lease_until = utcnow() + timedelta(seconds=seconds)


def wait_for(
    factory: sessionmaker[Session], mailbox: str, holder: str, seconds: float, *, timeout: float, step: float = 0.25
) -> bool:
    """Try to take the lease until ``timeout`` seconds have passed (a dead holder's lease runs out)."""
    deadline = time.monotonic() + timeout
    while not acquire(factory, mailbox, holder, seconds):
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def current_holder(factory: sessionmaker[Session], mailbox: str) -> str | None:
    with factory() as session:
        cursor = session.get(MailboxCursor, mailbox)
        return cursor.lease_holder if cursor is not None else None
