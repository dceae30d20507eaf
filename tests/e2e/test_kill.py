"""Kill test: the real ``helpdesk poll`` is killed with SIGKILL at random moments, many times.

At the end every mail is in exactly one ticket: nothing lost, nothing twice, nothing left in the inbox.
Set HELPDESK_KILL_SEED to replay one run; HELPDESK_KILL_ROUNDS to kill more often.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from helpdesk.core import db
from helpdesk.core.models import Inbound, InboundStatus, Message, Ticket
from tests.e2e.helpers import HELPDESK, helpdesk_env, run
from tests.e2e.mails import make_mail, message_id, token
from tests.servers.imap import DovecotServer

MAILS = 300
REDELIVERED = range(0, MAILS, 15)  # delivered twice (a CC to a second address, a re-delivery)
WITHOUT_ID = range(7, MAILS, 25)  # no Message-ID: de-duplicated by content


def _mails() -> list[bytes]:
    mails = [make_mail(n, with_message_id=n not in WITHOUT_ID) for n in range(MAILS)]
    return mails + [mails[n] for n in REDELIVERED]


def _progress(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(mail stored, mail still to process)."""
    with engine.connect() as conn:
        stored = int(conn.scalar(select(func.count(Inbound.id))) or 0)
        pending = int(conn.scalar(select(func.count(Inbound.id)).where(Inbound.status == InboundStatus.NEW)) or 0)
    return stored, pending


def test_poller_killed_at_random_moments_loses_nothing_and_duplicates_nothing(
    dovecot: DovecotServer, database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("HELPDESK_KILL_SEED") or time.time())
    rounds = int(os.environ.get("HELPDESK_KILL_ROUNDS") or 30)
    rng = random.Random(seed)
    env = helpdesk_env(tmp_path / "data", database_url, dovecot, HELPDESK_LEASE_SECONDS="1", HELPDESK_POLL_INTERVAL="1")
    run(env, "init")
    mails = _mails()
    waves = [mails[i::3] for i in range(3)]  # mail keeps arriving: kills land while storing too
    engine = db.make_engine(database_url)
    log = tmp_path / "poll.log"
    kills: Counter[str] = Counter()
    try:
        with log.open("ab") as out:
            for n in range(rounds):
                if n % 3 == 0 and waves:
                    dovecot.append_many(waves.pop(0))
                proc = subprocess.Popen([HELPDESK, "poll"], env=env, stdout=out, stderr=out)
                before = _progress(engine)
                if rng.random() < 0.2:
                    time.sleep(rng.uniform(0.1, 1.5))  # now and then during start-up
                    kills["start-up"] += 1
                else:
                    # Most kills a random moment after work began: storing, processing or moving.
                    _until(lambda: _progress(engine) != before or proc.poll() is not None, 20)
                    time.sleep(rng.uniform(0.0, 0.25))
                    kills["while working"] += 1
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                after = _progress(engine)
                if not waves and after[0] >= len(mails) and not after[1]:
                    break
        # Restart once more and let it finish: poll --once waits out the dead poller's lease.
        for wave in waves:
            dovecot.append_many(wave)
        run(env, "poll", "--once", timeout=120)
        _assert_every_mail_once(engine, dovecot, len(mails))
        with engine.connect() as conn:
            runs = Counter(conn.scalars(select(Inbound.attempts)))
    finally:
        engine.dispose()
    print(f"\nkill test: seed {seed}, {sum(kills.values())} kills ({dict(kills)}), {len(mails)} mails delivered, runs per mail {dict(sorted(runs.items()))}")


def _until(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)


def _assert_every_mail_once(engine, dovecot: DovecotServer, delivered: int) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        statuses = Counter(InboundStatus(s) if not isinstance(s, InboundStatus) else s
                           for s in conn.scalars(select(Inbound.status)))
        subjects = list(conn.scalars(select(Ticket.subject)))
        message_ids = Counter(conn.scalars(select(Message.message_id).where(Message.inbound_id.is_not(None))))
        reasons = list(conn.scalars(select(Inbound.reason).where(Inbound.status == InboundStatus.QUARANTINED)))
    # Every delivered copy was stored exactly once (UIDs are unique per mailbox) and none is left over.
    assert sum(statuses.values()) == delivered, statuses
    assert statuses[InboundStatus.PROCESSED] == MAILS, (statuses, reasons)
    assert statuses[InboundStatus.DUPLICATE] == len(REDELIVERED), statuses
    # One ticket per mail, found by its token; one stored message per Message-ID.
    per_token = Counter(next((n for n in range(MAILS) if token(n) in s), -1) for s in subjects)
    assert len(subjects) == MAILS
    assert set(per_token) == set(range(MAILS)) and set(per_token.values()) == {1}
    assert all(message_ids[message_id(n).strip("<>")] == 1 for n in range(MAILS) if n not in WITHOUT_ID)
    # Nothing left in the inbox, nothing deleted: every delivered copy is in Processed.
    assert dovecot.uids("INBOX") == []
    assert len(dovecot.uids("Processed")) == delivered
