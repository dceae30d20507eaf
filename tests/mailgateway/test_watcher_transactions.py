"""No database transaction is open while the watcher waits on the IMAP server.

A slow or stalled server must not hold a row lock (PostgreSQL: an ``idle in transaction`` session
holding the mailbox cursor) or SQLite's write lock for as long as a FETCH takes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy import create_engine, func, make_url, select, text

from helpdesk.core import lease
from helpdesk.core.models import Inbound
from helpdesk.mailgateway.imap import MailboxClient
from helpdesk.mailgateway.watcher import fetch_new
from helpdesk.wiring import App
from tests.e2e.mails import make_mail
from tests.mailgateway.test_watcher import make_app  # noqa: F401 (fixture)
from tests.servers.imap import DovecotServer


@pytest.fixture
def open_transactions(database_url: str) -> Iterator[Callable[[], list[str]]]:
    """A probe from a connection of its own: what, if anything, holds a transaction open right now."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database

        def sqlite_writer_blocked() -> list[str]:
            conn = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")  # a writer: fails at once while another one holds the lock
                conn.execute("ROLLBACK")
                return []
            except sqlite3.OperationalError as exc:
                return [f"a writer could not start: {exc}"]
            finally:
                conn.close()

        yield sqlite_writer_blocked
        return
    engine = create_engine(database_url)

    def idle_in_transaction() -> list[str]:
        with engine.connect() as conn:
            return list(conn.scalars(text(
                "SELECT state || ': ' || query FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )))

    yield idle_in_transaction
    engine.dispose()


class _Probed(MailboxClient):
    """A real connection to a real server that looks at the database each time a FETCH is sent."""

    def __init__(self, *args, probe: Callable[[], list[str]], **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.probe = probe
        self.seen: list[str] = []
        self.fetches = 0

    def fetch(self, uids: Sequence[int], batch: int = 100) -> Iterator[tuple[int, bytes]]:
        self.fetches += 1
        self.seen += self.probe()
        yield from super().fetch(uids, batch)


def test_no_database_transaction_is_open_while_the_imap_fetch_runs(
    make_app: Callable[..., App], dovecot: DovecotServer, database_url: str,  # noqa: F811
    open_transactions: Callable[[], list[str]],
) -> None:
    mailbox = dovecot.mailbox_settings()
    app = make_app(database_url, mailbox)
    dovecot.append_many([make_mail(n) for n in range(5)])
    assert lease.acquire(app.factory, mailbox.name, "me", 60)

    with _Probed(mailbox, probe=open_transactions) as client:
        result = fetch_new(app.factory, app.intake, client, mailbox, holder="me", batch=2, sweep=True)

    assert client.fetches == 3  # 5 mails, 2 per round trip
    assert client.seen == []
    assert result.stored == 5
    with app.factory() as session:
        assert session.scalar(select(func.count(Inbound.id))) == 5
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 5


