"""SLA outcomes kept on the tickets say what the clocks say, at any later moment, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select, update

from helpdesk.core import reports, slastate, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Role, SlaMetric, Ticket, TicketKind, TicketStatus, utcnow
from helpdesk.core.settings import BusinessHours, SlaSettings, SlaTarget
from helpdesk.core.sla import policy_clocks

# Short targets, so that the spread of ages below falls on both sides of them.
SHORT = {"P1": SlaTarget(15, 60), "P2": SlaTarget(30, 4 * 60), "P3": SlaTarget(60, 9 * 60), "P4": SlaTarget(4 * 60, 30 * 60)}
OFFICE = BusinessHours(timezone="Europe/Berlin", start=time(9), end=time(17), holidays=frozenset({date(2026, 12, 1)}))


def _spread(session, now: datetime) -> None:
    """Tickets answered, resolved, waiting on the user, reopened and untouched, of every age around the targets."""
    user = tickets.contact_for(session, "ruth@example.org")
    agent = tickets.contact_for(session, "paul@example.org")
    agent.role = Role.AGENT
    for n, hours in enumerate((0.1, 0.3, 0.7, 1.5, 3, 5, 8.5, 13, 26, 50, 75, 130, 200)):
        for way in ("untouched", "answered", "resolved", "pending", "reopened", "closed-late"):
            priority = ("P1", "P2", "P3", "P4")[n % 4]
            t = tickets.open_ticket(session, requester=user, subject=f"{way} {hours}h", kind=TicketKind.INCIDENT,
                                    priority=priority)
            t.created_at = now - timedelta(hours=hours, minutes=7 * n)
            session.flush()
            if way == "answered":
                t.first_response_at = t.created_at + timedelta(minutes=20 * n)
            elif way == "resolved":
                tickets.change(session, t, agent.email, status=TicketStatus.RESOLVED)
            elif way == "pending":
                tickets.change(session, t, agent.email, status=TicketStatus.PENDING)
            elif way == "reopened":
                tickets.change(session, t, agent.email, status=TicketStatus.RESOLVED)
                tickets.change(session, t, user.email, status=TicketStatus.OPEN)
                tickets.change(session, t, agent.email, priority="P1")
            elif way == "closed-late":
                t.first_response_at = t.created_at + timedelta(hours=hours / 2)
                tickets.change(session, t, agent.email, status=TicketStatus.CLOSED)
        session.flush()


def _stored_states(session, when: datetime) -> dict[tuple[int, SlaMetric], str]:
    states = {}
    for t in session.scalars(select(Ticket)):
        for metric, breach_at, stopped in (
            (SlaMetric.RESPONSE, t.response_breach_at, t.first_response_at or t.resolved_at),
            (SlaMetric.RESOLUTION, t.resolution_breach_at, t.resolved_at),
        ):
            breached = breach_at is not None and slastate.aware(breach_at) < when
            states[(t.id, metric)] = "breached" if breached else "met" if stopped else "running"
    return states


def _clock_states(session, policy: SlaSettings, when: datetime) -> dict[tuple[int, SlaMetric], str]:
    found = policy_clocks(session, policy, list(session.scalars(select(Ticket))), when)
    return {
        (ticket_id, c.metric): "breached" if c.breached else "met" if c.stopped_at else "running"
        for ticket_id, clocks in found.items()
        for c in clocks
    }


def _check_at_later_moments(factory, policy: SlaSettings, now: datetime) -> None:
    with transaction(factory) as session:
        for later in (timedelta(seconds=1), timedelta(hours=2), timedelta(hours=17), timedelta(days=3)):
            stored, clocks = _stored_states(session, now + later), _clock_states(session, policy, now + later)
            assert stored == clocks, later
        assert {"breached", "met", "running"} <= set(stored.values())
        assert not session.scalar(select(Ticket.id).where(slastate.stale(policy)))


@pytest.mark.parametrize("hours", [None, OFFICE], ids=["around-the-clock", "business-hours"])
def test_stored_outcomes_are_what_the_clocks_say_at_any_later_moment(session_factory, hours):
    policy = SlaSettings(targets=dict(SHORT), business_hours=hours)
    slastate.use_policy(session_factory, policy)
    now = utcnow()
    with transaction(session_factory) as session:
        _spread(session, now)
    _check_at_later_moments(session_factory, policy, now)


def test_report_figures_from_stored_outcomes_equal_the_clocks_and_refresh_follows_a_new_policy(session_factory):
    now = utcnow()
    with transaction(session_factory) as session:
        _spread(session, now)
    later = now + timedelta(hours=3)
    policy = SlaSettings(targets=dict(SHORT), business_hours=OFFICE)
    with transaction(session_factory) as session:
        stored = reports.report(session, later)["sla"]  # kept under the default policy: counted in SQL
        other = reports.report(session, later, sla=policy)["sla"]  # another policy: the clocks run
        session.execute(update(Ticket).values(sla_policy=None))  # as a migrated database starts
        assert reports.report(session, later)["sla"] == stored
        assert slastate.refresh(session, policy) == 6 * 13
        assert reports.report(session, later, sla=policy)["sla"] == other
        assert slastate.refresh(session, policy) == 0
        assert session.scalar(select(Ticket.id).where(slastate.stale(policy))) is None
    assert stored["resolution"]["breached"] and stored["resolution"]["met"] and stored["resolution"]["running"]
    assert stored != other


def test_refresh_keeps_the_tickets_last_update(session_factory):
    with transaction(session_factory) as session:
        user = tickets.contact_for(session, "ruth@example.org")
        t = tickets.open_ticket(session, requester=user, subject="x", kind=TicketKind.INCIDENT)
        t.updated_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        session.flush()
        slastate.refresh(session, SlaSettings(targets=dict(SHORT)))
        updated = session.scalar(select(Ticket.updated_at).where(Ticket.id == t.id).execution_options(populate_existing=True))
    assert slastate.aware(updated) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_new_ticket_is_inserted_with_its_outcomes(session_factory):
    policy = SlaSettings(targets=dict(SHORT))
    slastate.use_policy(session_factory, policy)
    with transaction(session_factory) as session:
        user = tickets.contact_for(session, "ruth@example.org")
        number = tickets.open_ticket(session, requester=user, subject="new", kind=TicketKind.INCIDENT, priority="P2").id
    with transaction(session_factory) as session:
        t = session.get(Ticket, number)
        assert t.sla_policy == slastate.fingerprint(policy)
        assert slastate.aware(t.response_breach_at) == slastate.aware(t.created_at) + timedelta(minutes=30)
        assert slastate.aware(t.resolution_breach_at) == slastate.aware(t.created_at) + timedelta(hours=4)
