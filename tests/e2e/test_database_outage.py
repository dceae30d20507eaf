"""PostgreSQL down: the real ``helpdesk poll`` and ``send`` wait for it and carry on, ``--once`` exits 75.

The session's PostgreSQL is stopped and started again while the helpdesk runs (and always
started again before the test ends).
"""

from __future__ import annotations

import email
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from helpdesk.core import db
from helpdesk.core.models import Outbox, OutboxStatus, Ticket
from helpdesk.core.outbox import RetryPolicy
from helpdesk.core.settings import SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import make_desk, mail
from tests.e2e.helpers import HELPDESK, helpdesk_env, run
from tests.e2e.mails import make_mail, token
from tests.servers import free_port
from tests.servers.imap import DovecotServer
from tests.servers.postgres import PostgresCluster
from tests.servers.smtp import HOST, SmtpSink

PASSWORD = "s3cret-pw"  # trust authentication ignores it; it must never be printed


def _url(cluster: PostgresCluster) -> str:
    name = cluster.create_database()
    return cluster.url(name).replace("postgres@", f"postgres:{PASSWORD}@")


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _retry_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "HELPDESK_DATABASE_URL" in line]


def _tickets(url: str) -> list[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(Ticket.subject)))
    finally:
        engine.dispose()


@contextmanager
def _down(cluster: PostgresCluster) -> Iterator[None]:
    cluster.pause()
    try:
        yield
    finally:
        cluster.resume()


@contextmanager
def _started_while_down(cluster: PostgresCluster, env: dict[str, str], command: str, log: Path) -> Iterator[
    subprocess.Popen[bytes]
]:
    """``helpdesk COMMAND`` started with PostgreSQL stopped: it logs its retries and stays up until PostgreSQL is back.

    Afterwards its log holds neither a traceback nor the password.
    """
    with _down(cluster), log.open("ab") as out:
        proc = subprocess.Popen([HELPDESK, command], env=env, stdout=out, stderr=out)
        _wait(lambda: len(_retry_lines(log)) >= 2 or proc.poll() is not None, 30, "two retry lines")
    try:
        assert proc.poll() is None, log.read_text()
        yield proc
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and PASSWORD not in text, text


def _restart_under(cluster: PostgresCluster, log: Path) -> None:
    """Stop PostgreSQL under the running command until it has logged a retry, then start it again."""
    before = len(_retry_lines(log))
    with _down(cluster):
        _wait(lambda: len(_retry_lines(log)) > before, 30, "a retry line")


def test_once_commands_exit_tempfail_while_the_database_is_down(
    postgres_cluster: PostgresCluster, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    env = helpdesk_env(tmp_path / "data", _url(postgres_cluster), dovecot, smtp_sink)
    run(env, "init")
    with _down(postgres_cluster):
        for command in ("poll", "send"):
            done = run(env, command, "--once", check=False)
            err = done.stderr.decode()
            assert done.returncode == 75, err
            [line] = err.splitlines()
            assert "HELPDESK_DATABASE_URL" in line and PASSWORD not in line, line


def test_poll_started_while_the_database_is_down_waits_and_survives_a_restart(
    postgres_cluster: PostgresCluster, dovecot: DovecotServer, tmp_path: Path
) -> None:
    url = _url(postgres_cluster)
    env = helpdesk_env(tmp_path / "data", url, dovecot, HELPDESK_POLL_INTERVAL="1")
    run(env, "init")
    dovecot.append(make_mail(1))
    log = tmp_path / "poll.log"
    with _started_while_down(postgres_cluster, env, "poll", log):
        _wait(lambda: any(token(1) in s for s in _tickets(url)), 60, "the first mail becomes a ticket")
        # PostgreSQL restarts under the running poller; mail that arrives meanwhile is not lost.
        _restart_under(postgres_cluster, log)
        dovecot.append(make_mail(2))
        _wait(lambda: any(token(2) in s for s in _tickets(url)), 60, "mail after the restart becomes a ticket")
    assert len(_tickets(url)) == 2


def test_send_started_while_the_database_is_down_waits_and_survives_a_restart(
    postgres_cluster: PostgresCluster, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    env = helpdesk_env(tmp_path / "data", _url(postgres_cluster), smtp=smtp_sink)
    run(env, "ingest", input=make_mail(1))  # its acknowledgement waits in the outbox
    with _started_while_down(postgres_cluster, env, "send", tmp_path / "send.log"):
        smtp_sink.wait_for(1, timeout=60)
        _restart_under(postgres_cluster, tmp_path / "send.log")
        run(env, "ingest", input=make_mail(2))
        mails = smtp_sink.wait_for(2, timeout=60)
    ids = [m.message["Message-ID"] for m in mails]
    assert len(set(ids)) == len(ids) >= 2  # each acknowledgement once


def test_run_started_while_the_database_is_down_starts_once_it_is_back(
    postgres_cluster: PostgresCluster, dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    url = _url(postgres_cluster)
    env = helpdesk_env(tmp_path / "data", url, dovecot, smtp_sink, HELPDESK_WEB_PORT=str(free_port()))
    run(env, "init")
    dovecot.append(make_mail(1))
    log = tmp_path / "run.log"
    with _started_while_down(postgres_cluster, env, "run", log):
        _wait(lambda: "Helpdesk is running" in log.read_text(), 60, "the console is up")
        _wait(lambda: any(token(1) in s for s in _tickets(url)), 60, "the mail becomes a ticket")
        smtp_sink.wait_for(1, timeout=60)  # its acknowledgement


class _SinkThatRestartsTheDatabase:
    """Accepts the first mail while PostgreSQL is restarting: the sender cannot commit "sent" right after the 250."""

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self.received: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.received:
            self.cluster.pause()
            threading.Timer(2.0, self.cluster.resume).start()
        self.received.append(email.message_from_bytes(envelope.original_content or b"")["Message-ID"])
        return "250 OK"


def test_a_mail_accepted_while_the_database_restarts_is_recorded_once_it_is_back(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    engine = db.make_engine(postgres_cluster.url(postgres_cluster.create_database()))
    sink = _SinkThatRestartsTheDatabase(postgres_cluster)
    controller = Controller(sink, hostname=HOST, port=free_port())
    controller.start()
    try:
        db.upgrade(engine)
        desk = make_desk(db.make_sessionmaker(engine), tmp_path)
        desk.deliver(mail())
        desk.deliver(mail("bob@example.com", "VPN down", "no tunnel"))
        acks = desk.outbox("acknowledgement")
        smtp = SmtpSettings(host=HOST, port=controller.port)
        # The second mail goes on the same (new) database connection once the first is recorded.
        assert send_once(desk.factory, smtp, policy=RetryPolicy(claim_for=timedelta(seconds=1))) == (2, 0)
        with desk.factory() as session:
            assert {session.get(Outbox, a.id).status for a in acks} == {OutboxStatus.SENT}
        time.sleep(1.5)  # past the claim: nothing is left to send again
        assert send_once(desk.factory, smtp, policy=RetryPolicy(claim_for=timedelta(seconds=1))) == (0, 0)
    finally:
        controller.stop()
        if not (postgres_cluster.data / "postmaster.pid").exists():
            postgres_cluster.resume()
        engine.dispose()
    assert sorted(sink.received) == sorted(f"<{a.message_id}>" for a in acks)
