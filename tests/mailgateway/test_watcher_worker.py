"""Processing runs in a worker loop of its own: a mail that takes long to process does not hold up the mailbox.

The poller's threads are started as ``helpdesk poll`` starts them (``runner.mail_threads``). The parser
(the intake's dependency) is held on one mail; meanwhile the next mail must still be fetched, stored
and moved on the server. PostgreSQL: on SQLite storing waits for the processing transaction's write
lock anyway (one writer), so there the claim is about threads, not throughput.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk import runner
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import Inbound, Ticket
from helpdesk.core.settings import Settings
from helpdesk.wiring import App, build
from tests.e2e.mails import make_mail, token
from tests.servers.imap import DovecotServer
from tests.servers.postgres import PostgresCluster


@pytest.fixture
def app(dovecot: DovecotServer, postgres_cluster: PostgresCluster, tmp_path: Path) -> Iterator[App]:
    name = postgres_cluster.create_database()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=postgres_cluster.url(name),
        mailboxes=(dovecot.mailbox_settings(),), lease_seconds=6, poll_interval=0.5,
    )  # fmt: skip
    built = build(settings)
    yield built
    built.engine.dispose()
    postgres_cluster.drop_database(name)


def _count(app: App, what: type[Inbound] | type[Ticket]) -> int:
    with app.factory() as session:
        return int(session.scalar(select(func.count(what.id))) or 0)


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_a_mail_slow_to_process_does_not_hold_up_fetching_and_storing_the_next(
    app: App, dovecot: DovecotServer
) -> None:
    parse, held, release = app.intake.parse, threading.Event(), threading.Event()

    def slow_on_the_first(raw: bytes) -> ParsedMail:
        if token(1).encode() in raw:
            held.set()
            release.wait(30)
        return parse(raw)

    app.intake.parse = slow_on_the_first
    stop = threading.Event()
    threads = runner.mail_threads(app, stop)
    try:
        dovecot.append(make_mail(1))
        _wait(held.is_set, 15, "the first mail is being processed")
        dovecot.append(make_mail(2))
        _wait(lambda: _count(app, Inbound) == 2 and len(dovecot.uids("Processed")) == 2, 10,
              "the second mail stored and moved while the first is still being processed")
        assert _count(app, Ticket) == 0 and not release.is_set()
        release.set()
        _wait(lambda: _count(app, Ticket) == 2, 15, "both mails became tickets")
    finally:
        release.set()
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert not any(thread.is_alive() for thread in threads)
