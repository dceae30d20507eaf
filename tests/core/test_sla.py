"""SLA clocks: warn at 80%, breach, escalate once, pause while waiting on the user."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from helpdesk.core import audit, sla, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Outbox, Role, SlaLevel, SlaMetric, TicketKind, TicketStatus, utcnow
from helpdesk.core.settings import BusinessHours, Settings, SlaSettings

UTC = timezone.utc
SETTINGS = Settings(
    data_dir=Path("."),
    database_url="sqlite://",
    address="help@example.org",
    sla=SlaSettings(manager="it-manager@example.org", group_addresses={"network": "netops@example.org"}),
    agent_addresses=("agents@example.org",),
)


def _ticket(session, *, priority: str, age: timedelta, assignee: str | None = None, group: str | None = None):
    user = tickets.contact_for(session, "carol@example.org")
    ticket = tickets.open_ticket(
        session, requester=user, subject="VPN drops every ten minutes", kind=TicketKind.INCIDENT,
        priority=priority, group=group,
    )
    ticket.created_at = utcnow() - age
    if assignee:
        agent = tickets.contact_for(session, assignee)
        agent.role = Role.AGENT
        ticket.assignee = agent
    session.flush()
    return ticket


def _outbox(session, purpose: str) -> list[list[str]]:
    return [r.recipients for r in session.scalars(select(Outbox).where(Outbox.purpose == purpose).order_by(Outbox.id))]


def test_warns_at_80_percent_then_breaches_and_escalates_to_manager_once(session_factory):
    with transaction(session_factory) as session:
        number = _ticket(session, priority="P1", age=timedelta(minutes=13), assignee="dave@example.org").id

    with transaction(session_factory) as session:
        findings = sla.check(session, SETTINGS, utcnow())
    assert [(f.ticket_id, f.metric, f.level, f.notified) for f in findings] == [
        (number, SlaMetric.RESPONSE, SlaLevel.WARNING, ("dave@example.org",))
    ]
    with transaction(session_factory) as session:  # same threshold: nothing new
        assert sla.check(session, SETTINGS, utcnow() + timedelta(minutes=1)) == []

    with transaction(session_factory) as session:
        findings = sla.check(session, SETTINGS, utcnow() + timedelta(minutes=3))
        assert [(f.metric, f.level, f.notified) for f in findings] == [
            (SlaMetric.RESPONSE, SlaLevel.BREACH, ("dave@example.org", "it-manager@example.org"))
        ]
        assert _outbox(session, "sla_warning") == [["dave@example.org"]]
        assert _outbox(session, "sla_breach") == [["dave@example.org"], ["it-manager@example.org"]]
        raw = session.scalars(select(Outbox.raw).where(Outbox.purpose == "sla_breach")).first()
        assert b"SLA BREACH" in raw and f"[#{number}]".encode() in raw
        actions = [e.action for e in audit.history(session, "ticket", number)]
        assert actions == ["ticket.open", "sla.warning", "sla.breach"]
        assert audit.verify(session).ok
    with transaction(session_factory) as session:
        assert sla.check(session, SETTINGS, utcnow() + timedelta(minutes=10)) == []


def test_unassigned_ticket_escalates_to_its_group(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        _ticket(session, priority="P2", age=timedelta(minutes=50), group="network")
        _ticket(session, priority="P2", age=timedelta(minutes=50))
        findings = sla.check(session, SETTINGS, utcnow())
    assert sorted(f.notified for f in findings) == [("agents@example.org",), ("netops@example.org",)]


def test_clock_stands_still_while_ticket_waits_on_the_user(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ticket = _ticket(session, priority="P3", age=timedelta(minutes=100), assignee="dave@example.org")
        tickets.change(session, ticket, "dave@example.org", status=TicketStatus.PENDING, reason="asked for logs")
        later = utcnow() + timedelta(hours=10)
        response, resolution = sla.clocks(session, SETTINGS, ticket, later)
        assert response.paused and timedelta(minutes=99) < response.elapsed < timedelta(minutes=101)
        assert sla.check(session, SETTINGS, later) == []

        tickets.change(session, ticket, "carol@example.org", status=TicketStatus.OPEN, reason="user answered")
        findings = sla.check(session, SETTINGS, utcnow() + timedelta(minutes=100))
        assert [(f.metric, f.level) for f in findings] == [(SlaMetric.RESPONSE, SlaLevel.WARNING)]


def test_first_response_stops_the_response_clock(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ticket = _ticket(session, priority="P1", age=timedelta(minutes=5), assignee="dave@example.org")
        tickets.reply(session, SETTINGS, ticket, ticket.assignee, "Looking into it now.")
        findings = sla.check(session, SETTINGS, utcnow() + timedelta(minutes=30))
        assert [(f.metric, f.level) for f in findings] == []
        response, _ = sla.clocks(session, SETTINGS, ticket, utcnow() + timedelta(hours=1))
        assert response.met is True


def test_resolved_ticket_is_not_checked_and_meets_its_target(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ticket = _ticket(session, priority="P1", age=timedelta(hours=1))
        tickets.change(session, ticket, "dave@example.org", status=TicketStatus.RESOLVED)
        assert sla.check(session, SETTINGS, utcnow() + timedelta(hours=9)) == []
        response, resolution = sla.clocks(session, SETTINGS, ticket, utcnow() + timedelta(hours=9))
        assert response.met is False and resolution.met is True


HOURS = BusinessHours(
    timezone="Europe/Berlin", start=time(8), end=time(18), holidays=frozenset({date(2026, 12, 25)})
)
BERLIN = HOURS.timezone


def _berlin(*args: int) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*args, tzinfo=ZoneInfo(BERLIN))


def test_business_hours_skip_nights_weekends_and_holidays():
    friday_17 = _berlin(2026, 11, 27, 17)
    monday_9 = _berlin(2026, 11, 30, 9)
    assert sla.business_time(friday_17, monday_9, HOURS) == timedelta(hours=2)
    assert sla.add_business_time(friday_17, timedelta(hours=2), HOURS) == monday_9
    assert sla.business_time(friday_17, monday_9, None) == timedelta(hours=64)
    # Thursday 24 Dec 17:00 + 3h: Friday is a holiday, the weekend follows: Monday 10:00.
    assert sla.add_business_time(_berlin(2026, 12, 24, 17), timedelta(hours=3), HOURS) == _berlin(2026, 12, 28, 10)
    assert sla.add_business_time(_berlin(2026, 11, 28, 12), timedelta(hours=25), HOURS) == _berlin(2026, 12, 2, 13)


def test_business_hours_across_a_daylight_saving_change_count_real_time():
    mornings = BusinessHours(timezone=BERLIN, weekdays=frozenset(range(7)), start=time(0), end=time(12))
    # Berlin moves its clocks forward at 02:00 on 29 March 2026 and back at 03:00 on 25 October.
    spring, autumn = _berlin(2026, 3, 29, 0), _berlin(2026, 10, 25, 0)
    assert sla.business_time(spring, _berlin(2026, 3, 29, 12), mornings) == timedelta(hours=11)
    assert sla.business_time(autumn, _berlin(2026, 10, 25, 12), mornings) == timedelta(hours=13)
    assert sla.add_business_time(spring, timedelta(hours=11), mornings) == _berlin(2026, 3, 29, 12)
    assert sla.add_business_time(autumn, timedelta(hours=13), mornings) == _berlin(2026, 10, 25, 12)
    assert sla.business_time(spring, _berlin(2026, 3, 30, 0), None) == timedelta(hours=23)


def test_new_ticket_gets_due_time_from_its_priority_in_business_hours(sqlite_session_factory):
    settings = replace(SETTINGS, sla=replace(SETTINGS.sla, business_hours=HOURS))
    with transaction(sqlite_session_factory) as session:
        ticket = _ticket(session, priority="P2", age=timedelta(0))
        ticket.created_at = _berlin(2026, 11, 27, 16).astimezone(UTC)
        sla.start(settings, ticket)
        assert ticket.due_at == _berlin(2026, 11, 30, 14)
