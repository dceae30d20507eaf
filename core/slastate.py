"""SLA outcomes kept on each ticket, so that reports count them in SQL instead of running every clock.

Per clock (response, resolution) a ticket keeps the instant after which the clock is over its target:
in the future while the clock runs, in the past once it went over, None while it stands still (paused
or stopped) under its target. At any later moment ``now`` a clock is then breached when that instant
is before ``now``, met when it stopped and is not breached, running otherwise: what core.sla's clocks
say, from the same timeline. The instants are worked out again, in the flush that writes it, for every
ticket whose status, priority, creation, first response or resolution changes, wherever the change
comes from (a listener, because many use cases move those fields and new ones keep coming).

They depend on the policy (targets, business hours): each ticket keeps the fingerprint of the one they
were worked out under; reports fall back to the clocks for any ticket of another one, and
``refresh`` (run at start-up) brings the tickets in line with the configured policy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, inspect, or_, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from helpdesk.core.models import Ticket, TicketStatus, aware, utcnow
from helpdesk.core.settings import BusinessHours, SlaSettings
from helpdesk.core.sla import (
    PAUSED,
    ClockedTicket,
    Timeline,
    _timelines,
    add_business_time,
    business_time,
    target_for,
)

_POLICY = "helpdesk.sla_policy"
# Ticket fields a clock reads; a change to any of them settles the outcomes again.
_MOVES = ("status", "priority", "created_at", "first_response_at", "resolved_at")
# A breach is the first instant the counted time *exceeds* the target: one microsecond (the
# databases' resolution) past the instant it reaches it, less that microsecond. Reaching the target
# as working hours end thus breaches only once they start again, as the clocks say.
_TICK = timedelta(microseconds=1)
BATCH = 1000


def use_policy(factory: sessionmaker[Session], policy: SlaSettings) -> None:
    """Work out the outcomes of every session ``factory`` makes under ``policy``; called once at start-up."""
    factory.configure(info={**factory.kw.get("info", {}), _POLICY: policy})


def policy_of(session: Session) -> SlaSettings:
    # A factory use_policy() never saw (tests, benchmarks) has the default targets, as the settings do.
    policy: SlaSettings = session.info.get(_POLICY) or SlaSettings()
    return policy


def fingerprint(policy: SlaSettings) -> str:
    """Sixteen hex digits that change whenever the outcomes under ``policy`` may change."""
    hours: BusinessHours | None = policy.business_hours
    data: dict[str, Any] = {
        "targets": {p: [t.response_minutes, t.resolution_minutes] for p, t in sorted(policy.targets.items())},
        "hours": None if hours is None else [
            hours.timezone, sorted(hours.weekdays), hours.start.isoformat(), hours.end.isoformat(),
            sorted(d.isoformat() for d in hours.holidays),
        ],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def breach_at(
    ticket: ClockedTicket, line: Timeline, target: timedelta, stopped: datetime | None, hours: BusinessHours | None
) -> datetime | None:
    """The instant after which the clock's counted time exceeds ``target``; None if it never does as things stand."""
    start = aware(ticket.created_at)
    left = target
    for i, (at, status) in enumerate(line):
        if status in PAUSED:
            continue
        lo = start if i == 0 else max(at, start)  # as core.sla counts: from creation on
        hi = line[i + 1][0] if i + 1 < len(line) else None
        if stopped is not None:
            hi = stopped if hi is None else min(hi, stopped)
        if hi is not None and hi <= lo:
            continue
        over = add_business_time(lo, left + _TICK, hours) - _TICK
        if hi is None or over < hi:
            return over
        left -= business_time(lo, hi, hours)
    return None


def outcomes(ticket: ClockedTicket, line: Timeline, policy: SlaSettings) -> tuple[datetime | None, datetime | None]:
    """(response, resolution) breach instants of one ticket under ``policy``."""
    target = target_for(policy, ticket.priority)
    responded = min((aware(t) for t in (ticket.first_response_at, ticket.resolved_at) if t), default=None)
    resolved = aware(ticket.resolved_at) if ticket.resolved_at else None
    hours = policy.business_hours
    return (
        breach_at(ticket, line, timedelta(minutes=target.response_minutes), responded, hours),
        breach_at(ticket, line, timedelta(minutes=target.resolution_minutes), resolved, hours),
    )


def _values(tickets: Sequence[ClockedTicket], lines: dict[int, Timeline], policy: SlaSettings) -> list[dict[str, Any]]:
    mark = fingerprint(policy)
    values = []
    for t in tickets:
        response, resolution = outcomes(t, lines[t.id], policy)
        values.append({"tid": t.id, "rb": response, "sb": resolution, "fp": mark})
    return values


def _store(session: Session, tickets: Sequence[ClockedTicket], policy: SlaSettings) -> list[dict[str, Any]]:
    """Write the outcomes of these tickets (rows or entities) in one statement; the values written."""
    if not tickets:
        return []
    values = _values(tickets, _timelines(session, tickets), policy)
    table = Ticket.__table__
    # updated_at is set to itself: keeping the outcomes is not a change of the ticket (no onupdate).
    statement = (
        table.update()  # type: ignore[attr-defined]
        .where(table.c.id == bindparam("tid"))
        .values(
            response_breach_at=bindparam("rb"), resolution_breach_at=bindparam("sb"), sla_policy=bindparam("fp"),
            updated_at=table.c.updated_at,
        )
    )
    session.connection().execute(statement, values)
    return values


def _moved(ticket: Ticket) -> bool:
    attrs = inspect(ticket).attrs
    return any(attrs[name].history.has_changes() for name in _MOVES)


@event.listens_for(Session, "before_flush")
def _settle_new(session: Session, _context: Any, _instances: Any) -> None:
    """A ticket about to be inserted gets its outcomes in its INSERT: the hot path of the mail, one new ticket.

    No audit entry can name it yet (that needs its number): its timeline is its status alone.
    """
    fresh = [o for o in session.new if isinstance(o, Ticket)]
    if not fresh:
        return
    lines: dict[int, Timeline] = {}
    for n, t in enumerate(fresh):
        # The column defaults, now rather than at the insert, so that the clocks count from the same instant.
        t.created_at = t.created_at or utcnow()
        t.status = t.status or TicketStatus.NEW
        lines[n] = [(aware(t.created_at), TicketStatus.NEW)]
        if t.status is not TicketStatus.NEW:
            lines[n].append((aware(t.updated_at or t.created_at), t.status))
    policy = policy_of(session)
    for n, t in enumerate(fresh):
        t.response_breach_at, t.resolution_breach_at = outcomes(t, lines[n], policy)
        t.sla_policy = fingerprint(policy)


@event.listens_for(Session, "after_flush")
def _settle(session: Session, _context: Any) -> None:
    """Keep the outcomes of the tickets this flush changed, in the same transaction."""
    changed = [o for o in session.dirty if isinstance(o, Ticket) and _moved(o)]
    if not changed:
        return
    written = {v["tid"]: v for v in _store(session, changed, policy_of(session))}
    for ticket in changed:  # the entity shows what the row holds, without another change to flush
        row = written[ticket.id]
        set_committed_value(ticket, "response_breach_at", row["rb"])
        set_committed_value(ticket, "resolution_breach_at", row["sb"])
        set_committed_value(ticket, "sla_policy", row["fp"])


# What the clocks read of a ticket (core.sla.ClockedTicket): rows of these keep 100,000 tickets cheap.
CLOCK_COLUMNS = (
    Ticket.id, Ticket.priority, Ticket.status, Ticket.created_at, Ticket.updated_at, Ticket.first_response_at,
    Ticket.resolved_at,
)


def stale(policy: SlaSettings) -> Any:
    """Tickets whose outcomes were not worked out under ``policy`` (or not at all)."""
    return or_(Ticket.sla_policy.is_(None), Ticket.sla_policy != fingerprint(policy))


def refresh(session: Session, policy: SlaSettings) -> int:
    """Work out again the outcomes of every ticket kept under another policy (or none); how many."""
    done = 0
    while True:
        rows = session.execute(select(*CLOCK_COLUMNS).where(stale(policy)).order_by(Ticket.id).limit(BATCH)).all()
        done += len(_store(session, rows, policy))
        if len(rows) < BATCH:
            return done
