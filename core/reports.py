"""Service desk figures: volumes, SLA compliance, response and resolution times, backlog age."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import AccessGrant, AccessRequest, AccessStatus, Event, SlaMetric, Ticket
from core.settings import SlaSettings
from core.sla import OPEN, aware, policy_clocks

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


def _bucket(age: timedelta) -> str:
    for label, bound in AGE_BUCKETS:
        if bound is None or age < bound:
            return label
    return AGE_BUCKETS[-1][0]


def _sla(session: Session, tickets: list[Ticket], policy: SlaSettings, now: datetime) -> dict[str, Any]:
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


def report(session: Session, now: datetime, *, sla: SlaSettings | None = None) -> dict[str, Any]:
    """The figures of ``helpdesk report --json``: add keys, never rename them."""
    now = aware(now)
    tickets = list(session.scalars(select(Ticket)))
    backlog = Counter({label: 0 for label, _ in AGE_BUCKETS})
    for t in tickets:
        if t.status in OPEN:
            backlog[_bucket(now - aware(t.created_at))] += 1
    responses = [aware(t.first_response_at) - aware(t.created_at) for t in tickets if t.first_response_at]
    resolutions = [aware(t.resolved_at) - aware(t.created_at) for t in tickets if t.resolved_at]
    severities = session.execute(select(Event.severity, func.count()).group_by(Event.severity)).all()
    active = select(func.count()).select_from(AccessGrant).where(AccessGrant.revoked_at.is_(None))
    return {
        "generated_at": now.isoformat(),
        "tickets": len(tickets),
        "by_kind": dict(Counter(t.kind.value for t in tickets)),
        "by_category": dict(Counter(t.category for t in tickets)),
        "by_priority": dict(sorted(Counter(t.priority for t in tickets).items())),
        "by_status": dict(Counter(t.status.value for t in tickets)),
        "sla": _sla(session, tickets, sla or SlaSettings(), now),
        "mean_minutes_to_first_response": _mean_minutes(responses),
        "mean_minutes_to_resolution": _mean_minutes(resolutions),
        "backlog": {"open": sum(backlog.values()), "by_age": dict(backlog)},
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
