"""Reports: volumes, SLA compliance, mean times and backlog age from real tickets."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from helpdesk.core import events, reports, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Role, TicketKind, TicketStatus, utcnow
from helpdesk.core.settings import Settings

SETTINGS = Settings(data_dir=Path("."), database_url="sqlite://", address="help@example.org")


def test_report_counts_times_compliance_and_backlog(session_factory):
    now = utcnow()
    with transaction(session_factory) as session:
        user = tickets.contact_for(session, "lena@example.org")
        agent = tickets.contact_for(session, "max@example.org")
        agent.role = Role.AGENT

        def ticket(kind, category, priority, age):
            t = tickets.open_ticket(session, requester=user, subject=f"{category} thing", kind=kind,
                                    category=category, priority=priority)
            t.created_at = now - age
            return t

        # P3: response within 4h, resolution within 24h
        fast = ticket(TicketKind.INCIDENT, "network", "P3", timedelta(hours=3))
        fast.first_response_at = fast.created_at + timedelta(minutes=30)
        tickets.change(session, fast, agent.email, status=TicketStatus.RESOLVED)  # 3h after creation: met
        slow = ticket(TicketKind.INCIDENT, "network", "P3", timedelta(days=2))
        slow.first_response_at = slow.created_at + timedelta(minutes=90)  # still open, resolution breached
        ticket(TicketKind.SERVICE_REQUEST, "software", "P4", timedelta(days=10))
        ticket(TicketKind.ACCESS_REQUEST, "access", "P4", timedelta(hours=1))
        alert = events.Alert("nagios", "web01", "HTTP", "CRITICAL", events.Severity.EXCEPTION)
        events.handle_alert(session, SETTINGS, alert)
        session.flush()

        figures = reports.report(session, now + timedelta(seconds=5))
    json.dumps(figures)  # the CLI prints it as JSON
    assert figures["tickets"] == 5
    assert figures["by_kind"] == {"incident": 3, "service_request": 1, "access_request": 1}
    assert figures["by_category"] == {"network": 2, "software": 1, "access": 1, "monitoring": 1}
    assert figures["by_priority"] == {"P2": 1, "P3": 2, "P4": 2}
    assert figures["mean_minutes_to_first_response"] == 60.0
    assert 179 <= figures["mean_minutes_to_resolution"] <= 181
    # the 10-day-old P4 request is past its 72h target too
    assert figures["sla"]["resolution"] == {"met": 1, "breached": 2, "running": 2, "compliance": 0.3333}
    assert figures["sla"]["response"]["met"] == 2 and figures["sla"]["response"]["breached"] == 1
    assert figures["backlog"] == {"open": 4, "by_age": {"<1d": 2, "1-3d": 1, "3-7d": 0, "7-30d": 1, ">30d": 0}}
    assert figures["events"] == {"total": 1, "by_severity": {"exception": 1}}
    assert figures["access"] == {"pending": 0, "active_grants": 0, "expiring_soon": 0}


def test_empty_database_reports_zeros(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        figures = reports.report(session, utcnow())
    assert figures["tickets"] == 0 and figures["mean_minutes_to_resolution"] is None
    assert figures["sla"]["response"]["compliance"] is None
