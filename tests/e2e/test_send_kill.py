"""Kill test for the sender: the real ``helpdesk send`` is killed with SIGKILL at random moments while it
drains an outbox to aiosmtpd, many times.

At the end every mail arrived at least once, and every copy of a mail carries the same Message-ID and
the same bytes, so that mail clients can drop the second copy. A copy arrives twice only when the kill
falls between the server's 250 and the sender's commit of "sent": at most the one mail on the wire per
kill. The test prints the duplicate rate. HELPDESK_KILL_SEED replays one run, HELPDESK_KILL_ROUNDS
kills more often.
"""

from __future__ import annotations

import asyncio
import email
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from helpdesk.core import db
from helpdesk.core.db import transaction
from helpdesk.core.models import Outbox, OutboxStatus
from tests.e2e.helpers import HELPDESK, helpdesk_env, run
from tests.servers import free_port
from tests.servers.postgres import PostgresCluster
from tests.servers.smtp import HOST, SmtpSink

MAILS = 1500
CLAIM_SECONDS = 2  # HELPDESK_LEASE_SECONDS: a killed sender's mail is taken over after this


def _queue(factory, count: int) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """``count`` mails in the outbox, as the notifications put them there: Message-ID -> raw bytes."""
    mails = {}
    with transaction(factory) as session:
        for n in range(count):
            message_id = f"kill-{n}@help.example.org"
            raw = (
                f"From: help@example.org\r\nTo: user{n}@example.com\r\nSubject: [#{n}] received\r\n"
                f"Message-ID: <{message_id}>\r\nAuto-Submitted: auto-replied\r\n\r\nWe have your mail {n}.\r\n"
            ).encode()
            session.add(Outbox(message_id=message_id, purpose="acknowledgement", mail_from="help@example.org",
                               recipients=[f"user{n}@example.com"], raw=raw, rcpt=f"user{n}@example.com"))
            mails[message_id] = raw
    return mails


def _unsent(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count(Outbox.id)).where(Outbox.status != OutboxStatus.SENT)) or 0)


def _until(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _drain(env: dict[str, str], engine, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """The killed senders' claims run out; one more sender sends the rest."""
    deadline = time.monotonic() + timeout
    while _unsent(engine):
        assert time.monotonic() < deadline, f"{_unsent(engine)} mail(s) not sent within {timeout} s"
        run(env, "send", "--once")
        time.sleep(0.5)


def test_sender_killed_at_random_moments_sends_every_mail_with_one_message_id(
    postgres_cluster: PostgresCluster, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    seed = int(os.environ.get("HELPDESK_KILL_SEED") or time.time())
    rounds = int(os.environ.get("HELPDESK_KILL_ROUNDS") or 30)
    rng = random.Random(seed)
    name = postgres_cluster.create_database()
    url = postgres_cluster.url(name)
    env = helpdesk_env(tmp_path / "data", url, smtp=smtp_sink, HELPDESK_LEASE_SECONDS=str(CLAIM_SECONDS))
    run(env, "init")
    engine = db.make_engine(url)
    kills = 0
    try:
        queued = _queue(db.make_sessionmaker(engine), MAILS)
        with (tmp_path / "send.log").open("ab") as out:
            for _ in range(rounds):
                if not _unsent(engine):
                    break
                before = len(smtp_sink.messages)
                proc = subprocess.Popen([HELPDESK, "send"], env=env, stdout=out, stderr=out)
                # Killed a random moment after it began to send: claiming, on the wire, recording.
                _until(lambda: len(smtp_sink.messages) > before or proc.poll() is not None, 30)
                time.sleep(rng.uniform(0.0, 0.2))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
        _drain(env, engine)
    finally:
        engine.dispose()
    copies = Counter(m.message["Message-ID"].strip("<>") for m in smtp_sink.messages)
    assert set(copies) == set(queued)  # every mail arrived, and no copy under a Message-ID of its own
    for mail in smtp_sink.messages:  # every copy is the queued mail, byte for byte
        assert mail.content.replace(b"\r\n", b"\n") == queued[mail.message["Message-ID"].strip("<>")].replace(b"\r\n", b"\n")
    duplicates = sum(n - 1 for n in copies.values())
    print(
        f"\nsend kill test: seed {seed}, {kills} kills, {MAILS} mails, {len(smtp_sink.messages)} received, "
        f"{duplicates} duplicate(s): {duplicates / max(kills, 1):.2f} per kill, {duplicates / MAILS:.2%} of mails"
    )
    # Only the mail between the server's 250 and the commit of "sent" can go twice: one per kill at most.
    assert duplicates <= kills
    # Measured here: 0.07-0.10 per kill (0.40-0.42 when "sent" was written only after the 250). The
    # bound leaves room for a loaded machine; the rate of before passes it about one run in three.
    assert duplicates <= kills // 3, f"{duplicates} duplicates in {kills} kills"


class _SlowSink:
    """Takes 20 ms over each mail (without blocking other sessions); keeps the Message-IDs it got."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(0.02)
        self.received.append(email.message_from_bytes(envelope.original_content or b"")["Message-ID"].strip("<>"))
        return "250 OK"


def test_a_stopped_sender_finishes_its_mail_and_gives_the_rest_back_at_once(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    sink = _SlowSink()
    controller = Controller(sink, hostname=HOST, port=free_port())
    controller.start()
    url = postgres_cluster.url(postgres_cluster.create_database())
    env = helpdesk_env(tmp_path / "data", url, HELPDESK_SMTP_HOST=HOST, HELPDESK_SMTP_PORT=str(controller.port),
                       HELPDESK_SMTP_TLS="none")
    run(env, "init")
    engine = db.make_engine(url)
    try:
        # 6 s of sending: more than the 5 s the stop may take, so it always comes mid-queue.
        queued = _queue(db.make_sessionmaker(engine), 300)
        with (tmp_path / "send.log").open("ab") as out:
            proc = subprocess.Popen([HELPDESK, "send"], env=env, stdout=out, stderr=out)
            assert _until(lambda: len(sink.received) >= 20, 30)
            proc.terminate()  # a supervisor's restart
            started = time.monotonic()
            assert proc.wait(30) == 0
        took = time.monotonic() - started
        assert took < 5, f"took {took:.1f} s to stop"
        assert len(sink.received) < len(queued)
        # The claims it gave back are due at once: the next sender needs no claim to run out.
        run(env, "send", "--once", timeout=120)
        assert _unsent(engine) == 0
    finally:
        engine.dispose()
        controller.stop()
    copies = Counter(sink.received)
    assert set(copies) == set(queued) and set(copies.values()) == {1}
