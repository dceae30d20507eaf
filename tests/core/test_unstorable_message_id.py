"""A Message-ID the database cannot hold (too long, or with a NUL) must not stall storing or processing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.intake import process_pending
from helpdesk.core.models import Inbound, InboundStatus
from tests.core.desk import make_desk, mail


def test_unstorable_message_ids_are_ticketed_and_do_not_stall_the_batch(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    raws = [
        mail(subject="Too long an id", message_id="<" + "x" * 1200 + "@client.example>"),
        mail(subject="NUL in the id").replace(b"Message-ID: <", b"Message-ID: <nul\x00"),
        mail(subject="An ordinary mail"),
    ]
    with transaction(session_factory) as session:
        stored = desk.intake.store_many(session, [(n + 1, raw) for n, raw in enumerate(raws)], source="box", uidvalidity=7)
    assert all(inbound is not None for inbound in stored)
    results = process_pending(session_factory, desk.intake)
    assert [r.status for r in results] == [InboundStatus.PROCESSED] * 3
    assert len(desk.tickets()) == 3
    with session_factory() as session:
        ids = list(session.scalars(select(Inbound.message_id).order_by(Inbound.id)))
    assert ids[:2] == [None, None] and ids[2]
