"""Microsoft Graph as the mail transport, against the local Graph stand-in and an HTTPS authorization server
that msal fetches real tokens from; stored in SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk.core import lease
from helpdesk.core.db import transaction
from helpdesk.core.mailauth import statuses
from helpdesk.core.models import Inbound, Outbox, Ticket, utcnow
from helpdesk.core.notify import SEND_DEADLINE
from helpdesk.core.settings import MailboxSettings, Settings
from helpdesk.mailgateway import graph, graphsend, graphwatch, oauth
from helpdesk.mailgateway.graph import GraphClient, GraphLoginFailed
from helpdesk.mailgateway.watcher import poll_once
from helpdesk.wiring import App, build
from tests.servers.graph import MicrosoftStandIns, microsoft_stand_ins

SHARED = "servicedesk@contoso.example"
SECRET = "graph-app-secret"


def _mail(n: int, to: str = SHARED) -> bytes:
    return (
        f"From: user{n}@example.com\r\nTo: {to}\r\nSubject: Laptop {n} will not boot\r\n"
        f"Message-ID: <graph-{n}@example.com>\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\nPlease help.\r\n"
    ).encode()


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[MicrosoftStandIns]:
    with microsoft_stand_ins() as found:
        yield found


@pytest.fixture
def ms(stand_ins: MicrosoftStandIns, monkeypatch: pytest.MonkeyPatch) -> MicrosoftStandIns:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stand_ins.cert))  # msal's requests session trusts the authority
    stand_ins.oauth.expires_in = 3600
    stand_ins.graph.add_mailbox(SHARED)  # a fresh, empty mailbox for each test
    stand_ins.graph.requests.clear()
    stand_ins.graph.sent.clear()
    return stand_ins


@pytest.fixture
def shared(ms: MicrosoftStandIns, request: pytest.FixtureRequest) -> MailboxSettings:
    """The shared mailbox, opened with the app's own token (the app is scoped to this one mailbox)."""
    client_id = f"app-{request.node.name}"[:60]
    ms.oauth.add_client(client_id, SECRET, username=SHARED)
    return ms.mailbox(SHARED, client_id, SECRET)


def _app(tmp_path: Path, database_url: str, mailbox: MailboxSettings) -> Iterator[App]:
    app = build(Settings(data_dir=tmp_path / "data", database_url=database_url, address=SHARED, mailboxes=(mailbox,)))
    try:
        yield app
    finally:
        oauth.use_store(None)
        app.engine.dispose()


@pytest.fixture
def app(tmp_path: Path, database_url: str, shared: MailboxSettings) -> Iterator[App]:
    yield from _app(tmp_path, database_url, shared)


@pytest.fixture
def sqlite_app(tmp_path: Path, shared: MailboxSettings) -> Iterator[App]:
    yield from _app(tmp_path, f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}", shared)


def _count(app: App, what: type) -> int:
    with app.factory() as session:
        return int(session.scalar(select(func.count()).select_from(what)) or 0)


def test_mail_in_the_inbox_becomes_tickets_page_by_page_and_moves_to_processed(
    app: App, ms: MicrosoftStandIns, shared: MailboxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "PAGE_SIZE", 2)  # three pages for five mails
    for n in range(5):
        ms.graph.deliver(SHARED, _mail(n))
    result = poll_once(app.factory, app.intake, shared)
    assert (result.fetched, result.stored) == (5, 5)
    assert _count(app, Ticket) == 5
    assert ms.graph.messages(SHARED, "Inbox") == []
    assert sorted(ms.graph.messages(SHARED, "Processed")) == sorted(_mail(n) for n in range(5))  # created, bytes kept
    assert sum(1 for _, path, _ in ms.graph.requests if path.endswith("/messages/delta")) == 3  # first page, 2 nextLinks

    # The next round starts at the kept deltaLink: only the new mail, and the moved ones as "@removed".
    ms.graph.deliver(SHARED, _mail(5))
    assert poll_once(app.factory, app.intake, shared).fetched == 1
    assert _count(app, Ticket) == 6 and _count(app, Inbound) == 6


def test_a_crash_between_store_and_move_gives_one_ticket_after_restart(
    app: App, ms: MicrosoftStandIns, shared: MailboxSettings
) -> None:
    class DiesBeforeMoving(GraphClient):
        def move(self, message_id: str, folder_id: str) -> None:
            raise SystemExit("killed after the commit, before the move")

    ms.graph.deliver(SHARED, _mail(1))
    assert lease.acquire(app.factory, shared.name, "first", 1.0)
    with DiesBeforeMoving(shared) as client, pytest.raises(SystemExit):
        graphwatch.fetch_new(app.factory, app.intake, client, shared, holder="first", lease_seconds=1.0)
    assert _count(app, Inbound) == 1 and len(ms.graph.messages(SHARED, "Inbox")) == 1  # stored, not moved

    result = poll_once(app.factory, app.intake, shared)  # the restart (the dead holder's lease runs out)
    assert result.fetched == 1
    assert _count(app, Ticket) == 1
    with app.factory() as session:
        assert sorted(s.value for s in session.scalars(select(Inbound.status))) == ["duplicate", "processed"]
    assert ms.graph.messages(SHARED, "Inbox") == [] and len(ms.graph.messages(SHARED, "Processed")) == 1


def test_throttling_is_waited_out_and_an_expired_delta_link_reads_the_folder_again(
    sqlite_app: App, ms: MicrosoftStandIns, shared: MailboxSettings
) -> None:
    ms.graph.deliver(SHARED, _mail(1))
    ms.graph.throttle(2, retry_after=0.3)
    assert poll_once(sqlite_app.factory, sqlite_app.intake, shared).stored == 1
    assert [status for _, _, status in ms.graph.requests].count(429) == 2

    ms.graph.expire_sync_states()
    ms.graph.deliver(SHARED, _mail(2))
    assert poll_once(sqlite_app.factory, sqlite_app.intake, shared).stored == 1
    assert [status for _, _, status in ms.graph.requests].count(410) == 1
    assert _count(sqlite_app, Ticket) == 2 and ms.graph.messages(SHARED, "Inbox") == []


def test_a_token_refused_mid_run_is_replaced_once(sqlite_app: App, ms: MicrosoftStandIns, shared: MailboxSettings) -> None:
    assert shared.oauth is not None
    ms.graph.deliver(SHARED, _mail(1))
    poll_once(sqlite_app.factory, sqlite_app.intake, shared)
    ms.oauth.revoke_client(shared.oauth.client_id)  # still within its lifetime, but refused from now on
    ms.graph.deliver(SHARED, _mail(2))
    assert poll_once(sqlite_app.factory, sqlite_app.intake, shared).stored == 1
    assert [status for _, _, status in ms.graph.requests].count(401) == 1
    assert len(ms.oauth.issued(shared.oauth.client_id)) == 2
    with sqlite_app.factory() as session:
        assert not statuses(session)[shared.name].failing


def test_the_app_cannot_open_a_mailbox_it_is_not_scoped_to(
    sqlite_app: App, ms: MicrosoftStandIns, shared: MailboxSettings
) -> None:
    assert shared.oauth is not None
    other = "ceo@contoso.example"
    ms.graph.add_mailbox(other)
    ms.graph.deliver(other, _mail(1, other))
    mailbox = ms.mailbox(other, shared.oauth.client_id, SECRET, name="ceo")
    with pytest.raises(GraphLoginFailed, match="403 ErrorAccessDenied") as failure:
        poll_once(sqlite_app.factory, sqlite_app.intake, mailbox)
    assert "\n" not in str(failure.value) and SECRET not in str(failure.value)
    with sqlite_app.factory() as session:
        assert statuses(session)["ceo"].failing
    assert len(ms.graph.messages(other, "Inbox")) == 1 and _count(sqlite_app, Inbound) == 0


def test_the_acknowledgement_goes_out_through_send_mail_as_our_exact_bytes(
    app: App, ms: MicrosoftStandIns, shared: MailboxSettings
) -> None:
    ms.graph.deliver(SHARED, _mail(1))
    poll_once(app.factory, app.intake, shared)
    with app.factory() as session:
        queued = {row.message_id: row.raw for row in session.scalars(select(Outbox))}
    assert queued
    sent, failed = graphsend.send_once(app.factory, app.settings)
    assert (sent, failed) == (len(queued), 0)
    assert sorted(s.raw for s in ms.graph.sent) == sorted(queued.values())
    assert {s.user for s in ms.graph.sent} == {SHARED}
    ack = next(s.raw for s in ms.graph.sent if b"To: user1@example.com" in s.raw)
    assert b"Laptop 1 will not boot" in ack and b"In-Reply-To: <graph-1@example.com>" in ack


def test_a_mail_whose_recipient_is_not_in_its_headers_is_refused_not_sent(
    sqlite_app: App, ms: MicrosoftStandIns
) -> None:
    with transaction(sqlite_app.factory) as session:
        session.add(Outbox(message_id="odd@example.org", purpose="test", mail_from=SHARED, recipients=["bcc@example.com"],
                           raw=b"From: " + SHARED.encode() + b"\r\nTo: someone@example.com\r\nSubject: x\r\n\r\nx\r\n",
                           deadline_at=utcnow() + SEND_DEADLINE))  # fmt: skip
    assert graphsend.send_once(sqlite_app.factory, sqlite_app.settings) == (0, 1)
    assert ms.graph.sent == []
    with sqlite_app.factory() as session:
        [row] = session.scalars(select(Outbox))
        assert row.status.value == "failed" and "bcc@example.com not among them" in (row.last_error or "")
