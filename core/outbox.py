"""The outbox queue: claim due mail, record success, schedule retries.

Several senders may share one PostgreSQL database: rows are claimed with
``FOR UPDATE SKIP LOCKED`` and a claim lease, so no row is sent by two of them.
A sender renews its claim on each mail just before sending it (``renew_claim``), and again
while the mail is on the wire, and records a result only while it still holds the claim: a
late result from a claim that expired and was taken over must not undo the other sender's work.

The same functions drain webhook deliveries (``table=WebhookDelivery``, core.webhooks): a
queue table is any with the claim columns below (status, attempts, next_attempt_at, deadline_at,
last_error, claimed_by, claimed_until, sent_at).

Delivery is at least once: SMTP has no two-phase commit, so a sender killed between the
server's 250 and its commit of "sent" leaves a mail that is sent again once the claim runs
out. That window is one statement (``mark_sent``), and the copy is the same bytes with the
same Message-ID, which mail clients de-duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar, cast

from sqlalchemy import ColumnElement, Connection, Update, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import rowcount, transaction
from helpdesk.core.i18n import N_, Invalid, Unknown, Word
from helpdesk.core.models import Outbox, OutboxStatus, WebhookDelivery, aware, utcnow

log = logging.getLogger(__name__)

Queue = type[Outbox] | type[WebhookDelivery]
# One of the two queue tables (same claim columns), so that a row read from it has that table's type.
Queued = TypeVar("Queued", Outbox, WebhookDelivery)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for temporary failures, up to the row's deadline."""

    first_delay: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    # A killed sender's mail is taken over after this. Renewed before each mail and every third of
    # it while the mail is on the wire (mailgateway.smtp), so a live sender never loses it.
    claim_for: timedelta = timedelta(seconds=60)

    def delay(self, attempts: int) -> timedelta:
        seconds = self.first_delay.total_seconds() * self.factor ** max(attempts - 1, 0)
        return min(timedelta(seconds=seconds), self.max_delay)


@dataclass(frozen=True)
class Claimed:
    id: int
    message_id: str
    mail_from: str
    recipients: list[str]
    raw: bytes


def claim_due(
    factory: sessionmaker[Session], worker: str, *, limit: int = 50, policy: RetryPolicy = RetryPolicy()
) -> list[Claimed]:
    """Claim up to ``limit`` mails that are due, for ``worker``; commit the claim at once."""
    with transaction(factory) as session:
        rows = claim_rows(session, Outbox, worker, limit=limit, policy=policy)
        return [Claimed(r.id, r.message_id, r.mail_from, list(r.recipients), r.raw) for r in rows]


def _get(session: Session, table: Queue, row_id: int) -> Outbox | WebhookDelivery | None:
    """The row as it is in the database now; typed as the table's class (given the union of the two classes,
    session.get's type would be their common base)."""
    return cast("Outbox | WebhookDelivery | None", session.get(table, row_id, populate_existing=True))


def claim_rows(session: Session, table: type[Queued], worker: str, *, limit: int, policy: RetryPolicy) -> list[Queued]:
    """Up to ``limit`` due rows of a queue table, claimed for ``worker`` (the caller commits)."""
    now = utcnow()
    rows = session.scalars(
        select(table)
        .where(
            or_(
                table.status == OutboxStatus.PENDING,
                # a claim whose sender died mid-send
                (table.status == OutboxStatus.SENDING) & (table.claimed_until < now),
            ),
            table.next_attempt_at <= now,
        )
        .order_by(table.next_attempt_at, table.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.status = OutboxStatus.SENDING
        row.claimed_by = worker
        row.claimed_until = now + policy.claim_for
        row.attempts += 1
    return list(rows)


def _held_by(outbox_id: int, worker: str, table: Queue = Outbox) -> ColumnElement[bool]:
    return (table.id == outbox_id) & (table.status == OutboxStatus.SENDING) & (table.claimed_by == worker)


def _write(bind: sessionmaker[Session] | Connection | Session, statement: Update) -> int:
    """Rows changed by one statement: in a transaction of its own, or on the caller's connection or session.

    On a connection, the caller commits.
    """
    statement = statement.execution_options(synchronize_session=False)
    if isinstance(bind, (Connection, Session)):
        return rowcount(bind.execute(statement))
    with transaction(bind) as session:
        return rowcount(session.execute(statement))


def renew_claim(
    bind: sessionmaker[Session] | Connection, outbox_id: int, worker: str, *, policy: RetryPolicy = RetryPolicy(),
    table: Queue = Outbox,
) -> bool:
    """Extend ``worker``'s claim on one mail before and while sending it; False if the claim was lost.

    An expired claim nobody took over is still ours. One conditional UPDATE, so it cannot
    race a claim by another sender on either database.
    """
    renewed = _write(bind, update(table).where(_held_by(outbox_id, worker, table)).values(
        claimed_until=utcnow() + policy.claim_for))
    if not renewed:
        log.warning(f"{table.__tablename__} %s: %s lost its claim before sending; another sender has it", outbox_id, worker)
    return bool(renewed)


def release(factory: sessionmaker[Session], outbox_ids: list[int], worker: str, *, table: Queue = Outbox) -> int:
    """Give back claimed mail ``worker`` will not send after all (it is stopping): due again at once.

    Only mail still held by ``worker`` and not sent; the attempt is not counted.
    """
    if not outbox_ids:
        return 0
    return _write(factory, update(table).where(
        table.id.in_(outbox_ids), table.status == OutboxStatus.SENDING, table.claimed_by == worker,
    ).values(status=OutboxStatus.PENDING, claimed_by=None, claimed_until=None, attempts=table.attempts - 1))  # fmt: skip


def _take_back(session: Session, outbox_id: int, worker: str, result: str, table: Queue) -> Outbox | WebhookDelivery | None:
    """The row, locked for this transaction, if ``worker`` still holds its claim; else None, and the row is left alone."""
    # A conditional UPDATE first: it checks the claim and takes the row lock (the database
    # lock on SQLite) in one step, so nobody can claim the row between our check and our write.
    held = rowcount(session.execute(
        update(table)
        .where(_held_by(outbox_id, worker, table))
        .values(claimed_until=None)
        .execution_options(synchronize_session=False)
    ))
    if not held:
        log.warning(
            f"{table.__tablename__} %s: late result %r from %s ignored: its claim was taken over", outbox_id, result, worker
        )
        return None
    return _get(session, table, outbox_id)


def mark_sent(bind: Session | Connection, outbox_id: int, worker: str, *, table: Queue = Outbox) -> bool:
    """Record that ``worker`` sent the mail; False (and nothing changed) if its claim was lost.

    One conditional UPDATE. Until it commits, a killed sender's mail counts as unsent and goes
    again: a sender issues it right before the mail goes and commits it on the server's 250.
    """
    done = _write(bind, update(table).where(_held_by(outbox_id, worker, table)).values(
        status=OutboxStatus.SENT, sent_at=utcnow(), last_error=None, claimed_until=None,
    ))  # fmt: skip
    return bool(done)


def mark_failed(
    session: Session,
    outbox_id: int,
    worker: str,
    error: str,
    *,
    permanent: bool,
    policy: RetryPolicy = RetryPolicy(),
    table: Queue = Outbox,
) -> OutboxStatus | None:
    """Record a failed attempt: retry later if temporary and before the deadline, else give up visibly.

    None (and nothing changed) if ``worker``'s claim was lost to another sender.
    """
    row = _take_back(session, outbox_id, worker, error, table)
    if row is None:
        return None
    now = utcnow()
    row.last_error = error[:2000]
    retry_at = now + policy.delay(row.attempts)
    if permanent or (row.deadline_at is not None and aware(retry_at) > aware(row.deadline_at)):
        row.status = OutboxStatus.FAILED
    else:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = retry_at
    return row.status


def retry(session: Session, outbox_id: int, *, table: Queue = Outbox) -> Outbox | WebhookDelivery:
    """Put a failed mail back in the queue now (an admin's decision), with a fresh deadline.

    Refuses a sent mail and one a sender is sending under a live claim: queuing that
    again could send it twice. A SENDING row whose claim expired belongs to a dead sender.
    """
    now = utcnow()
    # Conditional UPDATE, so a sender cannot claim the row between our check and our write.
    queued = rowcount(session.execute(
        update(table)
        .where(
            table.id == outbox_id,
            or_(
                table.status.in_([OutboxStatus.PENDING, OutboxStatus.FAILED]),
                (table.status == OutboxStatus.SENDING)
                & (table.claimed_until.is_(None) | (table.claimed_until < now)),
            ),
        )
        .values(
            status=OutboxStatus.PENDING,
            next_attempt_at=now,
            deadline_at=now + timedelta(days=2),
            claimed_by=None,
            claimed_until=None,
        )
        .execution_options(synchronize_session=False)
    ))
    row = _get(session, table, outbox_id)
    what = Word(N_("outbox mail") if table is Outbox else N_("delivery"))
    if row is None:
        raise Unknown(N_("no %(what)s %(id)s"), what=what, id=outbox_id)
    if not queued:
        if row.status is OutboxStatus.SENT:
            raise Invalid(N_("%(what)s %(id)s was already sent"), what=what, id=outbox_id)
        until = aware(row.claimed_until).strftime("%Y-%m-%d %H:%M:%S UTC") if row.claimed_until else "soon"
        raise Invalid(N_("%(what)s %(id)s is being sent right now by %(sender)s; if that sender died, retry after its "
                         "claim expires (%(until)s)"), what=what, id=outbox_id, sender=row.claimed_by, until=until)
    return row
