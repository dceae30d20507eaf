"""MailboxClient against real Dovecot and pymap servers on loopback."""

from __future__ import annotations

import shutil
import threading
import time
from typing import Callable, Iterator

import pytest

from helpdesk.mailgateway.imap import (
    MAX_UID,
    FolderMissing,
    FolderState,
    ImapError,
    LoginFailed,
    MailboxClient,
    ServerUnreachable,
)
from helpdesk.core.settings import TlsMode
from tests.servers import free_port, require
from tests.servers.imap import DovecotInstance, ImapServer, dovecot_binary


def mail(n: int) -> bytes:
    return (
        f"From: user{n}@example.org\r\nTo: help@example.org\r\nSubject: problem {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n\r\nBody of mail {n}.\r\n"
    ).encode()


@pytest.fixture
def client(imap_server: ImapServer) -> Iterator[MailboxClient]:
    c = MailboxClient(imap_server.mailbox_settings(), timeout=10)
    c.connect()
    yield c
    c.close()


def later(delay: float, action: Callable[[], None]) -> threading.Thread:
    """Run `action` on another thread after `delay` seconds; join the thread when done."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- reading ---------------------------------------------------------------------------


def test_fetch_returns_raw_mail_without_setting_seen(imap_server: ImapServer, client: MailboxClient) -> None:
    raws = [mail(n) for n in range(5)]
    imap_server.append_many(raws)
    client.select("INBOX")
    uids = client.uids_after(0)
    fetched = list(client.fetch(uids, batch=2))
    assert [uid for uid, _ in fetched] == uids
    assert [raw for _, raw in fetched] == raws
    assert all(b"\\Seen" not in flags for flags in imap_server.flags().values())


def test_fetch_skips_uids_that_are_gone(imap_server: ImapServer, client: MailboxClient) -> None:
    imap_server.append(mail(1))
    client.select("INBOX")
    (uid,) = client.uids_after(0)
    assert list(client.fetch([uid, uid + 50])) == [(uid, mail(1))]


def test_uids_after_edge_cases(imap_server: ImapServer, client: MailboxClient) -> None:
    client.select("INBOX")
    assert client.uids_after(0) == []
    imap_server.append_many([mail(1), mail(2), mail(3)])
    client.select("INBOX")
    uids = client.uids_after(0)
    assert len(uids) == 3 and uids == sorted(uids)
    assert client.uids_after(uids[0]) == uids[1:]
    # "n:*" past the highest UID still matches the highest UID on the wire.
    assert client.uids_after(uids[-1]) == []
    assert client.uids_after(uids[-1] + 1000) == []
    assert client.uids_after(MAX_UID) == []


def test_select_reports_uidvalidity_and_counts(imap_server: ImapServer, client: MailboxClient) -> None:
    imap_server.append_many([mail(1), mail(2)])
    state = client.select("INBOX")
    assert isinstance(state, FolderState)
    assert state.exists == 2
    assert state.uidvalidity > 0
    assert state.uidnext is not None and state.uidnext > max(imap_server.uids())
    with imap_server.client() as other:
        assert other.select_folder("INBOX")[b"UIDVALIDITY"] == state.uidvalidity
    # Stable across connections to the same server run.
    with MailboxClient(imap_server.mailbox_settings()) as again:
        assert again.select("INBOX").uidvalidity == state.uidvalidity


def test_select_missing_folder_raises_folder_missing(client: MailboxClient) -> None:
    with pytest.raises(FolderMissing, match="'Nowhere' does not exist"):
        client.select("Nowhere")


# -- marking processed -------------------------------------------------------------------


def test_mark_processed_moves_to_folder_created_on_demand(imap_server: ImapServer, client: MailboxClient) -> None:
    imap_server.append_many([mail(1), mail(2), mail(3)])
    assert "Processed" not in imap_server.folders()
    client.select("INBOX")
    first, second, third = client.uids_after(0)

    client.mark_processed([first, second], "Processed")

    assert "Processed" in imap_server.folders()
    assert imap_server.uids() == [third]
    assert imap_server.fetch_all("Processed") == [mail(1), mail(2)]
    # The folder exists now; moving more into it works the same.
    client.mark_processed([third], "Processed")
    assert imap_server.uids() == []
    assert imap_server.fetch_all("Processed") == [mail(1), mail(2), mail(3)]


def test_mark_processed_without_folder_only_flags(imap_server: ImapServer, client: MailboxClient) -> None:
    imap_server.append_many([mail(1), mail(2)])
    client.select("INBOX")
    first, second = client.uids_after(0)

    client.mark_processed([first], None)

    flags = imap_server.flags()
    assert sorted(flags) == [first, second]
    assert b"\\Seen" in flags[first]
    assert b"\\Seen" not in flags[second]
    assert not any(b"\\Deleted" in f for f in flags.values())
    assert "Processed" not in imap_server.folders()


def test_mark_processed_with_no_uids_does_nothing(imap_server: ImapServer, client: MailboxClient) -> None:
    client.select("INBOX")
    client.mark_processed([], "Processed")
    assert "Processed" not in imap_server.folders()


def test_append_then_fetch(imap_server: ImapServer, client: MailboxClient) -> None:
    client.append("INBOX", mail(7))
    client.select("INBOX")
    assert [raw for _, raw in client.fetch(client.uids_after(0))] == [mail(7)]
    with pytest.raises(FolderMissing):
        client.append("Nowhere", mail(8))


# -- waiting -------------------------------------------------------------------------------


def test_wait_for_mail_wakes_promptly_on_append(imap_server: ImapServer, client: MailboxClient) -> None:
    assert client.has_idle
    client.select("INBOX")
    last = 0
    # Repeated on pymap: it splits IDLE responses across TCP segments (imapclient
    # issue #519). Dovecot batches notifications for ~0.5 s, so fewer rounds there.
    for n in range(10 if imap_server.kind == "pymap" else 3):
        appender = later(0.1, lambda n=n: imap_server.append(mail(n)))
        started = time.monotonic()
        assert client.wait_for_mail(10) is True
        assert time.monotonic() - started < 2
        appender.join()
        new = client.uids_after(last)
        assert len(new) == 1
        last = new[-1]


def test_wait_for_mail_times_out_quietly(imap_server: ImapServer, client: MailboxClient) -> None:
    client.select("INBOX")
    started = time.monotonic()
    assert client.wait_for_mail(0.3) is False
    assert 0.25 <= time.monotonic() - started < 2
    imap_server.append(mail(1))
    assert len(client.uids_after(0)) == 1  # the connection is still in a good state


def test_wait_for_mail_reports_server_going_away(imap_server: ImapServer, client: MailboxClient) -> None:
    client.select("INBOX")
    stopper = later(0.2, imap_server.stop)
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match="closed the connection|lost"):
        client.wait_for_mail(30)
    assert time.monotonic() - started < 5
    stopper.join()
    imap_server.start()
    client.connect()  # reconnecting after the server is back works
    assert client.select("INBOX").exists == 0 or imap_server.kind == "dovecot"


# -- failures --------------------------------------------------------------------------------


def test_wrong_password_is_login_failed_with_one_clear_line(imap_server: ImapServer) -> None:
    settings = imap_server.mailbox_settings(password="wrong")
    with pytest.raises(LoginFailed) as failed:
        MailboxClient(settings, timeout=10).connect()
    message = str(failed.value)
    assert "\n" not in message
    assert imap_server.user in message and f"{imap_server.host}:{imap_server.port}" in message
    assert "b'" not in message


def test_closed_port_is_server_unreachable(imap_server: ImapServer) -> None:
    settings = imap_server.mailbox_settings(port=free_port())
    with pytest.raises(ServerUnreachable, match="connection refused") as failed:
        MailboxClient(settings, timeout=5).connect()
    assert "\n" not in str(failed.value)


def test_command_after_server_stop_is_server_unreachable(imap_server: ImapServer, client: MailboxClient) -> None:
    client.select("INBOX")
    imap_server.stop()
    with pytest.raises(ServerUnreachable):
        client.uids_after(0)
    imap_server.start()


# -- a server without MOVE and IDLE --------------------------------------------------------


@pytest.fixture(scope="module")
def plain_dovecot() -> Iterator[DovecotInstance]:
    """Dovecot announcing only IMAP4rev1 and UIDPLUS: exercises the COPY and polling fallbacks."""
    binary = dovecot_binary()
    require("Dovecot", binary is not None, "no `dovecot` binary (apt-get install dovecot-imapd)")
    assert binary is not None
    instance = DovecotInstance(binary, extra_config="protocol imap {\n  imap_capability = IMAP4rev1 UIDPLUS\n}\n")
    instance.start()
    yield instance
    instance.close()


def test_without_move_mail_is_copied_and_expunged(plain_dovecot: DovecotInstance) -> None:
    server = plain_dovecot.new_account()
    server.append_many([mail(1), mail(2)])
    with MailboxClient(server.mailbox_settings()) as c:
        assert not c.has_idle
        c.select("INBOX")
        first, second = c.uids_after(0)
        c.mark_processed([first], "Processed")
    assert server.fetch_all("Processed") == [mail(1)]
    assert server.uids() == [second]


def test_without_idle_wait_for_mail_polls(plain_dovecot: DovecotInstance) -> None:
    server = plain_dovecot.new_account()
    with MailboxClient(server.mailbox_settings()) as c:
        c.select("INBOX")
        started = time.monotonic()
        assert c.wait_for_mail(0.2) is True
        assert time.monotonic() - started >= 0.2


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[DovecotInstance]:
    """Dovecot with STARTTLS on its plain port and implicit TLS on `tls_port`."""
    binary = dovecot_binary()
    require("Dovecot", binary is not None, "no `dovecot` binary (apt-get install dovecot-imapd)")
    require("openssl", shutil.which("openssl") is not None, "no `openssl` to make a test certificate")
    assert binary is not None
    instance = DovecotInstance(binary, tls=True)
    instance.start()
    yield instance
    instance.close()


@pytest.fixture
def trust_test_cert(tls_dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default context verifies against the CA file OpenSSL is pointed at.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_dovecot.cert_file))


@pytest.mark.parametrize("mode", [TlsMode.SSL, TlsMode.STARTTLS], ids=["ssl", "starttls"])
def test_tls_modes_connect_and_fetch(tls_dovecot: DovecotInstance, trust_test_cert: None, mode: TlsMode) -> None:
    server = tls_dovecot.new_account()
    server.append(mail(1))
    port = tls_dovecot.tls_port if mode is TlsMode.SSL else tls_dovecot.port
    with MailboxClient(server.mailbox_settings(tls=mode, port=port)) as c:
        c.select("INBOX")
        assert [raw for _, raw in c.fetch(c.uids_after(0))] == [mail(1)]


def test_untrusted_certificate_is_refused(tls_dovecot: DovecotInstance) -> None:
    server = tls_dovecot.new_account()
    settings = server.mailbox_settings(tls=TlsMode.SSL, port=tls_dovecot.tls_port)
    with pytest.raises(ServerUnreachable, match="certificate verify failed") as failed:
        MailboxClient(settings, timeout=5).connect()
    assert "\n" not in str(failed.value)


def test_starttls_without_server_support_is_a_clear_error(imap_server: ImapServer) -> None:
    with pytest.raises(ImapError, match="STARTTLS") as failed:
        MailboxClient(imap_server.mailbox_settings(tls=TlsMode.STARTTLS), timeout=5).connect()
    assert "\n" not in str(failed.value)


def test_implicit_tls_against_plain_port_is_server_unreachable(imap_server: ImapServer) -> None:
    with pytest.raises(ServerUnreachable) as failed:
        MailboxClient(imap_server.mailbox_settings(tls=TlsMode.SSL), timeout=5).connect()
    assert "\n" not in str(failed.value)


def test_connect_again_replaces_the_session(imap_server: ImapServer, client: MailboxClient) -> None:
    client.select("INBOX")
    client.connect()
    imap_server.append(mail(1))
    client.select("INBOX")
    assert len(client.uids_after(0)) == 1
