"""The desk's figures come from the database: mail by status, processing latency from stored times,
the outbox, SLA breaches and failing mailbox logins. On SQLite and PostgreSQL (date arithmetic differs)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.mailauth import DbTokenStore
from helpdesk.core.metrics import LATENCY_BUCKETS, figures
from helpdesk.core.models import Inbound, Outbox, OutboxStatus, SlaLevel, SlaMark, SlaMetric
from tests.core.desk import mail, make_desk


def _figures(factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    with factory() as session:
        return figures(session)


def test_mail_counts_and_latency_follow_what_is_stored(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    empty = _figures(session_factory)
    assert empty.inbound_total == 0 and empty.latency.count == 0 and empty.outbox_depth == 0
    desk = make_desk(session_factory, tmp_path)
    first = desk.deliver(mail(subject="VPN is down"))
    second = desk.deliver(mail(sender="bob@example.com", subject="Printer jammed"))
    # Known processing times: 3 s and 2 minutes after arrival.
    with transaction(session_factory) as session:
        for result, seconds in ((first, 3), (second, 120)):
            row = session.get(Inbound, result.inbound_id)
            assert row is not None and row.processed_at is not None
            row.received_at = row.processed_at - timedelta(seconds=seconds)

    desk_now = _figures(session_factory)
    assert desk_now.inbound_total == 2 and desk_now.inbound["processed"] == 2 and desk_now.inbound["quarantined"] == 0
    assert desk_now.latency.count == 2
    assert abs(desk_now.latency.total_seconds - 123) < 0.01
    under = dict(desk_now.latency.buckets)
    for bound in LATENCY_BUCKETS:
        assert under[bound] == (bound >= 3) + (bound >= 120), bound
    with session_factory() as session:
        queued = len(session.scalars(select(Outbox.id).where(Outbox.status == OutboxStatus.PENDING)).all())
    assert queued > 0 and desk_now.outbox_depth == queued  # the acknowledgements


def test_outbox_failures_sla_breaches_and_failing_logins(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    desk = make_desk(session_factory, tmp_path)
    number = desk.deliver(mail()).ticket_id
    assert number is not None
    with transaction(session_factory) as session:
        session.execute(update(Outbox).values(status=OutboxStatus.FAILED, last_error="550 no such user"))
        session.add(SlaMark(ticket_id=number, metric=SlaMetric.RESPONSE, level=SlaLevel.BREACH,
                            elapsed_seconds=4000, target_seconds=3600))
        session.add(SlaMark(ticket_id=number, metric=SlaMetric.RESPONSE, level=SlaLevel.WARNING,
                            elapsed_seconds=3000, target_seconds=3600))
    store = DbTokenStore(session_factory, desk.settings)
    store.succeeded("it@example.org", None)
    store.failed("facilities@example.org", "invalid_grant: consent revoked")

    desk_now = _figures(session_factory)
    assert desk_now.outbox["failed"] >= 1 and desk_now.outbox_depth == desk_now.outbox["pending"]
    assert desk_now.sla_breaches == {"response": 1, "resolution": 0}
    assert desk_now.mail_logins == {"oauth2": 2} and desk_now.mail_logins_failing == {"oauth2": 1}
    store.succeeded("facilities@example.org", None)
    assert _figures(session_factory).mail_logins_failing == {"oauth2": 0}
