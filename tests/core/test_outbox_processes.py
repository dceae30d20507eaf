"""Several `helpdesk send` processes on one PostgreSQL database never send a mail twice."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from helpdesk.core import db, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Outbox, OutboxStatus, TicketKind
from helpdesk.core.notify import AutoSubmitted, enqueue
from helpdesk.core.settings import Settings
from tests.e2e.helpers import HELPDESK, helpdesk_env, run
from tests.servers.smtp import SmtpSink

MAILS = 240
WORKERS = 4


def test_four_senders_share_the_outbox_without_sending_twice(postgres_cluster, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    name = postgres_cluster.create_database()
    url = postgres_cluster.url(name)
    engine = db.make_engine(url)
    try:
        env = helpdesk_env(tmp_path / "data", url, smtp=smtp_sink)
        run(env, "init")
        factory = db.make_sessionmaker(engine)
        settings = Settings(data_dir=tmp_path, database_url=url, secret_key="test-secret")
        with transaction(factory) as session:
            requester = tickets.contact_for(session, "alice@example.com")
            ticket = tickets.open_ticket(session, requester=requester, subject="Announcement", kind=TicketKind.INCIDENT)
            queued = enqueue(session, settings, template="reply", ticket=ticket,
                             to=[f"user{n}@example.com" for n in range(MAILS)],
                             context={"text": "Maintenance tonight.", "author": requester},
                             auto_submitted=AutoSubmitted.NO)
            assert len(queued.rows) == MAILS
        procs = [subprocess.Popen([HELPDESK, "send", "--once"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(WORKERS)]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * WORKERS, outputs
        received = smtp_sink.wait_for(MAILS, timeout=30)
        ids = Counter(m.message["Message-ID"] for m in received)
        per_worker = [int(out.split()[1].rstrip(b",")) for out, _ in outputs]
        print(f"\n{WORKERS} senders, {MAILS} mails: sent per worker {per_worker}, duplicates "
              f"{sum(c - 1 for c in ids.values())}")
        assert len(received) == MAILS and len(ids) == MAILS and max(ids.values()) == 1
        assert sum(per_worker) == MAILS
        with factory() as session:
            statuses = Counter(session.scalars(select(Outbox.status)))
            assert statuses == {OutboxStatus.SENT: MAILS}
    finally:
        engine.dispose()
        postgres_cluster.drop_database(name)
