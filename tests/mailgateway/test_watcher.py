"""The watcher on real IMAP servers: IDLE, reconnects, login failures, UIDVALIDITY, moving or flagging, de-duplication."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk.core import lease
from helpdesk.core.models import Inbound, InboundStatus, MailboxCursor, Ticket
from helpdesk.core.settings import AuthKind, MailboxSettings, OAuthProvider, OAuthSettings, Settings
from helpdesk.runner import process_loop
from helpdesk.wiring import App, build
from helpdesk.mailgateway.watcher import WatchOptions, fetch_new, poll_once, watch_mailbox
from helpdesk.mailgateway.imap import MailboxClient
from tests.e2e.mails import make_mail, token
from tests.servers import require
from tests.servers.imap import DovecotInstance, DovecotServer, ImapServer, PymapServer, dovecot_binary
from tests.servers.oauth import OAuthServer

FAST = WatchOptions(lease_seconds=6, idle_seconds=1, poll_interval=0.5, first_backoff=0.5, max_backoff=2)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Build the helpdesk's services on a database; the engines are closed after the test."""
    apps: list[App] = []

    def make(database_url: str, *mailboxes: MailboxSettings) -> App:
        apps.append(build(Settings(data_dir=tmp_path / "data", database_url=database_url, mailboxes=mailboxes)))
        return apps[-1]

    yield make
    for app in apps:
        app.engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}"


class Running:
    """A watcher thread and the processing worker beside it (as `helpdesk poll` runs them), stopped at the end."""

    def __init__(self, app: App, mailbox: MailboxSettings, options: WatchOptions = FAST) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=watch_mailbox, args=(app.factory, app.intake, mailbox, self.stop, options), daemon=True
        )
        self.worker = threading.Thread(target=process_loop, args=(app, self.stop, 0.5), daemon=True)
        self.thread.start()
        self.worker.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.worker.join(timeout=30)
        assert not self.thread.is_alive(), "the watcher did not stop"
        assert not self.worker.is_alive(), "the processing worker did not stop"


@pytest.fixture
def watching(make_app: Callable[..., App]) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(app: App, mailbox: MailboxSettings, options: WatchOptions = FAST) -> Running:
        started.append(Running(app, mailbox, options))
        return started[-1]

    yield start
    for running in started:
        running.close()


def count(app: App, query) -> int:  # type: ignore[no-untyped-def]
    with app.factory() as session:
        return int(session.scalar(query) or 0)


def tickets(app: App) -> int:
    return count(app, select(func.count(Ticket.id)))


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def subjects(app: App) -> list[str]:
    with app.factory() as session:
        return sorted(session.scalars(select(Ticket.subject)))


def restart(server: ImapServer) -> None:
    """Stop and start the server, waiting until the old one's forked login processes have let go of the port.

    (Dovecot's children outlive the master briefly and keep accepting on the old socket.)
    """
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((server.host, server.port), timeout=0.2).close()
        except OSError:
            break
        time.sleep(0.05)
    server.start()


def one_ticket_each(app: App, numbers: list[int]) -> bool:
    found = subjects(app)
    return all(sum(token(n) in s for s in found) == 1 for n in numbers)


def test_watcher_turns_mail_appended_while_idling_into_tickets(
    make_app: Callable[..., App], imap_server: ImapServer, sqlite_url: str, watching: Callable[..., Running]
) -> None:
    mailbox = imap_server.mailbox_settings()
    app = make_app(sqlite_url, mailbox)
    imap_server.append(make_mail(1))  # waiting before the watcher starts
    watching(app, mailbox)
    wait_until(lambda: tickets(app) == 1, 10, "the waiting mail became a ticket")
    time.sleep(0.3)  # the watcher is idling now
    imap_server.append(make_mail(2))
    took = wait_until(lambda: tickets(app) == 2, 5, "the appended mail became a ticket")
    assert took < 2.0
    assert imap_server.uids("INBOX") == []
    assert len(imap_server.uids("Processed")) == 2


def test_watcher_reconnects_after_server_restart_and_reads_what_it_missed(
    make_app: Callable[..., App], imap_server: ImapServer, sqlite_url: str, watching: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="helpdesk.mailgateway.watcher")
    mailbox = imap_server.mailbox_settings()
    app = make_app(sqlite_url, mailbox)
    watching(app, mailbox)
    imap_server.append(make_mail(1))
    wait_until(lambda: tickets(app) == 1, 10, "first mail ticketed")
    restart(imap_server)  # pymap comes back empty with a new UIDVALIDITY; Dovecot keeps its mail
    imap_server.append(make_mail(2))  # arrives while the watcher is still backing off
    wait_until(lambda: tickets(app) == 2, 20, "mail delivered during the outage ticketed")
    imap_server.append(make_mail(3))
    wait_until(lambda: tickets(app) == 3, 10, "mail after the reconnect ticketed")
    assert any("reconnecting" in r.getMessage() for r in caplog.records)
    assert one_ticket_each(app, [1, 2, 3])
    assert count(app, select(func.count(Inbound.id))) == 3


def test_login_failure_is_one_clear_line_retried_with_backoff_not_a_busy_loop(
    make_app: Callable[..., App], dovecot: DovecotServer, sqlite_url: str, watching: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="helpdesk.mailgateway.watcher")
    mailbox = dovecot.mailbox_settings(password="wrong")
    app = make_app(sqlite_url, mailbox)
    running = watching(app, mailbox, WatchOptions(lease_seconds=6, first_backoff=0.5, max_backoff=8))
    time.sleep(3.2)
    assert running.thread.is_alive()
    failures = [r for r in caplog.records if "refused" in r.getMessage()]
    # Backoff 0.5, 1, 2 s: three or four tries in 3.2 s, not hundreds.
    assert 2 <= len(failures) <= 4, [r.getMessage() for r in failures]
    line = failures[0].getMessage()
    assert failures[0].levelno == logging.ERROR and "\n" not in line
    assert dovecot.user in line and "retrying in" in line and "user and password" in line


@pytest.mark.parametrize("processed_folder", [None, "Processed"], ids=["flag-only", "move"])
def test_uidvalidity_change_resets_cursor_without_duplicate_tickets(
    make_app: Callable[..., App], imap_server: ImapServer, sqlite_url: str, processed_folder: str | None
) -> None:
    mailbox = imap_server.mailbox_settings(processed_folder=processed_folder)
    app = make_app(sqlite_url, mailbox)
    mails = [make_mail(n) for n in range(4)] + [make_mail(9, with_message_id=False)]
    imap_server.append_many(mails)
    assert poll_once(app.factory, app.intake, mailbox).stored == 5
    with app.factory() as session:
        before = session.get(MailboxCursor, mailbox.name)
        assert before is not None
        old_validity = before.uidvalidity

    _new_uidvalidity(imap_server, mails, flag_only=processed_folder is None)
    again = poll_once(app.factory, app.intake, mailbox)
    assert again.stored == 5  # read again from UID 1 ...
    assert tickets(app) == 5  # ... and recognised: no new ticket
    with app.factory() as session:
        cursor = session.get(MailboxCursor, mailbox.name)
        assert cursor is not None and cursor.uidvalidity != old_validity
        statuses = sorted(s.value for s in session.scalars(select(Inbound.status).order_by(Inbound.id)))
    assert statuses == ["duplicate"] * 5 + ["processed"] * 5


def _new_uidvalidity(server: ImapServer, mails: list[bytes], *, flag_only: bool) -> None:
    """Make the server hand out a new UIDVALIDITY for INBOX, with the same mail in it."""
    if isinstance(server, PymapServer):
        server.restart()  # in-memory: empty, new UIDVALIDITY
        server.append_many(mails)
        return
    assert isinstance(server, DovecotServer)
    if not flag_only:
        server.append_many(mails)  # as if the moved mail was put back
    server.stop()
    maildir = server.instance.dir / "mail" / server.user
    for path in maildir.glob("dovecot*"):
        if path.is_file():
            path.unlink()  # uidlist and indexes: Dovecot renumbers the folder
    time.sleep(1.1)  # Dovecot's UIDVALIDITY is a timestamp
    server.start()


def test_flag_only_mode_leaves_mail_in_the_folder_seen(make_app: Callable[..., App], imap_server: ImapServer, sqlite_url: str) -> None:
    mailbox = imap_server.mailbox_settings(processed_folder=None)
    app = make_app(sqlite_url, mailbox)
    imap_server.append_many([make_mail(1), make_mail(2)])
    poll_once(app.factory, app.intake, mailbox)
    assert tickets(app) == 2
    flags = imap_server.flags("INBOX")
    assert len(flags) == 2 and all(b"\\Seen" in f for f in flags.values())
    assert "Processed" not in imap_server.folders()
    assert poll_once(app.factory, app.intake, mailbox).fetched == 0  # the cursor remembers


def test_mail_stored_but_not_moved_before_a_crash_is_moved_on_the_next_run(
    make_app: Callable[..., App], dovecot: DovecotServer, sqlite_url: str
) -> None:
    mailbox = dovecot.mailbox_settings()
    app = make_app(sqlite_url, mailbox)
    dovecot.append_many([make_mail(1), make_mail(2)])
    # The first run stores and commits, then "dies" before moving: flag-only stands in for that.
    poll_once(app.factory, app.intake, dovecot.mailbox_settings(processed_folder=None))
    assert len(dovecot.uids("INBOX")) == 2
    result = poll_once(app.factory, app.intake, mailbox)
    assert result.fetched == 0
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 2
    assert tickets(app) == 2


def test_same_mail_to_two_help_addresses_gives_one_ticket(
    make_app: Callable[..., App], dovecot: DovecotServer, sqlite_url: str, dovecot_instance
) -> None:  # type: ignore[no-untyped-def]
    other = dovecot_instance.new_account()
    first = dovecot.mailbox_settings(name="help", address="help@example.org")
    second = other.mailbox_settings(name="it", address="it@example.org")
    app = make_app(sqlite_url, first, second)
    cc = make_mail(7).replace(b"To: help@example.org", b"To: help@example.org\nCc: it@example.org")
    no_id = make_mail(8, with_message_id=False)
    for server in (dovecot, other):
        server.append_many([cc, no_id])
    poll_once(app.factory, app.intake, first)
    poll_once(app.factory, app.intake, second)
    assert one_ticket_each(app, [7, 8]) and tickets(app) == 2
    with app.factory() as session:
        rows = session.scalars(select(Inbound).order_by(Inbound.id)).all()
    assert [r.status for r in rows] == [InboundStatus.PROCESSED] * 2 + [InboundStatus.DUPLICATE] * 2
    assert {r.source for r in rows} == {"help", "it"}


def test_lease_keeps_a_second_watcher_off_until_the_first_one_stops(
    make_app: Callable[..., App], dovecot: DovecotServer, database_url: str, watching: Callable[..., Running]
) -> None:
    mailbox = dovecot.mailbox_settings()
    app = make_app(database_url, mailbox)
    first = watching(app, mailbox)
    wait_until(lambda: lease.current_holder(app.factory, mailbox.name) is not None, 10, "first watcher holds the lease")
    holder = lease.current_holder(app.factory, mailbox.name)
    assert not lease.acquire(app.factory, mailbox.name, "someone-else", 60)
    second = watching(app, mailbox)
    dovecot.append_many([make_mail(n) for n in range(10)])
    wait_until(lambda: tickets(app) == 10, 15, "mail ticketed")
    assert lease.current_holder(app.factory, mailbox.name) == holder
    first.close()  # a clean stop releases the lease at once
    wait_until(lambda: lease.current_holder(app.factory, mailbox.name) not in (None, holder), 10, "second took over")
    dovecot.append(make_mail(10))
    wait_until(lambda: tickets(app) == 11, 10, "mail after the takeover ticketed")
    second.close()
    assert count(app, select(func.count(Inbound.id))) == 11


def test_fetch_refuses_to_store_without_the_lease(make_app: Callable[..., App], dovecot: DovecotServer, sqlite_url: str) -> None:
    mailbox = dovecot.mailbox_settings()
    app = make_app(sqlite_url, mailbox)
    dovecot.append(make_mail(1))
    assert lease.acquire(app.factory, mailbox.name, "other-worker", 60)
    from helpdesk.mailgateway.watcher import LeaseLost

    with MailboxClient(mailbox) as client, pytest.raises(LeaseLost):
        fetch_new(app.factory, app.intake, client, mailbox, holder="me")
    assert count(app, select(func.count(Inbound.id))) == 0
    assert dovecot.uids("INBOX") != []


def test_without_idle_the_watcher_polls(
    make_app: Callable[..., App], sqlite_url: str, watching: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    binary = dovecot_binary()
    require("Dovecot", binary is not None, "no `dovecot` binary (apt-get install dovecot-imapd)")
    assert binary is not None
    instance = DovecotInstance(binary, extra_config="protocol imap {\n  imap_capability = IMAP4rev1 UIDPLUS\n}\n")
    instance.start()
    try:
        caplog.set_level(logging.INFO, logger="helpdesk.mailgateway.watcher")
        server = instance.new_account()
        mailbox = server.mailbox_settings()
        app = make_app(sqlite_url, mailbox)
        running = watching(app, mailbox)
        wait_until(lambda: any("connected (polling)" in r.getMessage() for r in caplog.records), 10, "connected")
        server.append_many([make_mail(1), make_mail(2)])
        wait_until(lambda: tickets(app) == 2, 10, "polled mail ticketed")
        running.close()
        assert server.uids("INBOX") == [] and len(server.uids("Processed")) == 2  # COPY + EXPUNGE without MOVE
    finally:
        instance.close()


def test_an_oauth2_login_failure_names_what_to_check_for_oauth2(
    make_app: Callable[..., App], oauth_server: OAuthServer, oauth_dovecot: DovecotServer, sqlite_url: str,
    watching: Callable[..., Running], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="helpdesk.mailgateway.watcher")
    oauth_server.add_client("watched-expired", "s3cret", username=oauth_dovecot.user).disabled = True
    mailbox = oauth_dovecot.mailbox_settings(
        auth=AuthKind.OAUTH2, password="",
        oauth=OAuthSettings(OAuthProvider.GENERIC, "watched-expired", "s3cret", token_url=oauth_server.token_url),
    )  # fmt: skip
    app = make_app(sqlite_url, mailbox)
    watching(app, mailbox, WatchOptions(lease_seconds=6, first_backoff=0.5, max_backoff=8))

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "helpdesk.mailgateway.watcher" and r.levelno == logging.ERROR]

    wait_until(lambda: bool(failures()), 10, "a login failure logged")
    line = failures()[0]
    assert "invalid_client" in line and "OAuth2 app" in line and "password" not in line and "\n" not in line
