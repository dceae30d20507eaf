"""Mail the server does not hand over when asked is never moved away unread: the next connection reads it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from imapclient import SEEN
from sqlalchemy import func, select

from helpdesk.core import lease
from helpdesk.core.models import Inbound
from helpdesk.wiring import App
from helpdesk.mailgateway.imap import PROCESSED_KEYWORD, MailboxClient
from helpdesk.mailgateway.watcher import fetch_new
from tests.e2e.mails import make_mail
from tests.mailgateway.test_watcher import make_app, sqlite_url  # noqa: F401 (fixtures)
from tests.servers.imap import DovecotServer, ImapServer


class _SkipsOnce(MailboxClient):
    """A real connection to a real server, whose FETCH answer misses one message the first time.

    Stands in for a server that answers a UID FETCH without the body of one message (it happens
    with busy or buggy servers); expunged mail looks the same to us.
    """

    def __init__(self, *args, skip: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.skip: int | None = skip

    def fetch(self, uids: Sequence[int], batch: int = 100) -> Iterator[tuple[int, bytes]]:
        for uid, raw in super().fetch(uids, batch):
            if uid == self.skip:
                self.skip = None
                continue
            yield uid, raw


def _stored(app: App) -> int:
    with app.factory() as session:
        return int(session.scalar(select(func.count(Inbound.id))) or 0)


def test_mail_whose_content_did_not_come_is_left_in_place_and_read_by_the_next_connection(
    make_app: Callable[..., App], dovecot: DovecotServer, sqlite_url: str  # noqa: F811
) -> None:
    mailbox = dovecot.mailbox_settings()
    app = make_app(sqlite_url, mailbox)
    dovecot.append_many([make_mail(n) for n in range(3)])
    second = dovecot.uids("INBOX")[1]
    assert lease.acquire(app.factory, mailbox.name, "me", 60)

    with _SkipsOnce(mailbox, skip=second) as client:
        result = fetch_new(app.factory, app.intake, client, mailbox, holder="me", sweep=True)
    assert (result.fetched, _stored(app)) == (2, 2)
    assert dovecot.uids("INBOX") == [second]  # not moved: it was never stored

    with MailboxClient(mailbox) as client:  # the next connection sweeps it up
        result = fetch_new(app.factory, app.intake, client, mailbox, holder="me", sweep=True)
    assert (result.fetched, _stored(app)) == (1, 3)
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 3


def test_flag_only_mail_left_unflagged_below_the_cursor_is_read_or_flagged_by_the_next_connection(
    make_app: Callable[..., App], imap_server: ImapServer, sqlite_url: str  # noqa: F811
) -> None:
    mailbox = imap_server.mailbox_settings(processed_folder=None)  # HELPDESK_IMAP_PROCESSED_FOLDER=""
    app = make_app(sqlite_url, mailbox)
    imap_server.append_many([make_mail(n) for n in range(3)])
    first, second, third = imap_server.uids("INBOX")
    assert lease.acquire(app.factory, mailbox.name, "me", 60)

    with _SkipsOnce(mailbox, skip=second) as client:
        result = fetch_new(app.factory, app.intake, client, mailbox, holder="me", sweep=True)
    assert (result.fetched, _stored(app)) == (2, 2)
    assert [uid for uid, flags in imap_server.flags("INBOX").items() if SEEN not in flags] == [second]
    # And one that was stored but not flagged: the watcher died between its commit and the flag.
    with imap_server.client() as conn:
        conn.select_folder("INBOX")
        conn.remove_flags([third], [SEEN, PROCESSED_KEYWORD.encode()])

    with MailboxClient(mailbox) as client:  # the next connection sweeps both up
        result = fetch_new(app.factory, app.intake, client, mailbox, holder="me", sweep=True)
    assert (result.fetched, _stored(app)) == (1, 3)  # the unflagged stored one is not fetched again
    assert imap_server.uids("INBOX") == [first, second, third]  # flag-only: nothing moved
    assert all(SEEN in flags for flags in imap_server.flags("INBOX").values())
