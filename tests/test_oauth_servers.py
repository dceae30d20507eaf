"""The OAuth2 test servers: the authorization server's grants, and Dovecot and the SMTP sink checking its tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import pytest
import requests
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers.imap import DovecotServer
from tests.servers.oauth import RESOURCE_CLIENT, OAuthServer
from tests.servers.smtp import SmtpSink

REDIRECT = "http://127.0.0.1:9/callback"


def _client_token(server: OAuthServer, client: str, secret: str = "s3cret") -> str:
    reply = requests.post(server.token_url, data={"grant_type": "client_credentials"}, auth=(client, secret), timeout=10)
    reply.raise_for_status()
    return str(reply.json()["access_token"])


def _imap_login(server: DovecotServer, user: str, token: str) -> bool:
    conn = IMAPClient(server.host, server.port, ssl=False, timeout=10)
    try:
        conn.oauth2_login(user, token)
    except LoginError:
        return False
    finally:
        conn.shutdown()
    return True


def test_dovecot_takes_a_live_token_and_refuses_expired_revoked_and_foreign_ones(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer
) -> None:
    oauth_server.add_client("dove-app", "s3cret", username=oauth_dovecot.user)
    oauth_server.expires_in = 2
    token = _client_token(oauth_server, "dove-app")
    assert _imap_login(oauth_dovecot, oauth_dovecot.user, token)
    assert not _imap_login(oauth_dovecot, "helpdesk4999", token)  # a token for another mailbox
    with oauth_dovecot.client() as conn:  # the password login still works beside it
        assert conn.select_folder("INBOX")[b"EXISTS"] == 0
    time.sleep(2.1)
    assert not _imap_login(oauth_dovecot, oauth_dovecot.user, token)
    fresh = _client_token(oauth_server, "dove-app")
    assert _imap_login(oauth_dovecot, oauth_dovecot.user, fresh)
    oauth_server.revoke_client("dove-app")
    assert not _imap_login(oauth_dovecot, oauth_dovecot.user, fresh)


def test_authorization_code_with_pkce_then_refresh_and_revocation(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("code-app", "s3cret", username="", redirect_uris=(REDIRECT,))
    oauth_server.login_user = "admin-signed-in"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": "code-app", "redirect_uri": REDIRECT, "state": "st"}
    no_pkce = requests.get(f"{oauth_server.url}/authorize", params=query, allow_redirects=False, timeout=10)
    assert "error=invalid_request" in no_pkce.headers["Location"]
    query |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    reply = requests.get(f"{oauth_server.url}/authorize", params=query, allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(reply.headers["Location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    wrong = requests.post(oauth_server.token_url, data=form | {"code_verifier": "x" * 43}, auth=("code-app", "s3cret"))
    assert wrong.status_code == 400
    tokens = requests.post(oauth_server.token_url, data=form | {"code_verifier": verifier}, auth=("code-app", "s3cret"))
    assert tokens.status_code == 200, tokens.text
    refresh = tokens.json()["refresh_token"]
    introspected = requests.post(
        f"{oauth_server.url}/introspect", data={"token": tokens.json()["access_token"]}, auth=RESOURCE_CLIENT
    ).json()
    assert introspected["active"] is True and introspected["username"] == "admin-signed-in"
    again = requests.post(
        oauth_server.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh}, auth=("code-app", "s3cret")
    )
    assert again.status_code == 200 and again.json()["refresh_token"] != refresh
    revoked = requests.post(
        f"{oauth_server.url}/revoke", data={"token": again.json()["refresh_token"]}, auth=("code-app", "s3cret")
    )
    assert revoked.status_code == 200
    after = requests.post(
        oauth_server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": again.json()["refresh_token"]},
        auth=("code-app", "s3cret"),
    )
    assert after.json()["error"] == "invalid_grant"


def test_a_disabled_client_secret_gets_no_token(oauth_server: OAuthServer) -> None:
    client = oauth_server.add_client("expiring-app", "s3cret", username="x")
    client.disabled = True
    reply = requests.post(oauth_server.token_url, data={"grant_type": "client_credentials"}, auth=("expiring-app", "s3cret"))
    assert reply.json()["error"] == "invalid_client"


def _send(sink: SmtpSink, user: str, token: str) -> None:
    async def token_source() -> str:
        return token

    async def run() -> None:
        smtp = aiosmtplib.SMTP(
            hostname=sink.host, port=sink.port, username=user, oauth_token_generator=token_source, start_tls=False
        )
        await smtp.connect()
        try:
            await smtp.sendmail("help@example.org", ["user@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
        finally:
            smtp.close()

    asyncio.run(run())


def test_smtp_sink_takes_mail_only_with_a_live_token(oauth_server: OAuthServer, oauth_smtp_sink: SmtpSink) -> None:
    oauth_server.add_client("smtp-app", "s3cret", username="help@example.org")
    token = _client_token(oauth_server, "smtp-app")
    _send(oauth_smtp_sink, "help@example.org", token)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        _send(oauth_smtp_sink, "someone@example.org", token)
    oauth_server.revoke_client("smtp-app")
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        _send(oauth_smtp_sink, "help@example.org", token)
    assert len(oauth_smtp_sink.messages) == 1 and oauth_smtp_sink.logins == ["help@example.org"]
