"""The outbox queue: claim due mail, record success, schedule retries.

Several senders may share one PostgreSQL database: rows are claimed with
``FOR UPDATE SKIP LOCKED`` and a claim lease, so no row is sent by two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Outbox, OutboxStatus, aware, utcnow


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for temporary failures, up to the row's deadline."""

    first_delay: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    claim_for: timedelta = timedelta(minutes=5)  # a crashed sender's claim expires after this

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
    now = utcnow()
    with transaction(factory) as session:
        rows = session.scalars(
            select(Outbox)
            .where(
                or_(
                    Outbox.status == OutboxStatus.PENDING,
                    # a claim whose sender died mid-send
                    (Outbox.status == OutboxStatus.SENDING) & (Outbox.claimed_until < now),
                ),
                Outbox.next_attempt_at <= now,
            )
            .order_by(Outbox.next_attempt_at, Outbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            row.status = OutboxStatus.SENDING
            row.claimed_by = worker
            row.claimed_until = now + policy.claim_for
            row.attempts += 1
        return [Claimed(r.id, r.message_id, r.mail_from, list(r.recipients), r.raw) for r in rows]


def mark_sent(session: Session, outbox_id: int) -> None:
    row = session.get(Outbox, outbox_id)
    if row is not None:
        row.status = OutboxStatus.SENT
        row.sent_at = utcnow()
        row.last_error = None
        row.claimed_until = None


def mark_failed(
    session: Session, outbox_id: int, error: str, *, permanent: bool, policy: RetryPolicy = RetryPolicy()
) -> OutboxStatus:
    """Record a failed attempt: retry later if temporary and before the deadline, else give up visibly."""
    row = session.get(Outbox, outbox_id)
    if row is None:
        return OutboxStatus.FAILED
    now = utcnow()
    row.last_error = error[:2000]
    row.claimed_until = None
    retry_at = now + policy.delay(row.attempts)
    if permanent or (row.deadline_at is not None and aware(retry_at) > aware(row.deadline_at)):
        row.status = OutboxStatus.FAILED
    else:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = retry_at
    return row.status


def retry(session: Session, outbox_id: int) -> Outbox:
    """Put a failed mail back in the queue now (an admin's decision), with a fresh deadline."""
    row = session.get(Outbox, outbox_id)
    if row is None:
        raise LookupError(f"no outbox mail {outbox_id}")
    if row.status is OutboxStatus.SENT:
        raise ValueError(f"outbox mail {outbox_id} was already sent")
    row.status = OutboxStatus.PENDING
    row.next_attempt_at = utcnow()
    row.deadline_at = utcnow() + timedelta(days=2)
    return row
