"""core.reports counts in the database: bucket edges and time zones come out as the Python rules say."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta, timezone

from helpdesk.core import reports, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Ticket, TicketKind, TicketStatus, utcnow


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


def test_weekly_counts_put_tickets_at_week_edges_where_the_python_rule_does(session_factory):
    start = utcnow().replace(microsecond=0) - timedelta(weeks=3)
    offsets = [timedelta(0), timedelta(weeks=1) - timedelta(seconds=1), timedelta(weeks=1), timedelta(days=15),
               timedelta(weeks=3, hours=5), timedelta(weeks=9), -timedelta(seconds=1)]
    with transaction(session_factory) as session:
        user = tickets.contact_for(session, "ida@example.org")
        for n, offset in enumerate(offsets):
            t = tickets.open_ticket(session, requester=user, subject="x", priority=("P2", "P3")[n % 2],
                                    kind=TicketKind.INCIDENT)
            t.created_at = start + offset
        session.flush()
        counts = reports.weekly_counts(session, Ticket.priority, start.astimezone(timezone(timedelta(hours=-5))), 4)
    expected = Counter(
        (min(offset.days // 7, 4), ("P2", "P3")[n % 2]) for n, offset in enumerate(offsets) if offset >= timedelta(0)
    )
    assert counts == expected
