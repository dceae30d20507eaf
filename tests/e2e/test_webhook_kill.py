"""The real ``helpdesk send`` killed with SIGKILL while a webhook request is on the wire: the next sender
delivers the event again under the same delivery id (and the same bytes), so the receiver can drop
the copy; on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.core import db, webhooks
from helpdesk.core.db import transaction
from helpdesk.core.models import OutboxStatus, WebhookDelivery
from helpdesk.core.settings import Settings
from tests.core.desk import mail
from tests.e2e.helpers import HELPDESK, helpdesk_env, run, wait_for
from tests.servers.smtp import SmtpSink
from tests.servers.webhook import WebhookReceiver

CLAIM_SECONDS = 2  # HELPDESK_LEASE_SECONDS: a killed sender's delivery is taken over after this


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from WebhookReceiver.running()


def test_sender_killed_mid_delivery_delivers_again_under_the_same_id(
    database_url: str, smtp_sink: SmtpSink, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    env = helpdesk_env(tmp_path / "data", database_url, smtp=smtp_sink, HELPDESK_LEASE_SECONDS=str(CLAIM_SECONDS))
    run(env, "init")
    engine = db.make_engine(database_url)
    factory = db.make_sessionmaker(engine)
    try:
        settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key=env["HELPDESK_SECRET_KEY"])
        with transaction(factory) as session:
            _, secret = webhooks.create(session, settings, "admin@example.org", name="ops", url=receiver.url,
                                        events=["ticket.created"])  # fmt: skip
        run(env, "ingest", input=mail())
        receiver.hold.set()  # the receiver takes the request and does not answer: the sender waits
        with (tmp_path / "send.log").open("ab") as out:
            proc = subprocess.Popen([HELPDESK, "send"], env=env, stdout=out, stderr=out)
            try:
                receiver.wait_for(1)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        receiver.hold.clear()

        def row() -> WebhookDelivery:
            with factory() as session:
                found = session.scalars(select(WebhookDelivery)).one()
                session.expunge(found)
                return found

        assert row().status is OutboxStatus.SENDING  # not recorded as delivered: it goes again
        time.sleep(CLAIM_SECONDS + 0.5)
        wait_for(lambda: run(env, "send", "--once") and row().status is OutboxStatus.SENT, 30, "redelivery")
        delivered = row()
    finally:
        engine.dispose()
    first, again = receiver.wait_for(2)[:2]
    assert len(receiver.received) == 2
    assert first.delivery == again.delivery == delivered.delivery_id and first.body == again.body
    assert first.json["event"] == "ticket.created"
    for request in (first, again):
        assert request.headers["X-Helpdesk-Signature"] == webhooks.signature(
            secret, int(request.headers["X-Helpdesk-Timestamp"]), request.body
        )
