"""Poison mail: a mail whose processing kills the poller, again and again, ends up quarantined with a reason;
the mails around it become tickets. A real hang, not a mock: a FIFO where the mail's attachment is written
(a stuck network filesystem looks the same), and the real ``helpdesk poll`` killed with SIGKILL while on it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from core import db
from core.intake import MAX_ATTEMPTS
from core.models import Inbound, InboundStatus
from mailgateway.parse import parse_message
from tests.e2e.helpers import HELPDESK, helpdesk_env, run, run_json
from tests.e2e.mails import make_mail, token
from tests.servers.imap import DovecotServer

POISON = 2  # make_mail(2) carries attachments


def _hang_on_attachments(data: Path, pid: int) -> None:
    """A FIFO where this process writes the poison mail's attachments: opening it blocks for good."""
    for part in parse_message(make_mail(POISON)).attachments:
        digest = hashlib.sha256(part.data).hexdigest()
        folder = data / "attachments" / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        os.mkfifo(folder / f"{digest}.{pid}.tmp")


def _poison_row(engine) -> Inbound | None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(Inbound).where(Inbound.message_id == f"mail-{POISON}@client.example.com")).first()


def test_mail_that_kills_the_poller_each_time_is_quarantined_and_the_others_are_tickets(
    dovecot: DovecotServer, database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = helpdesk_env(data, database_url, dovecot, HELPDESK_LEASE_SECONDS="1")
    run(env, "init")
    dovecot.append_many([make_mail(n) for n in (1, POISON, 3, 4)])
    engine = db.make_engine(database_url)
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            proc = subprocess.Popen([HELPDESK, "poll", "--once"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _hang_on_attachments(data, proc.pid)
            deadline = time.monotonic() + 30
            while (row := _poison_row(engine)) is None or row.attempts < attempt:
                assert proc.poll() is None, f"poller finished without hanging on run {attempt}"
                assert time.monotonic() < deadline, "the poison mail's run never started"
                time.sleep(0.05)
            time.sleep(0.3)
            assert proc.poll() is None  # stuck on the poison mail
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # The next run gives up on it and goes on with the rest.
        proc = subprocess.Popen([HELPDESK, "poll", "--once"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _hang_on_attachments(data, proc.pid)
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
