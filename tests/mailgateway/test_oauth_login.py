"""XOAUTH2 logins to a real Dovecot that checks every token at the local authorization server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from helpdesk.core.settings import AuthKind, OAuthProvider, OAuthSettings
from helpdesk.mailgateway import oauth
from helpdesk.mailgateway.imap import LoginFailed, MailboxClient
from tests.servers import remove_dir, require, running_as_root, service_dir
from tests.servers.imap import DovecotInstance, DovecotServer, dovecot_binary, make_self_signed_cert
from tests.servers.oauth import OAuthServer


@pytest.fixture(autouse=True)
def fresh_token_sources() -> Iterator[None]:
    oauth.use_store(None)
    yield
    oauth.use_store(None)


def _generic(server: OAuthServer, client_id: str) -> OAuthSettings:
    return OAuthSettings(OAuthProvider.GENERIC, client_id, "s3cret", token_url=server.token_url, scopes=("imap",))


def _login(mailbox: DovecotServer, settings: OAuthSettings) -> int:
    """Log in with XOAUTH2 and select INBOX; how many messages it holds."""
    with MailboxClient(mailbox.mailbox_settings(auth=AuthKind.OAUTH2, oauth=settings, password="")) as client:
        return client.select("INBOX").exists


def test_app_token_logs_in_and_is_reused_until_it_nears_expiry(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer
) -> None:
    oauth_server.add_client("imap-app", "s3cret", username=oauth_dovecot.user)
    oauth_dovecot.append(b"Subject: waiting\r\n\r\nhello\r\n")
    oauth_server.expires_in = 2
    settings = _generic(oauth_server, "imap-app")
    assert _login(oauth_dovecot, settings) == 1
    assert _login(oauth_dovecot, settings) == 1
    assert len(oauth_server.issued("imap-app")) == 1  # the second login reused the token
    time.sleep(1.1)  # past half its life: replaced before the server would refuse it
    assert _login(oauth_dovecot, settings) == 1
    assert len(oauth_server.issued("imap-app")) == 2


def test_a_refused_token_is_replaced_once(oauth_server: OAuthServer, oauth_dovecot: DovecotServer) -> None:
    oauth_server.add_client("revoked-app", "s3cret", username=oauth_dovecot.user)
    settings = _generic(oauth_server, "revoked-app")
    assert _login(oauth_dovecot, settings) == 0
    oauth_server.revoke_client("revoked-app")  # still within its lifetime, but the server says no
    assert _login(oauth_dovecot, settings) == 0
    assert [t.revoked for t in oauth_server.issued("revoked-app")] == [True, False]


def test_a_client_whose_secret_stopped_working_fails_in_one_line(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer
) -> None:
    oauth_server.add_client("expired-app", "s3cret", username=oauth_dovecot.user).disabled = True
    with pytest.raises(LoginFailed) as failure:
        _login(oauth_dovecot, _generic(oauth_server, "expired-app"))
    assert "invalid_client" in str(failure.value) and "\n" not in str(failure.value)
    assert "s3cret" not in str(failure.value)


def test_a_token_for_another_mailbox_is_refused(oauth_server: OAuthServer, oauth_dovecot: DovecotServer) -> None:
    oauth_server.add_client("other-app", "s3cret", username="helpdesk4999")
    with pytest.raises(LoginFailed, match="XOAUTH2 login as .* was refused"):
        _login(oauth_dovecot, _generic(oauth_server, "other-app"))
    assert len(oauth_server.issued("other-app")) == 2  # refused, fetched anew once, refused again


@dataclass
class LocalAuthority:
    """An HTTPS authorization server (msal only talks to https authorities) and a Dovecot that asks it."""

    server: OAuthServer
    dovecot: DovecotInstance
    cert: Path
    dir: Path

    def microsoft(self, client_id: str, secret: str = "", **extra: Any) -> OAuthSettings:
        return OAuthSettings(
            OAuthProvider.MICROSOFT, client_id, secret, tenant="contoso", authority=self.server.authority("contoso"),
            scopes=("https://outlook.office365.com/.default",), **extra,
        )  # fmt: skip


@pytest.fixture(scope="module")
def tls_authority() -> Iterator[LocalAuthority]:
    binary = dovecot_binary()
    require("Dovecot", binary is not None, "no `dovecot` binary (apt-get install dovecot-imapd)")
    assert binary is not None
    where = service_dir("helpdesk-oauth-tls-", "nobody" if running_as_root() else None)  # Dovecot's auth reads it
    cert, key = where / "cert.pem", where / "key.pem"
    make_self_signed_cert(cert, key)
    cert.chmod(0o644)
    server = OAuthServer(cert=(cert, key))
    server.start()
    instance = DovecotInstance(binary, introspection_url=server.introspection_url(with_credentials=True), introspection_ca=cert)
    try:
        instance.start()
        yield LocalAuthority(server, instance, cert, where)
    finally:
        instance.close()
        server.stop()
        remove_dir(where)


@pytest.fixture
def authority(tls_authority: LocalAuthority, monkeypatch: pytest.MonkeyPatch) -> LocalAuthority:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_authority.cert))  # msal's requests session trusts it
    return tls_authority


def test_microsoft_app_only_through_msal_against_a_local_authority(authority: LocalAuthority) -> None:
    server, mailbox = authority.server, authority.dovecot.new_account()
    server.add_client("ms-app", "s3cret", username=mailbox.user)  # a shared mailbox: the app's token
    settings = authority.microsoft("ms-app", "s3cret")
    assert _login(mailbox, settings) == 0
    [token] = server.issued("ms-app")
    assert token.scope == "https://outlook.office365.com/.default"
    server.revoke_client("ms-app")  # msal still holds it in its cache: the refusal must clear that too
    assert _login(mailbox, settings) == 0
    assert len(server.issued("ms-app")) == 2


# -- Google: a service account acting for the mailbox user (domain-wide delegation) ----------------
# Its JSON key signs an RFC 7523 jwt-bearer assertion (`sub` = the mailbox user) that the local server
# checks against the public key registered for the account.

ACCOUNT = "reader-{}@corp-project.iam.gserviceaccount.com"  # one per test: the server lives for the session


def _key_file(path: Path, email: str) -> bytes:
    """A service-account key file as Google's console hands it out; returns the public key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "corp-project", "private_key_id": "k1",
        "private_key": pem, "client_email": email, "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))  # fmt: skip
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _service_account(server: OAuthServer, key_file: Path, user: str) -> OAuthSettings:
    return OAuthSettings(
        OAuthProvider.GOOGLE, "", token_url=server.token_url, scopes=("https://mail.google.com/",),
        service_account_file=key_file, subject=user,
    )  # fmt: skip


def _registered_account(server: OAuthServer, key_file: Path, name: str, *, acts_for: str) -> str:
    """A service account with a key file at `key_file`, registered with the server; its name."""
    account = ACCOUNT.format(name)
    server.add_service_account(account, _key_file(key_file, account), delegated_users=(acts_for,))
    return account


def test_service_account_logs_in_as_the_delegated_user(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer, tmp_path: Path
) -> None:
    account = _registered_account(oauth_server, tmp_path / "sa.json", "ok", acts_for=oauth_dovecot.user)
    oauth_dovecot.append(b"Subject: waiting\r\n\r\nhello\r\n")
    assert _login(oauth_dovecot, _service_account(oauth_server, tmp_path / "sa.json", oauth_dovecot.user)) == 1
    [token] = oauth_server.issued(account)
    assert token.username == oauth_dovecot.user  # the token is the delegated user's, not the account's


def test_a_key_not_registered_is_refused_in_one_line(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer, tmp_path: Path
) -> None:
    account = _registered_account(oauth_server, tmp_path / "registered.json", "rotated", acts_for=oauth_dovecot.user)
    _key_file(tmp_path / "stranger.json", account)  # the same account, a key not (or no longer) registered
    with pytest.raises(LoginFailed) as failure:
        _login(oauth_dovecot, _service_account(oauth_server, tmp_path / "stranger.json", oauth_dovecot.user))
    text = str(failure.value)
    assert "invalid_grant" in text and f"service account {account}" in text
    assert "\n" not in text and "PRIVATE KEY" not in text
    assert oauth_server.issued(account) == []


def test_a_user_outside_the_delegation_is_refused(
    oauth_server: OAuthServer, oauth_dovecot: DovecotServer, tmp_path: Path
) -> None:
    _registered_account(oauth_server, tmp_path / "sa.json", "narrow", acts_for="someone-else")
    with pytest.raises(LoginFailed, match="no OAuth2 token .*invalid_client"):
        _login(oauth_dovecot, _service_account(oauth_server, tmp_path / "sa.json", oauth_dovecot.user))


# -- Microsoft: a certificate credential (RFC 7523 private_key_jwt, signed by msal) ---------------


def _app_certificate(where: Path, name: str) -> tuple[Path, Path]:
    cert, key = where / f"{name}.crt", where / f"{name}.key"
    make_self_signed_cert(cert, key)
    return cert, key


def test_microsoft_certificate_credential_logs_in(authority: LocalAuthority, tmp_path: Path) -> None:
    server, mailbox = authority.server, authority.dovecot.new_account()
    cert, key = _app_certificate(tmp_path, "app")
    server.add_certificate_client("ms-cert-app", cert.read_bytes(), username=mailbox.user)
    mailbox.append(b"Subject: waiting\r\n\r\nhello\r\n")
    settings = authority.microsoft("ms-cert-app", certificate_file=cert, private_key_file=key)
    assert _login(mailbox, settings) == 1
    assert len(server.issued("ms-cert-app")) == 1


def test_a_certificate_not_registered_is_refused_in_one_line(authority: LocalAuthority, tmp_path: Path) -> None:
    server, mailbox = authority.server, authority.dovecot.new_account()
    registered, _ = _app_certificate(tmp_path, "registered")
    server.add_certificate_client("ms-cert-rotated", registered.read_bytes(), username=mailbox.user)
    cert, key = _app_certificate(tmp_path, "other")  # a certificate the app registration does not know
    with pytest.raises(LoginFailed) as failure:
        _login(mailbox, authority.microsoft("ms-cert-rotated", certificate_file=cert, private_key_file=key))
    text = str(failure.value)
    assert "invalid_client: the client assertion's signature" in text and "\n" not in text
    assert "PRIVATE KEY" not in text and server.issued("ms-cert-rotated") == []


# -- Microsoft delegated: msal turns the refresh token Connect mailbox stored into access tokens -----


def _sign_in(server: OAuthServer, client_id: str, secret: str, scopes: tuple[str, ...]) -> str:
    """The admin's sign-in as Connect mailbox does it (authorization code with PKCE); the refresh token."""
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session

    verifier = generate_token(48)
    with OAuth2Session(client_id, secret, scope=" ".join((*scopes, "offline_access")),
                       redirect_uri=REDIRECT, code_challenge_method="S256") as session:  # fmt: skip
        url, _state = session.create_authorization_url(f"{server.url}/authorize", code_verifier=verifier)
        back = session.get(url, allow_redirects=False, withhold_token=True).headers["Location"]
        token = session.fetch_token(server.token_url, authorization_response=back, code_verifier=verifier)
    return str(token["refresh_token"])


REDIRECT = "https://helpdesk.example.org/mailboxes/callback"


def test_microsoft_delegated_refresh_through_msal_and_revocation_shows_in_mailboxes(
    authority: LocalAuthority, tmp_path: Path
) -> None:
    from helpdesk.core.db import transaction
    from helpdesk.core.mailauth import connect_mailbox
    from helpdesk.config import load
    from helpdesk.wiring import build
    from tests.e2e.helpers import helpdesk_env, run, run_json

    server, mailbox = authority.server, authority.dovecot.new_account()
    server.add_client("ms-delegated", "s3cret", username="", redirect_uris=(REDIRECT,))
    server.login_user = mailbox.user  # who signs in at the authority
    env = helpdesk_env(
        tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.db'}", mailbox, REQUESTS_CA_BUNDLE=str(authority.cert),
        HELPDESK_IMAP_PASSWORD="", HELPDESK_IMAP_AUTH="oauth2", HELPDESK_IMAP_OAUTH_PROVIDER="microsoft",
        HELPDESK_IMAP_OAUTH_FLOW="delegated", HELPDESK_IMAP_OAUTH_AUTHORITY=authority.server.authority("contoso"),
        HELPDESK_IMAP_OAUTH_CLIENT_ID="ms-delegated", HELPDESK_IMAP_OAUTH_CLIENT_SECRET="s3cret",
    )  # fmt: skip
    run(env, "init")
    app = build(load(env))  # the store XOAUTH2 logins keep refresh tokens and statuses in
    try:
        [settings] = app.settings.mailboxes
        assert settings.oauth is not None
        refresh = _sign_in(server, "ms-delegated", "s3cret", settings.oauth.scopes)
        with transaction(app.factory) as session:
            connect_mailbox(session, app.settings, settings.name, refresh, actor="root@example.org")
        mailbox.append(b"Subject: waiting\r\n\r\nhello\r\n")
        with MailboxClient(settings) as client:
            assert client.select("INBOX").exists == 1
        [row] = run_json(env, "mailboxes", "--json")
        assert row["last_success"] and not row["failing"]
        first, rotated = server.issued("ms-delegated")[-2:]
        assert first.refresh_token == refresh and first.revoked  # msal used it, and it was rotated
        assert rotated.username == mailbox.user

        server.revoke_client("ms-delegated")  # consent withdrawn: the stored refresh token is dead
        with pytest.raises(LoginFailed, match="invalid_grant"):
            MailboxClient(settings).connect()
        shown = run(env, "mailboxes", check=False)
        assert shown.returncode == 1 and b"FAILING" in shown.stdout and b"invalid_grant" in shown.stdout
    finally:
        app.engine.dispose()


# -- Microsoft shared mailbox: the login names the mailbox, the token is the app's -----------------


def test_shared_mailbox_logs_in_as_the_mailbox_with_the_apps_own_token(authority: LocalAuthority) -> None:
    server = authority.server
    shared, unshared = authority.dovecot.new_account(), authority.dovecot.new_account()
    # The app's access covers the shared mailbox: the server's introspection names it as the token's user.
    server.add_client("ms-shared-app", "s3cret", username=shared.user)
    shared.append(b"Subject: to the shared mailbox\r\n\r\nhello\r\n")
    settings = authority.microsoft("ms-shared-app", "s3cret")
    assert _login(shared, settings) == 1  # XOAUTH2 user= the configured mailbox user, read its INBOX
    [token] = server.issued("ms-shared-app")
    assert token.refresh_token is None and server.introspect(token.access_token)["client_id"] == "ms-shared-app"
    assert server.introspect(token.access_token)["username"] == shared.user
    with pytest.raises(LoginFailed, match=f"XOAUTH2 login as '{unshared.user}' .* was refused"):
        _login(unshared, settings)  # a mailbox the app was not given: the same kind of token opens nothing
