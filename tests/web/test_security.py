"""Nobody gets in who should not: the whole URL map, CSRF, throttled logins, cookies, headers."""

from __future__ import annotations

import html
from dataclasses import replace
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.attachments import AttachmentStore
from helpdesk.core.db import transaction
from helpdesk.core.models import Attachment, Contact, Message, Role
from helpdesk.core.settings import Settings
from helpdesk.core.users import issue_api_token
from tests.web.conftest import PASSWORD, STAFF, csrf_token, login, make_ticket
from helpdesk.web import create_app
from helpdesk.web.security import allowed_roles

PUBLIC = {"static", "auth.login", "sso.start", "sso.callback", "ops.healthz", "ops.readyz", "ops.metrics",
          "portal.start", "portal.confirm", "portal.sign_in", "portal_api.link", "portal_api.session_open",
          "csat.rate", "csat.comment"}  # the satisfaction links: their signed token authorises them


def _requester_only(app: Flask, endpoint: str) -> bool:
    """A portal view: only a portal session reaches it (web.security.requester), never a console one."""
    return getattr(app.view_functions.get(endpoint), "requester", False)


def _kept_out_of_portal(response: object, url: str) -> bool:
    if url.startswith("/api/"):
        return response.status_code == 401  # type: ignore[attr-defined]
    return response.status_code == 302 and response.headers["Location"] == "/portal/"  # type: ignore[attr-defined]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule, with 1 for every URL parameter."""
    found = []
    for rule in app.url_map.iter_rules():
        url = rule.build({name: 1 if name != "filename" else "console.css" for name in rule.arguments})[1]
        for method in sorted(rule.methods & set(METHODS)):
            found.append((rule.endpoint, method, url))
    return found


def _send(client: FlaskClient, method: str, url: str, token: str | None) -> object:
    data = {"csrf_token": token} if token and method != "GET" and not url.startswith("/api/") else None
    return client.open(url, method=method, data=data)


def test_every_endpoint_is_public_by_choice_or_names_its_roles(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    public = {e for e in endpoints if allowed_roles(app, e) is None}
    assert public == PUBLIC
    portal = {e for e in endpoints if _requester_only(app, e)}
    assert portal == {e for e in endpoints - PUBLIC if e.startswith(("portal.", "portal_api."))}
    for endpoint in endpoints - PUBLIC - portal:
        assert allowed_roles(app, endpoint), f"{endpoint} allows nobody: mark it with @roles"


def test_anonymous_is_sent_to_login_everywhere_and_gets_401_on_the_api(client: FlaskClient, app: Flask) -> None:
    token = csrf_token(client)
    for endpoint, method, url in _routes(app):
        response = _send(client, method, url, token)
        response.close()
        if endpoint in PUBLIC:
            assert response.status_code != 403 and "Location" not in response.headers, (method, url)
        elif _requester_only(app, endpoint):
            assert _kept_out_of_portal(response, url), (method, url, response.status_code)
        elif url.startswith("/api/"):
            assert response.status_code == 401, (method, url)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 302, (method, url, response.status_code)
            assert response.headers["Location"].startswith("/login"), (method, url)


def test_each_role_gets_403_exactly_where_its_role_is_not_allowed(app: Flask, role: Role, factory) -> None:
    client = login(app.test_client(), role)
    token = csrf_token(client, "/tickets")
    with transaction(factory) as session:
        api_token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[role])).one())
    refused = 0
    # The API first: the walk also reaches the admin's "replace token" action.
    for endpoint, method, url in sorted(_routes(app), key=lambda r: not r[2].startswith("/api/")):
        if endpoint in PUBLIC or endpoint == "auth.logout":
            continue
        if url.startswith("/api/"):
            response = client.open(url, method=method, headers={"Authorization": f"Bearer {api_token}"}, json={})
        else:
            response = _send(client, method, url, token)
        response.close()
        if _requester_only(app, endpoint):  # a staff session or token is no portal session
            assert _kept_out_of_portal(response, url), (role, method, url, response.status_code)
            continue
        allowed = role in allowed_roles(app, endpoint)
        if allowed:
            assert response.status_code not in (401, 403), (role, method, url, response.status_code)
            assert not response.headers.get("Location", "").startswith("/login"), (role, method, url)
        else:
            refused += 1
            assert response.status_code == 403, (role, method, url, response.status_code)
    assert refused > 0  # every role is kept out of something


def test_a_form_without_a_valid_csrf_token_is_refused(as_agent: FlaskClient, factory) -> None:
    made = make_ticket(factory, "Screen flickers")
    for data in ({"text": "forged"}, {"text": "forged", "csrf_token": "not-a-token"}):
        response = as_agent.post(f"/tickets/{made.number}/note", data=data)
        assert response.status_code == 400
    token = csrf_token(as_agent, f"/tickets/{made.number}")
    assert as_agent.post(f"/tickets/{made.number}/note", data={"text": "real", "csrf_token": token}).status_code == 302
    with factory() as session:
        notes = session.scalars(select(Message.text).where(Message.internal.is_(True))).all()
    assert notes == ["real"]


def test_login_is_refused_after_repeated_failures_even_with_the_right_password(client: FlaskClient) -> None:
    token = csrf_token(client)
    email = STAFF[Role.ADMIN]
    for _ in range(5):
        response = client.post("/login", data={"email": email, "password": "wrong", "csrf_token": token})
        assert response.status_code == 401
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 429
    other = client.post("/login", data={"email": STAFF[Role.AGENT], "password": PASSWORD, "csrf_token": token})
    assert other.status_code == 302  # only that account is held back, not the whole address


def test_failed_logins_in_two_console_processes_add_up(app: Flask, settings: Settings, factory) -> None:
    """The count is in the database: spreading guesses over console processes gains nothing."""
    consoles = [app.test_client(), create_app(settings, factory, testing=True).test_client()]
    email = STAFF[Role.ADMIN]
    for n in range(5):
        client = consoles[n % 2]
        response = client.post("/login", data={"email": email, "password": "wrong", "csrf_token": csrf_token(client)})
        assert response.status_code == 401
    for client in consoles:
        response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_token(client)})
        assert response.status_code == 429


def test_passwords_are_stored_as_argon2_hashes(factory) -> None:
    with factory() as session:
        hashes = session.scalars(select(Contact.password_hash).where(Contact.password_hash.is_not(None))).all()
    assert len(hashes) == 3 and all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)


def _session_cookie(response) -> str:  # type: ignore[no-untyped-def]
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("helpdesk_session="))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_session_cookie_is_httponly_lax_and_secure_over_tls(app: Flask, scheme: str) -> None:
    client = app.test_client()
    base = f"{scheme}://localhost"
    page = client.get("/login", base_url=base).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    headers = {"Referer": f"{base}/login"}  # Flask-WTF checks the referrer over https
    response = client.post(
        "/login", data={"email": STAFF[Role.AGENT], "password": PASSWORD, "csrf_token": token}, base_url=base,
        headers=headers,
    )
    assert response.status_code == 302
    cookie = _session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) == (scheme == "https")


def test_pages_carry_a_strict_content_security_policy(as_agent: FlaskClient, sample_tickets) -> None:
    for url in ("/login", "/tickets", f"/tickets/{sample_tickets[0].number}"):
        response = as_agent.get(url)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in response.get_data(as_text=True)  # no inline script anywhere


def test_login_never_redirects_to_another_site(client: FlaskClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/tickets?x=1"):
        token = csrf_token(client)
        response = client.post(
            "/login", data={"email": STAFF[Role.AGENT], "password": PASSWORD, "csrf_token": token, "next": target}
        )
        assert response.headers["Location"] == ("/tickets" if "evil" in target else target), target


def test_attachments_download_as_opaque_files_never_as_html(
    as_agent: FlaskClient, factory: sessionmaker[Session], settings: Settings
) -> None:
    made = make_ticket(factory, "See attached")
    payload = b"<html><script>window.__xss = 1</script></html>"
    digest = AttachmentStore(settings.data_dir / "attachments").put(payload)
    with transaction(factory) as session:
        item = Attachment(message_id=made.message_id, filename="report.html", content_type="text/html",
                          size=len(payload), sha256=digest)
        session.add(item)
        session.flush()
        attachment_id = item.id
    response = as_agent.get(f"/tickets/{made.number}/attachments/{attachment_id}")
    assert response.status_code == 200 and response.data == payload
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "report.html" in response.headers["Content-Disposition"]
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    # and not through another ticket's URL
    other = make_ticket(factory, "Other")
    assert as_agent.get(f"/tickets/{other.number}/attachments/{attachment_id}").status_code == 404


def test_html_mail_is_sanitised_again_and_shown_in_a_sandboxed_frame(as_agent: FlaskClient, factory) -> None:
    made = make_ticket(factory, "Newsletter", html='<p onclick="x()">Hi <script>alert(1)</script><a href="javascript:x()">l</a></p>')
    page = as_agent.get(f"/tickets/{made.number}").get_data(as_text=True)
    srcdoc = re.search(r'<iframe class="mail-html" sandbox="" [^>]*srcdoc="([^"]*)"', page)
    assert srcdoc, "the HTML part is shown in a sandboxed iframe"
    shown = html.unescape(srcdoc.group(1))
    assert "Hi" in shown and "<script" not in shown and "onclick" not in shown and "javascript:" not in shown


def test_api_uses_bearer_tokens_only(app: Flask, client: FlaskClient, factory, sample_tickets) -> None:
    login(client, Role.AGENT)
    assert client.get("/api/tickets").status_code == 401  # a browser session is not enough
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())
    api = app.test_client()
    assert api.get("/api/tickets", headers={"Authorization": "Bearer hd_wrong"}).status_code == 401
    response = api.get("/api/tickets?priority=P1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [t["subject"] for t in response.json["tickets"]] == ["VPN is down for everyone"]
    with factory() as session:
        stored = session.scalars(select(Contact.api_token_hash).where(Contact.email == STAFF[Role.AGENT])).one()
    assert token not in stored


def test_a_password_change_ends_the_sessions_opened_with_the_old_one(app: Flask, factory) -> None:
    from helpdesk.core.users import set_password

    client = login(app.test_client(), Role.AGENT)
    assert client.get("/tickets").status_code == 200
    with transaction(factory) as session:
        set_password(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one(),
                     "a brand new password")
    assert client.get("/tickets").headers["Location"].startswith("/login")


def test_a_role_taken_away_takes_effect_at_the_next_request(app: Flask, factory) -> None:
    client = login(app.test_client(), Role.AGENT)
    with transaction(factory) as session:
        session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one().role = Role.USER
    assert client.get("/tickets").headers["Location"].startswith("/login")


def test_every_post_form_on_every_page_carries_a_csrf_token(app: Flask, factory, sample_tickets, role: Role) -> None:
    client = login(app.test_client(), role)
    forms = 0
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.endpoint in ("static", "ops.healthz") or rule.rule.startswith("/api"):
            continue
        page = client.get(rule.rule).get_data(as_text=True)
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", page, flags=re.S | re.I):
            forms += 1
            assert 'name="csrf_token"' in form, (rule.rule, form[:200])
    page = client.get(f"/tickets/{sample_tickets[0].number}").get_data(as_text=True)
    for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", page, flags=re.S | re.I):
        forms += 1
        assert 'name="csrf_token"' in form
    assert forms > 0


def test_attachment_names_of_any_script_or_with_line_breaks_download_under_a_header_that_survives(
    as_agent: FlaskClient, factory: sessionmaker[Session], settings: Settings
) -> None:
    made = make_ticket(factory, "See attached")
    digest = AttachmentStore(settings.data_dir / "attachments").put(b"%PDF-1.4")
    with transaction(factory) as session:
        item = Attachment(message_id=made.message_id, filename="Bericht März €\r\nX-Evil: 1.pdf",
                          content_type="application/pdf", size=8, sha256=digest)
        session.add(item)
        session.flush()
        attachment_id = item.id
    response = as_agent.get(f"/tickets/{made.number}/attachments/{attachment_id}")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.isascii() and "\n" not in disposition and "X-Evil" not in response.headers
    # RFC 6266: a plain ASCII name for old clients, the real name UTF-8 encoded for the rest.
    assert 'filename="Bericht Marz X-Evil: 1.pdf"' in disposition
    assert "filename*=UTF-8''Bericht%20M%C3%A4rz%20%E2%82%AC%20X-Evil%3A%201.pdf" in disposition


@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_tls_proxy_the_cookie_is_secure_only_when_the_proxy_is_trusted(
    settings: Settings, factory, proxies: int
) -> None:
    client = create_app(replace(settings, web_proxies=proxies), factory, testing=True).test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "help.example.org", "X-Forwarded-For": "203.0.113.9"}
    page = client.get("/login", headers=forwarded).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    referer = "https://help.example.org/login" if proxies else "http://localhost/login"
    response = client.post(
        "/login", data={"email": STAFF[Role.AGENT], "password": PASSWORD, "csrf_token": token},
        headers=forwarded | {"Referer": referer},
    )
    assert response.status_code == 302
    # Trusted, the proxy's word that the client spoke TLS counts; untrusted, a client could forge it.
    assert ("Secure" in _session_cookie(response)) == bool(proxies)
    assert ("Strict-Transport-Security" in response.headers) == bool(proxies)
