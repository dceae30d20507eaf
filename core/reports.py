"""Service desk figures: volumes, SLA compliance, response and resolution times, backlog age."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from helpdesk.core.models import AccessGrant, AccessRequest, AccessStatus, Event, SlaMetric, Ticket
from helpdesk.core.settings import SlaSettings
from helpdesk.core.sla import OPEN, ClockedTicket, aware, policy_clocks

# (label, upper bound of age) for the open backlog; the last bucket takes the rest.
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1d", timedelta(days=1)),
    ("1-3d", timedelta(days=3)),
    ("3-7d", timedelta(days=7)),
    ("7-30d", timedelta(days=30)),
    (">30d", None),
)
EXPIRY_WINDOW = timedelta(days=14)


def _mean_minutes(spans: list[timedelta]) -> float | None:
    if not spans:
        return None
    return round(sum(s.total_seconds() for s in spans) / len(spans) / 60, 1)


def _sla(session: Session, tickets: Sequence[ClockedTicket], policy: SlaSettings, now: datetime) -> dict[str, Any]:
    tally = {m: Counter[str]() for m in SlaMetric}
    for ticket_clocks in policy_clocks(session, policy, tickets, now).values():
        for clock in ticket_clocks:
            if clock.breached:
                tally[clock.metric]["breached"] += 1
            elif clock.stopped_at is not None:
                tally[clock.metric]["met"] += 1
            else:
                tally[clock.metric]["running"] += 1
    result = {}
    for metric, counts in tally.items():
        decided = counts["met"] + counts["breached"]
        result[metric.value] = {
            "met": counts["met"],
            "breached": counts["breached"],
            "running": counts["running"],
            # Share of decided clocks that met their target; running ones are not decided yet.
            "compliance": round(counts["met"] / decided, 4) if decided else None,
        }
    return result


def _counts(session: Session, column: Any) -> dict[Any, int]:
    """Tickets per value of a column, counted by the database; in order of first appearance."""
    rows = session.execute(select(column, func.count()).group_by(column).order_by(func.min(Ticket.id)))
    return {getattr(value, "value", value): n for value, n in rows}


def _backlog(session: Session, now: datetime) -> dict[str, int]:
    """Open tickets by age, bucketed by the database (younger than a bound: in its bucket)."""
    utc = now.astimezone(timezone.utc)
    bucket = case(
        *((Ticket.created_at > utc - bound, label) for label, bound in AGE_BUCKETS if bound is not None),
        else_=AGE_BUCKETS[-1][0],
    )
    counted = dict(session.execute(select(bucket, func.count()).where(Ticket.status.in_(OPEN)).group_by(bucket)).all())
    return {label: counted.get(label, 0) for label, _ in AGE_BUCKETS}


def _spans(session: Session, until: Any) -> list[timedelta]:
    """Creation to ``until`` (first response, resolution) of the tickets that got there: two columns only."""
    rows = session.execute(select(Ticket.created_at, until).where(until.is_not(None)))
    return [aware(end) - aware(start) for start, end in rows]


# What the SLA clocks read of a ticket (core.sla.ClockedTicket): rows of these keep 100,000 tickets cheap.
_CLOCK_COLUMNS = (
    Ticket.id, Ticket.priority, Ticket.status, Ticket.created_at, Ticket.updated_at, Ticket.first_response_at,
    Ticket.resolved_at,
)


def report(session: Session, now: datetime, *, sla: SlaSettings | None = None) -> dict[str, Any]:
    """The figures of ``helpdesk report --json``: add keys, never rename them."""
    now = aware(now)
    by_kind = _counts(session, Ticket.kind)
    backlog = _backlog(session, now)
    tickets = session.execute(select(*_CLOCK_COLUMNS).order_by(Ticket.id)).all()  # rows, not entities: cheap
    severities = session.execute(select(Event.severity, func.count()).group_by(Event.severity)).all()
    active = select(func.count()).select_from(AccessGrant).where(AccessGrant.revoked_at.is_(None))
    return {
        "generated_at": now.isoformat(),
        "tickets": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_category": _counts(session, Ticket.category),
        "by_priority": dict(sorted(_counts(session, Ticket.priority).items())),
        "by_status": _counts(session, Ticket.status),
        "sla": _sla(session, tickets, sla or SlaSettings(), now),
        "mean_minutes_to_first_response": _mean_minutes(_spans(session, Ticket.first_response_at)),
        "mean_minutes_to_resolution": _mean_minutes(_spans(session, Ticket.resolved_at)),
        "backlog": {"open": sum(backlog.values()), "by_age": backlog},
        "events": {"total": sum(n for _, n in severities), "by_severity": {s.value: n for s, n in severities}},
        "access": {
            "pending": session.scalar(
                select(func.count()).select_from(AccessRequest).where(AccessRequest.status == AccessStatus.PENDING)
            ),
            "active_grants": session.scalar(active.where(AccessGrant.expires_at > now)),
            "expiring_soon": session.scalar(
                active.where(AccessGrant.expires_at > now, AccessGrant.expires_at <= now + EXPIRY_WINDOW)
            ),
        },
    }
