"""Two ``helpdesk poll`` processes on one PostgreSQL database: one holds the mailbox, the other takes over
within the lease time when the holder is killed, and no mail is processed twice."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from helpdesk.core import db
from helpdesk.core.models import Inbound, InboundStatus, MailboxCursor, Ticket
from tests.e2e.helpers import HELPDESK, helpdesk_env, run
from tests.e2e.mails import make_mail, token
from tests.servers import terminate
from tests.servers.imap import DovecotServer
from tests.servers.postgres import PostgresCluster

LEASE_SECONDS = 3
FIRST, LATER = 150, 30


def _holder_pid(engine) -> int | None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        holder = conn.scalar(select(MailboxCursor.lease_holder))
    return int(holder.split(":")[1]) if holder else None


def _wait(check, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def _statuses(engine) -> Counter[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return Counter(str(s.value if isinstance(s, InboundStatus) else s) for s in conn.scalars(select(Inbound.status)))


def test_two_pollers_share_one_database_and_the_survivor_takes_over_after_a_kill(
    dovecot: DovecotServer, postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    name = postgres_cluster.create_database()
    url = postgres_cluster.url(name)
    engine = db.make_engine(url)
    env = helpdesk_env(tmp_path / "data", url, dovecot, HELPDESK_LEASE_SECONDS=str(LEASE_SECONDS))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        run(env, "init")
        dovecot.append_many(make_mail(n) for n in range(FIRST))
        with (tmp_path / "poll.log").open("ab") as out:
            procs = [subprocess.Popen([HELPDESK, "poll"], env=env, stdout=out, stderr=out) for _ in range(2)]
            _wait(lambda: _holder_pid(engine) in {p.pid for p in procs}, 30, "one poller holds the mailbox")
            holder = next(p for p in procs if p.pid == _holder_pid(engine))
            survivor = next(p for p in procs if p is not holder)
            # Kill the holder in the middle of its work.
            _wait(lambda: sum(_statuses(engine).values()) > 0, 30, "the holder started storing")
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            killed_at = time.monotonic()
            dovecot.append_many(make_mail(n) for n in range(FIRST, FIRST + LATER))
            _wait(lambda: _holder_pid(engine) == survivor.pid, LEASE_SECONDS + 10, "the survivor took the mailbox over")
            takeover = time.monotonic() - killed_at
            _wait(lambda: _statuses(engine)["processed"] == FIRST + LATER, 60, "every mail processed")
            assert survivor.poll() is None, "the survivor is still running"
        with engine.connect() as conn:
            subjects = list(conn.scalars(select(Ticket.subject)))
        per_mail = Counter(next(n for n in range(FIRST + LATER) if token(n) in s) for s in subjects)
        assert len(subjects) == FIRST + LATER and set(per_mail.values()) == {1}
        assert _statuses(engine) == Counter({"processed": FIRST + LATER})
        assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == FIRST + LATER
        assert takeover < LEASE_SECONDS + 6
        print(f"\nworkers: takeover {takeover:.1f} s after the kill (lease {LEASE_SECONDS} s)")
    finally:
        for p in procs:
            terminate(p, 15)
        engine.dispose()
        postgres_cluster.drop_database(name)
