"""core.reports counts in the database: bucket edges and time zones come out as the Python rules say."""

from __future__ import annotations

from datetime import timedelta, timezone

from helpdesk.core import reports, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import TicketKind, TicketStatus, utcnow


def test_backlog_buckets_at_their_edges_with_a_non_utc_now(session_factory):
    now = utcnow().replace(microsecond=0)
    ages = {
        "exactly 1 day": timedelta(days=1),  # not younger than a day: next bucket
        "just under 3 days": timedelta(days=3) - timedelta(seconds=1),
        "exactly 30 days": timedelta(days=30),
        "in the future": -timedelta(minutes=5),  # a clock skew must not lose it
        "closed": timedelta(hours=2),
    }
    with transaction(session_factory) as session:
        user = tickets.contact_for(session, "ida@example.org")
        for subject, age in ages.items():
            t = tickets.open_ticket(session, requester=user, subject=subject, kind=TicketKind.INCIDENT,
                                    category=subject.split()[0], priority="P3")
            t.created_at = now - age
            if subject == "closed":
                t.status = TicketStatus.CLOSED
        session.flush()
        figures = reports.report(session, now.astimezone(timezone(timedelta(hours=2))))
    assert figures["backlog"] == {"open": 4, "by_age": {"<1d": 1, "1-3d": 2, "3-7d": 0, "7-30d": 0, ">30d": 1}}
    assert list(figures["by_category"]) == ["exactly", "just", "in", "closed"]  # first appearance, by ticket number
    assert figures["by_status"] == {"new": 4, "closed": 1} and figures["tickets"] == 5
