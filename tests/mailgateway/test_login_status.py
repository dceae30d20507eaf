"""Every login's outcome is recorded in mail_login, whatever the auth kind: `helpdesk mailboxes` and the
console's banner show the last success and the last error of password logins too, IMAP and SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.mailauth import DbTokenStore, LoginStatus, statuses
from helpdesk.core.outbox import RetryPolicy
from helpdesk.core.settings import AuthKind, OAuthProvider, OAuthSettings, Settings, SmtpSettings
from helpdesk.mailgateway import oauth
from helpdesk.mailgateway.imap import LoginFailed, MailboxClient
from helpdesk.mailgateway.smtp import SMTP_TOKEN_NAME, send_once
from tests.core.desk import mail, make_desk
from tests.servers.imap import DovecotServer
from tests.servers.oauth import OAuthServer
from tests.servers.smtp import SmtpSink


@pytest.fixture
def factory(sqlite_session_factory: sessionmaker[Session], tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Logins report to the database, as `helpdesk.wiring.build` sets it up."""
    oauth.use_store(DbTokenStore(sqlite_session_factory, Settings(data_dir=tmp_path, database_url="unused")))
    yield sqlite_session_factory
    oauth.use_store(None)


def _status(factory: sessionmaker[Session], name: str) -> LoginStatus:
    with factory() as session:
        return statuses(session)[name]


def test_imap_password_logins_are_recorded(factory: sessionmaker[Session], dovecot: DovecotServer) -> None:
    wrong = dovecot.mailbox_settings(password="not-the-password")
    with pytest.raises(LoginFailed):
        MailboxClient(wrong).connect()
    status = _status(factory, wrong.name)
    assert status.auth_kind == "password" and status.failing
    assert status.last_error is not None and "login as" in status.last_error and "not-the-password" not in status.last_error
    with MailboxClient(dovecot.mailbox_settings()):
        pass
    status = _status(factory, wrong.name)
    assert status.last_success_at is not None and not status.failing


def test_smtp_password_logins_are_recorded(factory: sessionmaker[Session], tmp_path: Path) -> None:
    sink = SmtpSink(password=("help@example.org", "smtp-secret"))
    sink.start()
    try:
        desk = make_desk(factory, tmp_path)
        desk.deliver(mail("first@example.com", "First"))
        settings = SmtpSettings(host=sink.host, port=sink.port, user="help@example.org", password="wrong")
        at_once = RetryPolicy(first_delay=timedelta(0))
        assert send_once(factory, settings, policy=at_once)[0] == 0
        status = _status(factory, SMTP_TOKEN_NAME)
        assert status.auth_kind == "password" and status.failing and "535" in (status.last_error or "")
        settings = SmtpSettings(host=sink.host, port=sink.port, user="help@example.org", password="smtp-secret")
        assert send_once(factory, settings, policy=at_once)[0] == 1
        assert not _status(factory, SMTP_TOKEN_NAME).failing
        assert len(sink.messages) == 1
    finally:
        sink.stop()


def test_an_xoauth2_token_the_server_refuses_is_recorded(
    factory: sessionmaker[Session], oauth_server: OAuthServer, oauth_dovecot: DovecotServer
) -> None:
    """The token endpoint is happy, the IMAP server is not (a token for another mailbox)."""
    oauth_server.add_client("wrong-mailbox-app", "s3cret", username="someone-else")
    settings = oauth_dovecot.mailbox_settings(
        auth=AuthKind.OAUTH2, password="",
        oauth=OAuthSettings(OAuthProvider.GENERIC, "wrong-mailbox-app", "s3cret", token_url=oauth_server.token_url),
    )  # fmt: skip
    with pytest.raises(LoginFailed):
        MailboxClient(settings).connect()
    status = _status(factory, settings.name)
    assert status.auth_kind == "oauth2" and status.failing and "XOAUTH2 login" in (status.last_error or "")
