"""Per-address limit on automatic mail: the last line of defence against mail loops.

The loop guard recognises most robots; a robot it does not recognise (a vacation program
without RFC 3834 headers that answers with fresh mail) would otherwise ping-pong with our
acknowledgements forever. Counting what we already queued for an address caps that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.orm import Session

from helpdesk.core.models import Outbox, utcnow


@dataclass(frozen=True)
class RateLimit:
    per_hour: int = 10
    per_day: int = 40


@dataclass(frozen=True)
class Usage:
    last_hour: int
    last_day: int

    def allows(self, limit: RateLimit) -> bool:
        return self.last_hour < limit.per_hour and self.last_day < limit.per_day


# Built once: constructing this statement costs more than running it.
_USAGE = select(
    func.count(),
    func.coalesce(func.sum(case((Outbox.created_at >= bindparam("since_hour"), 1), else_=0)), 0),
).where(Outbox.rcpt == bindparam("rcpt"), Outbox.automatic.is_(True), Outbox.created_at >= bindparam("since_day"))


def usage(session: Session, address: str, now: datetime | None = None) -> Usage:
    """Automatic mails queued for ``address`` in the last hour and the last day."""
    now = now or utcnow()
    rows = session.execute(
        _USAGE,
        {"rcpt": address.lower(), "since_hour": now - timedelta(hours=1), "since_day": now - timedelta(days=1)},
    ).one()
    return Usage(last_hour=int(rows[1]), last_day=int(rows[0]))


def allows(session: Session, address: str, limit: RateLimit, now: datetime | None = None) -> bool:
    return usage(session, address, now).allows(limit)
