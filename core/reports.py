"""Service desk figures: volumes, SLA compliance, response and resolution times, backlog age."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from helpdesk.core import slastate
from helpdesk.core.i18n import N_
from helpdesk.core.models import AccessGrant, AccessRequest, AccessStatus, Event, SlaMetric, Ticket, aware
from helpdesk.core.settings import SlaSettings
from helpdesk.core.sla import OPEN, policy_clocks
from helpdesk.core.slastate import CLOCK_COLUMNS as _CLOCK_COLUMNS

# (label, upper bound of age) for the open backlog; the last bucket takes the rest. The labels are the API's
# keys, and marked for translation where a page shows them.
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    (N_("<1d"), timedelta(days=1)),
    (N_("1-3d"), timedelta(days=3)),
    (N_("3-7d"), timedelta(days=7)),
    (N_("7-30d"), timedelta(days=30)),
    (N_(">30d"), None),
)
EXPIRY_WINDOW = timedelta(days=14)


def _tally(counts: dict[SlaMetric, Counter[str]], session: Session, policy: SlaSettings, now: datetime) -> None:
    """Count the clocks from the outcomes kept on the tickets (core.slastate), in the database."""
    utc = now.astimezone(UTC)
    stored = Ticket.sla_policy == slastate.fingerprint(policy)
    answered = or_(Ticket.first_response_at.is_not(None), Ticket.resolved_at.is_not(None))
    figures = []
    for breach_at, stopped in (
        (Ticket.response_breach_at, answered),
        (Ticket.resolution_breach_at, Ticket.resolved_at.is_not(None)),
    ):
        breached = and_(breach_at.is_not(None), breach_at < utc)
        figures += [
            func.coalesce(func.sum(case((breached, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(~breached, stopped), 1), else_=0)), 0),
            func.count(),
        ]
    row = session.execute(select(*figures).where(stored)).one()
    for metric, (breached_n, met_n, all_n) in zip((SlaMetric.RESPONSE, SlaMetric.RESOLUTION), (row[:3], row[3:]), strict=True):
        counts[metric].update({"breached": breached_n, "met": met_n, "running": all_n - breached_n - met_n})


def _sla(session: Session, policy: SlaSettings, now: datetime) -> dict[str, Any]:
    tally = {m: Counter[str]() for m in SlaMetric}
    _tally(tally, session, policy, now)
    # Tickets not (yet) kept under this policy: their clocks run here, as they did for every ticket before.
    stale = select(Ticket.id).where(slastate.stale(policy))  # found in an index, then read by id
    others = session.execute(select(*_CLOCK_COLUMNS).where(Ticket.id.in_(stale)).order_by(Ticket.id)).all()
    for ticket_clocks in policy_clocks(session, policy, others, now).values():
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


def _counts(session: Session, *columns: Any) -> list[dict[Any, int]]:
    """Tickets per value of each column, in order of first appearance: one grouped scan for all of them."""
    found: list[dict[Any, list[int]]] = [{} for _ in columns]  # value -> [count, first ticket]
    for *values, n, first in session.execute(select(*columns, func.count(), func.min(Ticket.id)).group_by(*columns)):
        for tally, value in zip(found, values, strict=True):
            seen = tally.setdefault(getattr(value, "value", value), [0, first])
            seen[0] += n
            seen[1] = min(seen[1], first)
    return [{value: n for value, (n, _) in sorted(t.items(), key=lambda item: item[1][1])} for t in found]


def weekly_counts(session: Session, column: Any, start: datetime, weeks: int) -> Counter[tuple[int, Any]]:
    """Tickets opened per (week since ``start``, value of ``column``), counted by the database."""
    utc = start.astimezone(UTC)
    week = case(*((Ticket.created_at < utc + timedelta(weeks=w + 1), w) for w in range(weeks)), else_=weeks)
    rows = session.execute(select(week, column, func.count()).where(Ticket.created_at >= utc).group_by(week, column))
    return Counter({(w, getattr(value, "value", value)): n for w, value, n in rows})


def _backlog(session: Session, now: datetime) -> dict[str, int]:
    """Open tickets by age, bucketed by the database (younger than a bound: in its bucket)."""
    utc = now.astimezone(UTC)
    bucket = case(
        *((Ticket.created_at > utc - bound, label) for label, bound in AGE_BUCKETS if bound is not None),
        else_=AGE_BUCKETS[-1][0],
    )
    rows = session.execute(select(bucket, func.count()).where(Ticket.status.in_(OPEN)).group_by(bucket)).all()
    counted: dict[str, int] = {label: n for label, n in rows}
    return {label: counted.get(label, 0) for label, _ in AGE_BUCKETS}


def _mean_minutes(session: Session, until: Any) -> float | None:
    """Mean minutes from creation to ``until`` (first response, resolution) of the tickets that got there."""
    seconds: ColumnElement[Any]
    if session.get_bind().dialect.name == "postgresql":
        seconds = func.extract("epoch", until - Ticket.created_at)
    else:  # SQLite: julianday() reads the stored text, in days
        seconds = (func.julianday(until) - func.julianday(Ticket.created_at)) * 86400
    mean = session.scalar(select(func.avg(seconds)).where(until.is_not(None)))
    return None if mean is None else round(float(mean) / 60, 1)


def report(session: Session, now: datetime, *, sla: SlaSettings | None = None) -> dict[str, Any]:
    """The figures of ``helpdesk report --json``: add keys, never rename them."""
    now = aware(now)
    by_kind, by_category, by_priority, by_status = _counts(
        session, Ticket.kind, Ticket.category, Ticket.priority, Ticket.status
    )
    backlog = _backlog(session, now)
    severities = session.execute(select(Event.severity, func.count()).group_by(Event.severity)).all()
    active = select(func.count()).select_from(AccessGrant).where(AccessGrant.revoked_at.is_(None))
    return {
        "generated_at": now.isoformat(),
        "tickets": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_category": by_category,
        "by_priority": dict(sorted(by_priority.items())),
        "by_status": by_status,
        "sla": _sla(session, sla or SlaSettings(), now),
        "mean_minutes_to_first_response": _mean_minutes(session, Ticket.first_response_at),
        "mean_minutes_to_resolution": _mean_minutes(session, Ticket.resolved_at),
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
