"""The desk's figures for monitoring, read from the database when asked.

Pollers, senders and console processes may run on several machines: what they did is in the
database, so every figure here is computed from it at scrape time and is the same whichever console
process answers. Counts only: no address, subject or mailbox name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from helpdesk.core import mailauth
from helpdesk.core.models import Inbound, InboundStatus, Outbox, OutboxStatus, SlaLevel, SlaMark, SlaMetric

# Seconds from a mail's arrival (stored) to the end of its processing: a mail normally takes well under
# a second; retries after a transient failure take minutes to hours.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


@dataclass(frozen=True)
class Latency:
    """A cumulative histogram: how many mails took at most each bound, their number and summed time."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total_seconds: float


@dataclass(frozen=True)
class DeskFigures:
    inbound: dict[str, int]  # mails by inbound status (every status, zeros included)
    outbox: dict[str, int]  # outgoing mails by status
    outbox_retrying: int  # unsent mails whose last attempt failed (temporarily)
    sla_breaches: dict[str, int]  # by metric: response, resolution
    mail_logins: dict[str, int]  # mailbox (and SMTP) logins by auth kind
    mail_logins_failing: dict[str, int]  # ... whose last attempt failed
    latency: Latency

    @property
    def inbound_total(self) -> int:
        return sum(self.inbound.values())

    @property
    def outbox_depth(self) -> int:
        return self.outbox[OutboxStatus.PENDING.value] + self.outbox[OutboxStatus.SENDING.value]


def _by(session: Session, column: Any, values: list[str]) -> dict[str, int]:
    found = {getattr(k, "value", k): n for k, n in session.execute(select(column, func.count()).group_by(column))}
    return {value: int(found.get(value, 0)) for value in values}


def _seconds(session: Session, start: Any, end: Any) -> Any:
    """end - start in seconds, as SQL (the databases spell date arithmetic differently)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.date_part("epoch", end - start)  # double precision (EXTRACT gives numeric: slower)


def _latency(session: Session) -> Latency:
    """One pass: each processed mail's seconds are worked out once and put in the first bucket that holds them."""
    seconds = _seconds(session, Inbound.received_at, Inbound.processed_at).label("seconds")
    timed = select(seconds).where(Inbound.processed_at.is_not(None)).subquery()
    bucket = case(*((timed.c.seconds <= bound, i) for i, bound in enumerate(LATENCY_BUCKETS)), else_=len(LATENCY_BUCKETS))
    per_bucket = {int(b): (int(n), float(total or 0.0)) for b, n, total in session.execute(
        select(bucket, func.count(), func.sum(timed.c.seconds)).group_by(bucket)
    )}
    cumulative, running = [], 0
    for i, bound in enumerate(LATENCY_BUCKETS):
        running += per_bucket.get(i, (0, 0.0))[0]
        cumulative.append((bound, running))
    return Latency(
        buckets=tuple(cumulative),
        count=sum(n for n, _ in per_bucket.values()),
        total_seconds=max(sum(total for _, total in per_bucket.values()), 0.0),
    )


def _logins(session: Session) -> tuple[dict[str, int], dict[str, int]]:
    known: dict[str, int] = {}
    failing: dict[str, int] = {}
    for status in mailauth.statuses(session).values():
        known[status.auth_kind] = known.get(status.auth_kind, 0) + 1
        failing[status.auth_kind] = failing.get(status.auth_kind, 0) + int(status.failing)
    return known, failing


def figures(session: Session) -> DeskFigures:
    retrying = session.scalar(
        select(func.count()).select_from(Outbox).where(
            Outbox.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]), Outbox.last_error.is_not(None)
        )
    )
    breaches = {
        getattr(metric, "value", metric): int(n)
        for metric, n in session.execute(
            select(SlaMark.metric, func.count()).where(SlaMark.level == SlaLevel.BREACH).group_by(SlaMark.metric)
        )
    }
    logins, failing = _logins(session)
    return DeskFigures(
        inbound=_by(session, Inbound.status, [s.value for s in InboundStatus]),
        outbox=_by(session, Outbox.status, [s.value for s in OutboxStatus]),
        outbox_retrying=int(retrying or 0),
        sla_breaches={m.value: breaches.get(m.value, 0) for m in SlaMetric},
        mail_logins=logins,
        mail_logins_failing=failing,
        latency=_latency(session),
    )
