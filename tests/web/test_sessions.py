"""Console sessions live in the database: logging out, a new password or a new role ends them everywhere,
and API tokens end with a role change and can be rotated."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import audit
from helpdesk.core.db import transaction
from helpdesk.core.models import ConsoleSession, Contact, Role
from helpdesk.core.settings import Settings
from helpdesk.core.users import issue_api_token, user_for_token
from tests.e2e.helpers import helpdesk_env, run
from tests.web.conftest import STAFF, csrf_token, login
from helpdesk.web import create_app

COOKIE = "helpdesk_session"


def _copy_of(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def _with_cookie(app: Flask, value: str) -> FlaskClient:
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def _sent_to_login(client: FlaskClient) -> bool:
    response = client.get("/tickets")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _user_id(factory: sessionmaker[Session], role: Role) -> int:
    with factory() as session:
        return session.scalars(select(Contact.id).where(Contact.email == STAFF[role])).one()


def _admin_posts(app: Flask, path: str, **form: str) -> str:
    admin = login(app.test_client(), Role.ADMIN)
    response = admin.post(path, data={"csrf_token": csrf_token(admin, "/admin/users"), **form})
    assert response.status_code in (200, 302), response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_copied_cookie_stops_working_after_logout(app: Flask) -> None:
    agent = login(app.test_client(), Role.AGENT)
    copied = _copy_of(agent)
    assert not _sent_to_login(_with_cookie(app, copied))
    response = agent.post("/logout", data={"csrf_token": csrf_token(agent, "/tickets")})
    assert response.headers["Location"].startswith("/login")
    assert _sent_to_login(_with_cookie(app, copied))


def test_logout_in_one_console_process_ends_the_session_in_another(
    app: Flask, settings: Settings, factory: sessionmaker[Session]
) -> None:
    other_process = create_app(settings, factory, testing=True)  # same database and secret key
    agent = login(app.test_client(), Role.AGENT)
    copied = _copy_of(agent)
    assert not _sent_to_login(_with_cookie(other_process, copied))
    agent.post("/logout", data={"csrf_token": csrf_token(agent, "/tickets")})
    assert _sent_to_login(_with_cookie(other_process, copied))


def test_a_password_change_on_the_users_page_ends_the_copied_session(app: Flask, factory) -> None:
    copied = _copy_of(login(app.test_client(), Role.AGENT))
    _admin_posts(app, f"/admin/users/{_user_id(factory, Role.AGENT)}/password", password="another password")
    assert _sent_to_login(_with_cookie(app, copied))


def test_a_role_change_ends_the_sessions_and_the_api_token(app: Flask, factory) -> None:
    copied = _copy_of(login(app.test_client(), Role.AGENT))
    with transaction(factory) as session:
        token = issue_api_token(session, session.get(Contact, _user_id(factory, Role.AGENT)))
    assert app.test_client().get("/api/tickets", headers=_bearer(token)).status_code == 200
    # approver may still use /tickets: only the server-side end of the session keeps the old cookie out
    _admin_posts(app, f"/admin/users/{_user_id(factory, Role.AGENT)}/role", role="approver")
    assert _sent_to_login(_with_cookie(app, copied))
    assert app.test_client().get("/api/tickets", headers=_bearer(token)).status_code == 401
    with factory() as session:
        actions = [e.action for e in audit.history(session, "user", _user_id(factory, Role.AGENT))]
    assert "user.sessions_ended" in actions and "user.token_revoked" in actions


def test_rotating_a_token_on_the_users_page_gives_a_new_one_and_the_old_one_stops(app: Flask, factory) -> None:
    agent_id = _user_id(factory, Role.AGENT)
    with transaction(factory) as session:
        old = issue_api_token(session, session.get(Contact, agent_id))
    page = _admin_posts(app, f"/admin/users/{agent_id}/token", action="issue")
    new = page.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert new.startswith("hd_") and new != old
    api = app.test_client()
    assert api.get("/api/tickets", headers=_bearer(old)).status_code == 401
    assert api.get("/api/tickets", headers=_bearer(new)).status_code == 200
    with factory() as session:
        assert [e.action for e in audit.history(session, "user", agent_id)][-1] == "user.token_rotated"


def test_rotating_a_token_from_the_command_line(tmp_path: Path) -> None:
    from helpdesk.core import db

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = helpdesk_env(tmp_path / "data", url)
    run(env, "user", "add", "bot@example.org", "--role", "agent", "--password-stdin", input=b"long enough\n")
    first = run(env, "user", "token", "bot@example.org").stdout.decode().strip()
    second = run(env, "user", "token", "bot@example.org").stdout.decode().strip()
    assert first.startswith("hd_") and second.startswith("hd_") and first != second
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session:
            assert user_for_token(session, first) is None
            bot = user_for_token(session, second)
            assert bot is not None and bot.email == "bot@example.org"
            actions = [e.action for e in audit.history(session, "user", bot.id)]
            assert actions[-2:] == ["user.token", "user.token_rotated"]
    finally:
        engine.dispose()
    run(env, "user", "token", "bot@example.org", "--revoke")
    with db.make_sessionmaker(engine)() as session:
        assert user_for_token(session, second) is None
    engine.dispose()
    missing = run(env, "user", "token", "nobody@example.org", check=False)
    assert missing.returncode == 1
    assert missing.stderr.decode().splitlines() == ["helpdesk user token: no console user nobody@example.org"]


def test_in_chromium_a_cookie_copied_before_logout_opens_only_the_login_page(browser, page, live) -> None:  # type: ignore[no-untyped-def]
    from tests.web.browser import log_in

    log_in(page, live, Role.AGENT)
    copied = page.context.cookies()
    assert any(c["name"] == COOKIE for c in copied)
    page.click("text=Log out")
    page.wait_for_selector("form input[name=password]")
    thief = browser.new_context()
    try:
        thief.add_cookies(copied)
        stolen = thief.new_page()
        stolen.goto(f"{live.url}/tickets")
        assert "/login" in stolen.url
        assert stolen.locator("form input[name=password]").count() == 1
    finally:
        thief.close()


def test_user_add_with_a_new_password_ends_the_sessions_of_an_existing_user(app: Flask, factory) -> None:
    from helpdesk.core.users import create_user

    copied = _copy_of(login(app.test_client(), Role.AGENT))
    with transaction(factory) as session:
        create_user(session, STAFF[Role.AGENT], Role.AGENT, "a fresh password", actor="cli:root")
    assert _sent_to_login(_with_cookie(app, copied))


def test_a_session_ends_after_its_lifetime_whatever_the_cookie_says(factory) -> None:
    from datetime import timedelta

    from helpdesk.core.models import utcnow
    from helpdesk.core.users import open_session, session_user

    lifetime = timedelta(hours=12)
    with transaction(factory) as session:
        user = session.get(Contact, _user_id(factory, Role.AGENT))
        sid = open_session(session, user, lifetime=lifetime)
    with transaction(factory) as session:
        assert session_user(session, sid, lifetime=lifetime, now=utcnow() + timedelta(hours=11)) is not None
        assert session_user(session, sid, lifetime=lifetime, now=utcnow() + timedelta(hours=13)) is None
        # the next login clears it out of the table
        session.execute(update(ConsoleSession).values(created_at=utcnow() - timedelta(hours=13)))
        open_session(session, user, lifetime=lifetime)
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 1
