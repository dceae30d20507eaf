"""Connect mailbox: an admin signs in at the authorization server (code + PKCE) in Chromium; the refresh
token is stored sealed, and the delegated mailbox then logs in to Dovecot with tokens refreshed from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.mailauth import DbTokenStore
from helpdesk.core.models import AuditEntry, MailLogin, Role
from helpdesk.core.settings import AuthKind, OAuthFlow, OAuthProvider, OAuthSettings, Settings
from helpdesk.mailgateway import oauth
from helpdesk.mailgateway.imap import LoginFailed, MailboxClient
from tests.servers.imap import DovecotServer
from tests.servers.oauth import OAuthServer
from tests.web.browser import LiveServer, log_in
from helpdesk.web import create_app

MAILBOX = "hr"


@pytest.fixture
def settings(tmp_path: Path, oauth_server: OAuthServer, oauth_dovecot: DovecotServer) -> Settings:
    delegated = OAuthSettings(
        OAuthProvider.GENERIC, "console-app", "s3cret", flow=OAuthFlow.DELEGATED, token_url=oauth_server.token_url,
        authorize_url=f"{oauth_server.url}/authorize", scopes=("imap",),
    )  # fmt: skip
    mailbox = oauth_dovecot.mailbox_settings(name=MAILBOX, auth=AuthKind.OAUTH2, oauth=delegated, password="")
    return Settings(
        data_dir=tmp_path, database_url="unused", secret_key="test-secret", mailboxes=(mailbox,)
    )


@pytest.fixture
def app(settings: Settings, factory: sessionmaker[Session]) -> Iterator[Flask]:
    oauth.use_store(DbTokenStore(factory, settings))
    yield create_app(settings, factory, testing=True)
    oauth.use_store(None)


def test_admin_connects_a_mailbox_which_then_logs_in_with_refreshed_tokens(
    page, live: LiveServer, settings: Settings, factory: sessionmaker[Session], oauth_server: OAuthServer,
    oauth_dovecot: DovecotServer,
) -> None:  # type: ignore[no-untyped-def]
    oauth_server.add_client("console-app", "s3cret", username="", redirect_uris=(f"{live.url}/admin/mailboxes/callback",))
    oauth_server.login_user = oauth_dovecot.user  # who signs in at the authorization server
    oauth_server.expires_in = 2
    [mailbox] = settings.mailboxes
    with pytest.raises(Exception, match="not connected yet"):  # before: no refresh token, a clear reason
        MailboxClient(mailbox).connect()
    log_in(page, live, Role.ADMIN)
    page.goto(f"{live.url}/admin/mailboxes")
    page.click("button:has-text('Connect mailbox')")
    page.wait_for_selector("text=connected; the helpdesk logs in with it")
    assert "Reconnect" in page.inner_text("table")
    content = page.content()
    [code_grant] = oauth_server.issued("console-app")
    assert code_grant.refresh_token and code_grant.refresh_token not in content
    with factory() as session:
        row = session.get(MailLogin, MAILBOX)
        assert row is not None and row.refresh_token and code_grant.refresh_token not in row.refresh_token
        actions = list(session.scalars(select(AuditEntry.action)))
    assert "mailbox.connect" in actions
    with MailboxClient(mailbox) as client:  # a refresh-token grant gives the login's access token
        assert client.select("INBOX").exists == 0
    assert len(oauth_server.issued("console-app")) == 2

    # Consent revoked: the refresh token is refused, the admin sees why on every page and reconnects.
    oauth_server.revoke_client("console-app")
    with pytest.raises(LoginFailed, match="invalid_grant"):
        MailboxClient(mailbox).connect()
    page.goto(f"{live.url}/tickets")
    assert "invalid_grant" in page.inner_text(".login-failing")
    page.goto(f"{live.url}/admin/mailboxes")
    page.click("button:has-text('Reconnect')")
    page.wait_for_selector("text=connected; the helpdesk logs in with it")
    with MailboxClient(mailbox) as client:
        assert client.select("INBOX").exists == 0
    page.goto(f"{live.url}/tickets")
    assert page.locator(".login-failing").count() == 0
