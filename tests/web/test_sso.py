"""Single sign-on with OpenID Connect, in headless Chromium against a local provider (tests/servers/oidc.py):
the role comes from the provider's groups at every sign-in, local passwords can be turned off, and an
id_token that is forged, unsigned or made for another sign-in is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import AuditEntry, ConsoleSession, Contact, Role
from helpdesk.core.settings import OidcSettings, Settings
from tests.servers.oidc import KEY_ID, OidcServer
from tests.web.browser import LiveServer, screenshot
from tests.web.conftest import PASSWORD, STAFF

ROLES = (("admin", ("helpdesk-admins",)), ("agent", ("helpdesk-agents",)), ("approver", ("security",)))
DANA = "dana@example.org"


@pytest.fixture
def provider() -> Iterator[OidcServer]:
    server = OidcServer()
    server.start()
    server.add_user("dana", "Dana@Example.org", ["staff", "helpdesk-agents"])
    server.login_user = "dana"
    yield server
    server.stop()


@pytest.fixture
def local_login() -> bool:
    return True


@pytest.fixture
def settings(tmp_path: Path, provider: OidcServer, local_login: bool) -> Settings:
    oidc = OidcSettings(issuer=provider.issuer, client_id="helpdesk-console", client_secret="console-secret",
                        roles=ROLES, name="Test IdP")
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}",
                    secret_key="test-secret", oidc=oidc, local_login=local_login)


@pytest.fixture
def console(live: LiveServer, provider: OidcServer) -> LiveServer:
    provider.add_console(f"{live.url}/login/sso/callback")
    return live


def _sign_in(page, console: LiveServer) -> int:  # type: ignore[no-untyped-def]
    """Through the login page and the provider; the HTTP status of the page it ends on."""
    page.goto(f"{console.url}/login")
    with page.expect_response(lambda r: "/login/sso/callback" in r.url) as landed:
        page.click("text=Sign in with Test IdP")
    page.wait_for_load_state()
    status: int = landed.value.status
    return status


def _user(factory: sessionmaker[Session], email: str) -> Contact | None:
    with factory() as session:
        return session.scalars(select(Contact).where(Contact.email == email)).first()


def _audit(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with factory() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_sign_in_creates_the_user_with_the_role_of_their_group(
    page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    assert _sign_in(page, console) == 302
    page.wait_for_selector("header.top nav")
    assert "Queue" in page.inner_text("header.top nav") and "Users" not in page.inner_text("header.top nav")
    user = _user(factory, DANA)  # matched and kept by the verified email, in lower case
    assert user is not None and user.role is Role.AGENT and user.password_hash is None
    [created] = _audit(factory, "user.create")[-1:]
    assert created.actor == "sso:Test IdP" and created.after == {"email": DANA, "role": "agent"}

    # Moved to the admins' group at the provider: the next sign-in makes an admin of her, audited.
    provider.users["dana"]["groups"] = ["helpdesk-admins", "helpdesk-agents"]
    page.click("header.top button:has-text('Log out')")
    assert _sign_in(page, console) == 302
    page.wait_for_selector("header.top nav >> text=Users")
    screenshot(page, "sso-admin")
    assert _user(factory, DANA).role is Role.ADMIN  # type: ignore[union-attr]
    [changed] = _audit(factory, "user.role")
    assert changed.actor == "sso:Test IdP" and changed.before == {"role": "agent"} and changed.after == {"role": "admin"}


def test_group_removed_refuses_the_next_sign_in_and_ends_the_other_sessions(
    browser, page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    assert _sign_in(page, console) == 302
    page.wait_for_selector("header.top nav")

    provider.users["dana"]["groups"] = ["staff"]
    other = browser.new_context().new_page()
    assert _sign_in(other, console) == 403
    assert "Sign-in refused" in other.inner_text("h1")
    assert "none of the groups that give a helpdesk role" in other.inner_text(".refused-reason")
    screenshot(other, "sso-refused")
    other.context.close()

    assert _user(factory, DANA).role is Role.USER  # type: ignore[union-attr]
    assert len(_audit(factory, "user.sso_refused")) == 1
    page.goto(f"{console.url}/tickets")  # the session she opened while in the group is over
    assert page.url.startswith(f"{console.url}/login")
    with factory() as session:
        assert all(s.revoked_at is not None for s in session.scalars(select(ConsoleSession)))


@pytest.mark.parametrize("local_login", [False])
def test_local_login_off_hides_the_password_form_and_refuses_a_right_password(
    page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    page.goto(f"{console.url}/login")
    assert page.locator("input[name=password]").count() == 0
    assert page.locator("text=Sign in with Test IdP").count() == 1

    # The admin who has a password signs on as the provider's user with the same (verified) address.
    provider.add_user("boss", STAFF[Role.ADMIN], ["helpdesk-admins"])
    provider.login_user = "boss"
    assert _sign_in(page, console) == 302
    page.wait_for_selector("header.top nav >> text=Users")
    token = page.get_attribute("header.top input[name=csrf_token]", "value")
    # Even her right password, with a valid CSRF token, is refused.
    response = page.request.post(f"{console.url}/login", form={
        "email": STAFF[Role.ADMIN], "password": PASSWORD, "csrf_token": token or "",
    }, max_redirects=0)
    assert response.status == 403 and "Password logins are turned off" in response.text()


def _refused_without_session(page, console: LiveServer, factory: sessionmaker[Session]) -> None:  # type: ignore[no-untyped-def]
    assert _sign_in(page, console) == 400
    assert "could not be verified" in page.inner_text(".refused-reason")
    page.goto(f"{console.url}/tickets")
    assert page.url.startswith(f"{console.url}/login")
    assert _user(factory, DANA) is None
    with factory() as session:
        assert session.scalars(select(ConsoleSession)).first() is None


def test_id_token_signed_with_another_key_is_refused(
    page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    provider.signing_key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})  # same key id, not the published key
    _refused_without_session(page, console, factory)


def test_unsigned_id_token_is_refused_even_when_the_provider_offers_none(
    page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    provider.algorithm = "none"
    provider.advertised = ["RS256", "none"]
    _refused_without_session(page, console, factory)


def test_id_token_of_another_sign_in_is_refused(
    page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    provider.nonce_override = "a-nonce-from-another-sign-in"
    _refused_without_session(page, console, factory)


def test_unverified_email_is_refused(
    page, console: LiveServer, provider: OidcServer, factory: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    provider.add_user("dana", DANA, ["helpdesk-admins"], email_verified=False)
    assert _sign_in(page, console) == 403
    assert "no verified email claim" in page.inner_text(".refused-reason")
    assert _user(factory, DANA) is None
