"""SLA clocks: targets per priority for first response and resolution.

A clock counts (business) time from the ticket's creation to its first response or resolution,
except while the ticket waits on the user (PENDING) or sits resolved before a reopen. The status
timeline comes from the audit trail, so no extra bookkeeping has to be kept in step with it.
The check warns at the warning ratio and marks breaches once per ticket, metric and level.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from helpdesk.core import audit
from helpdesk.core.conversation import agent_addresses
from helpdesk.core.locks import serialise
from helpdesk.core.models import (
    AuditEntry,
    SlaLevel,
    SlaMark,
    SlaMetric,
    Ticket,
    TicketStatus,
    aware,
)
from helpdesk.core.notify import enqueue
from helpdesk.core.settings import BusinessHours, Settings, SlaSettings, SlaTarget

# Time in these statuses does not count: waiting on the user, or resolved before a reopen.
PAUSED = frozenset({TicketStatus.PENDING, TicketStatus.RESOLVED, TicketStatus.CLOSED})
OPEN = (
    TicketStatus.NEW,
    TicketStatus.OPEN,
    TicketStatus.PENDING,
    TicketStatus.AWAITING_APPROVAL,
    TicketStatus.IN_PROGRESS,
)


# --- business time ----------------------------------------------------------------------


def _working_windows(start: datetime, end: datetime, hours: BusinessHours) -> list[tuple[datetime, datetime]]:
    tz = ZoneInfo(hours.timezone)
    windows = []
    day: date = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    while day <= last:
        if day.weekday() in hours.weekdays and day not in hours.holidays:
            # In UTC: arithmetic between two datetimes of one zone is wall-clock time, wrong by
            # an hour across a daylight-saving change.
            opens, closes = datetime.combine(day, hours.start, tz), datetime.combine(day, hours.end, tz)
            windows.append((opens.astimezone(UTC), closes.astimezone(UTC)))
        day += timedelta(days=1)
    return windows


def business_time(start: datetime, end: datetime, hours: BusinessHours | None) -> timedelta:
    """How much of [start, end) counts: all of it, or only the working hours."""
    start, end = aware(start).astimezone(UTC), aware(end).astimezone(UTC)
    if end <= start:
        return timedelta(0)
    if hours is None:
        return end - start
    total = timedelta(0)
    for opens, closes in _working_windows(start, end, hours):
        lo, hi = max(start, opens), min(end, closes)
        if hi > lo:
            total += hi - lo
    return total


def add_business_time(start: datetime, amount: timedelta, hours: BusinessHours | None) -> datetime:
    """The instant at which ``amount`` of counted time has passed since ``start``."""
    start = aware(start).astimezone(UTC)
    if hours is None:
        return start + amount
    left = amount
    horizon = start + timedelta(days=7)
    while True:
        for opens, closes in _working_windows(start, horizon, hours):
            lo = max(start, opens)
            if closes <= lo:
                continue
            if closes - lo >= left:
                return lo + left
            left -= closes - lo
            start = closes
        start = max(start, horizon)
        horizon = start + timedelta(days=7)
        if not hours.weekdays:
            raise ValueError("business hours without any working day")


# --- clocks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """One SLA clock of one ticket, as of a moment."""

    metric: SlaMetric
    target: timedelta
    elapsed: timedelta
    stopped_at: datetime | None  # first response / resolution; None while running
    paused: bool

    @property
    def ratio(self) -> float:
        return self.elapsed / self.target if self.target else 0.0

    @property
    def breached(self) -> bool:
        return self.elapsed > self.target

    @property
    def met(self) -> bool | None:
        """True/False once stopped; None while the clock runs."""
        return None if self.stopped_at is None else not self.breached


@dataclass(frozen=True)
class SlaFinding:
    ticket_id: int
    metric: SlaMetric
    level: SlaLevel
    elapsed: timedelta
    target: timedelta
    notified: tuple[str, ...]


Timeline = list[tuple[datetime, TicketStatus]]


class ClockedTicket(Protocol):
    """What the clocks read of a ticket: a Ticket, or a row of just these columns (reports over many)."""

    @property
    def id(self) -> int: ...
    @property
    def priority(self) -> str: ...
    @property
    def status(self) -> TicketStatus: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def first_response_at(self) -> datetime | None: ...
    @property
    def resolved_at(self) -> datetime | None: ...


def target_for(policy: SlaSettings, priority: str) -> SlaTarget:
    return policy.targets.get(priority) or policy.targets.get("P4") or SlaTarget(8 * 60, 72 * 60)


# Built once: read at every status change (a new service or access request's first step).
_TRAIL = (
    select(AuditEntry.object_id, AuditEntry.at, AuditEntry.after)
    .where(AuditEntry.object_type == "ticket", AuditEntry.object_id.in_(bindparam("ids", expanding=True)))
    .order_by(AuditEntry.id)
)


def _timelines(session: Session, tickets: Sequence[ClockedTicket]) -> dict[int, Timeline]:
    """Each ticket's status changes, oldest first, read from the audit trail."""
    found: dict[int, Timeline] = defaultdict(list)
    ids = [t.id for t in tickets]
    for start in range(0, len(ids), 500):
        # Three columns, not entries: a report reads the trail of every ticket.
        entries = session.execute(_TRAIL, {"ids": ids[start : start + 500]})
        for object_id, at, after in entries:
            status = (after or {}).get("status")
            if status and object_id is not None:
                found[object_id].append((aware(at), TicketStatus(status)))
    for ticket in tickets:
        line = found[ticket.id]
        if not line:
            line.append((aware(ticket.created_at), TicketStatus.NEW))
        if line[-1][1] is not ticket.status:  # changed without an audit entry: count from the last update
            line.append((aware(ticket.updated_at or ticket.created_at), ticket.status))
    return found


def _counted(ticket: ClockedTicket, line: Timeline, end: datetime, hours: BusinessHours | None) -> timedelta:
    start = aware(ticket.created_at)
    total = timedelta(0)
    for i, (at, status) in enumerate(line):
        seg_end = line[i + 1][0] if i + 1 < len(line) else end
        if status in PAUSED:
            continue
        # The ticket.open entry is written a moment after created_at: the clock starts at creation.
        seg_start = start if i == 0 else max(at, start)
        total += business_time(seg_start, min(seg_end, end), hours)
    return total


def _clocks(ticket: ClockedTicket, line: Timeline, policy: SlaSettings, now: datetime) -> list[Clock]:
    target = target_for(policy, ticket.priority)
    paused = ticket.status in PAUSED
    clocks = []
    # Resolving a ticket answers it too, even without a reply first.
    responded = min((aware(t) for t in (ticket.first_response_at, ticket.resolved_at) if t), default=None)
    for metric, minutes, stopped in (
        (SlaMetric.RESPONSE, target.response_minutes, responded),
        (SlaMetric.RESOLUTION, target.resolution_minutes, ticket.resolved_at),
    ):
        end = aware(stopped) if stopped else now
        clocks.append(
            Clock(
                metric=metric,
                target=timedelta(minutes=minutes),
                elapsed=_counted(ticket, line, end, policy.business_hours),
                stopped_at=aware(stopped) if stopped else None,
                paused=paused and stopped is None,
            )
        )
    return clocks


def clocks(session: Session, settings: Settings, ticket: Ticket, now: datetime) -> list[Clock]:
    """The response and resolution clocks of one ticket."""
    return _clocks(ticket, _timelines(session, [ticket])[ticket.id], settings.sla, aware(now))


def clocks_for(session: Session, settings: Settings, tickets: list[Ticket], now: datetime) -> dict[int, list[Clock]]:
    return policy_clocks(session, settings.sla, tickets, now)


def policy_clocks(
    session: Session, policy: SlaSettings, tickets: Sequence[ClockedTicket], now: datetime
) -> dict[int, list[Clock]]:
    """Clocks of many tickets at once under the given targets."""
    lines = _timelines(session, tickets)
    return {t.id: _clocks(t, lines[t.id], policy, aware(now)) for t in tickets}


def start(settings: Settings, ticket: Ticket) -> None:
    """Give a new ticket its resolution due time (kept if something already scheduled it)."""
    if ticket.due_at is None:
        target = target_for(settings.sla, ticket.priority)
        ticket.due_at = add_business_time(
            ticket.created_at, timedelta(minutes=target.resolution_minutes), settings.sla.business_hours
        )


# --- the check --------------------------------------------------------------------------


def _escalation_recipients(session: Session, settings: Settings, ticket: Ticket, level: SlaLevel) -> list[str]:
    if ticket.assignee is not None:
        first = [ticket.assignee.email]
    elif ticket.group and ticket.group in settings.sla.group_addresses:
        first = [settings.sla.group_addresses[ticket.group]]
    else:
        # Every agent: the users with the agent role (`helpdesk user add`) and configured addresses.
        first = agent_addresses(session, settings)
    if level is SlaLevel.BREACH and settings.sla.manager:
        first.append(settings.sla.manager)
    return first


def _mark(session: Session, ticket: Ticket, clock: Clock, level: SlaLevel, now: datetime) -> None:
    session.add(
        SlaMark(
            ticket_id=ticket.id,
            metric=clock.metric,
            level=level,
            at=now,
            elapsed_seconds=int(clock.elapsed.total_seconds()),
            target_seconds=int(clock.target.total_seconds()),
        )
    )
    session.flush()


def _minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def check(session: Session, settings: Settings, now: datetime) -> list[SlaFinding]:
    """Warn, mark breaches and escalate for every open ticket; each threshold is acted on once."""
    now = aware(now)
    # Two schedulers checking at once would both see a threshold as new: take turns.
    serialise(session)
    tickets = list(
        session.scalars(select(Ticket).where(Ticket.status.in_(OPEN)).options(joinedload(Ticket.assignee)))
    )
    if not tickets:
        return []
    marked = {
        (m.ticket_id, m.metric, m.level)
        for m in session.scalars(select(SlaMark).where(SlaMark.ticket_id.in_([t.id for t in tickets])))
    }
    findings = []
    every_clock = clocks_for(session, settings, tickets, now)
    for ticket in tickets:
        for clock in every_clock[ticket.id]:
            if clock.stopped_at is not None:
                continue
            if clock.breached:
                level = SlaLevel.BREACH
            elif clock.ratio >= settings.sla.warn_ratio:
                level = SlaLevel.WARNING
            else:
                continue
            if (ticket.id, clock.metric, level) in marked:
                continue
            _mark(session, ticket, clock, level, now)
            findings.append(_escalate(session, settings, ticket, clock, level))
    return findings


def _escalate(session: Session, settings: Settings, ticket: Ticket, clock: Clock, level: SlaLevel) -> SlaFinding:
    to = _escalation_recipients(session, settings, ticket, level)
    queued = enqueue(
        session,
        settings,
        template="sla_warning",
        ticket=ticket,
        to=to,
        context={
            "level": level.value,
            "metric": clock.metric.value,
            "elapsed_minutes": _minutes(clock.elapsed),
            "target_minutes": _minutes(clock.target),
            "percent": int(clock.ratio * 100),
        },
        purpose=f"sla_{level.value}",
        record=False,
    )
    notified = tuple(r for row in queued.rows for r in row.recipients)
    audit.record(
        session,
        actor=audit.SYSTEM,
        action=f"sla.{level.value}",
        object_type="ticket",
        object_id=ticket.id,
        after={
            "metric": clock.metric.value,
            "elapsed_minutes": _minutes(clock.elapsed),
            "target_minutes": _minutes(clock.target),
            "notified": list(notified),
        },
        reason=f"{clock.metric.value} clock at {int(clock.ratio * 100)}% of its target",
    )
    return SlaFinding(ticket.id, clock.metric, level, clock.elapsed, clock.target, notified)
