"""Sending the outbox with AUTH XOAUTH2 to an aiosmtpd that checks each token at the local authorization server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import OutboxStatus
from helpdesk.core.outbox import RetryPolicy
from helpdesk.core.settings import AuthKind, OAuthProvider, OAuthSettings, SmtpSettings
from helpdesk.mailgateway import oauth
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import mail, make_desk
from tests.servers.oauth import OAuthServer
from tests.servers.smtp import SmtpSink

AT_ONCE = RetryPolicy(first_delay=timedelta(0))


@pytest.fixture(autouse=True)
def fresh_token_sources() -> Iterator[None]:
    oauth.use_store(None)
    yield
    oauth.use_store(None)


def _settings(server: OAuthServer, sink: SmtpSink, client_id: str) -> SmtpSettings:
    return SmtpSettings(
        host=sink.host,
        port=sink.port,
        user="help@example.org",
        auth=AuthKind.OAUTH2,
        oauth=OAuthSettings(OAuthProvider.GENERIC, client_id, "s3cret", token_url=server.token_url),
    )


def test_outbox_goes_out_with_xoauth2_and_a_revoked_token_is_replaced_once(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path, oauth_server: OAuthServer, oauth_smtp_sink: SmtpSink
) -> None:
    oauth_server.add_client("send-app", "s3cret", username="help@example.org")
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.deliver(mail("first@example.com", "First"))
    settings = _settings(oauth_server, oauth_smtp_sink, "send-app")
    assert send_once(desk.factory, settings, policy=AT_ONCE) == (1, 0)
    oauth_server.revoke_client("send-app")
    desk.deliver(mail("second@example.com", "Second"))
    assert send_once(desk.factory, settings, policy=AT_ONCE) == (1, 0)
    assert len(oauth_server.issued("send-app")) == 2
    assert [m.rcpt_tos for m in oauth_smtp_sink.messages] == [["first@example.com"], ["second@example.com"]]


def test_no_token_leaves_the_mail_waiting_with_the_reason(
    sqlite_session_factory: sessionmaker[Session], tmp_path: Path, oauth_server: OAuthServer, oauth_smtp_sink: SmtpSink
) -> None:
    oauth_server.add_client("dead-app", "s3cret", username="help@example.org").disabled = True
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.deliver(mail())
    assert send_once(desk.factory, _settings(oauth_server, oauth_smtp_sink, "dead-app"), policy=AT_ONCE) == (0, 1)
    [row] = desk.outbox("acknowledgement")
    assert row.status is OutboxStatus.PENDING and "invalid_client" in (row.last_error or "")
    assert "s3cret" not in (row.last_error or "") and oauth_smtp_sink.messages == []
