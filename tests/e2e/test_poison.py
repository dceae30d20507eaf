"""Poison mail: a mail whose processing kills the poller, again and again, ends up quarantined with a reason;
the mails around it become tickets. No mock: a mail big enough that reading it takes the real ``helpdesk poll``
a second or more, which the test kills with SIGKILL while it is on that mail (a crash in the parser looks the
same to the next run). Attachment files are made with O_EXCL under unpredictable names, so nothing can be
planted where they are written; the size is what holds the poller on the mail."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from email import message_from_bytes
from email.policy import SMTP

from sqlalchemy import select

from helpdesk.core import db
from helpdesk.core.intake import MAX_ATTEMPTS
from helpdesk.core.models import Inbound, InboundStatus
from tests.e2e.helpers import HELPDESK, helpdesk_env, run, run_json
from tests.e2e.mails import make_mail, token
from tests.servers.imap import DovecotServer

POISON = 2  # make_mail(2) carries attachments


def _poison_mail() -> bytes:
    """Mail POISON with 40 MB of attachment: parsing it alone takes about a second on this kind of machine."""
    mail = message_from_bytes(make_mail(POISON), policy=SMTP)
    mail.add_attachment(os.urandom(40_000_000), maintype="application", subtype="octet-stream", filename="big.bin")
    return mail.as_bytes()


def _poison_row(engine) -> Inbound | None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(Inbound).where(Inbound.message_id == f"mail-{POISON}@client.example.com")).first()


def test_mail_that_kills_the_poller_each_time_is_quarantined_and_the_others_are_tickets(
    dovecot: DovecotServer, database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = helpdesk_env(data, database_url, dovecot, HELPDESK_LEASE_SECONDS="1")
    run(env, "init")
    dovecot.append_many([make_mail(1), _poison_mail(), make_mail(3), make_mail(4)])
    engine = db.make_engine(database_url)
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            proc = subprocess.Popen([HELPDESK, "poll", "--once"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while (row := _poison_row(engine)) is None or row.attempts < attempt:
                assert proc.poll() is None, f"poller finished before the poison mail's run {attempt}"
                assert time.monotonic() < deadline, "the poison mail's run never started"
                time.sleep(0.02)
            assert proc.poll() is None  # still on the poison mail
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # The next run gives up on it and goes on with the rest.
        proc = subprocess.Popen([HELPDESK, "poll", "--once"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        row = _poison_row(engine)
        assert row is not None and row.status is InboundStatus.QUARANTINED
        assert row.reason.startswith(f"gave up after {MAX_ATTEMPTS} runs")
    finally:
        engine.dispose()
    subjects = [t["subject"] for t in run_json(env, "tickets", "--json")]
    assert sorted(next(n for n in (1, 3, 4) if token(n) in s) for s in subjects) == [1, 3, 4]
    [item] = run_json(env, "quarantine", "list", "--json")
    assert item["message_id"] == f"mail-{POISON}@client.example.com" and "did not finish" in item["reason"]
