"""Numbers out of range and NUL characters get a 4xx, never a 500, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Message, Role
from helpdesk.core.settings import Settings
from helpdesk.core.users import create_user, issue_api_token
from tests.web.conftest import PASSWORD, STAFF, csrf_token, login, make_ticket
from helpdesk.web import create_app
from helpdesk.web.security import MAX_ID, allowed_roles

HUGE = "99999999999999999999"  # past 64 bits: OverflowError in SQLite's driver
METHODS = ("GET", "POST")


@pytest.fixture
def any_app(settings: Settings, session_factory: sessionmaker[Session]) -> Flask:
    """The console on SQLite and on PostgreSQL (whose ticket numbers are 32-bit)."""
    with transaction(session_factory) as session:
        for role, email in STAFF.items():
            create_user(session, email, role, PASSWORD)
    return create_app(settings, session_factory, testing=True)


class Staff:
    """Signed-in console clients and API tokens, made for a role when first needed."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.console: dict[Role, tuple[FlaskClient, str]] = {}
        self.tokens: dict[Role, str] = {}

    def send(self, role: Role, method: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        if url.startswith("/api/"):
            if role not in self.tokens:
                with transaction(self.app.extensions["helpdesk"].session_factory) as session:
                    user = session.scalars(select(Contact).where(Contact.email == STAFF[role])).one()
                    self.tokens[role] = issue_api_token(session, user)
            headers = {"Authorization": f"Bearer {self.tokens[role]}"}
            return self.app.test_client().open(url, method=method, headers=headers, **kwargs)
        if role not in self.console:
            client = login(self.app.test_client(), role)
            self.console[role] = client, csrf_token(client, "/tickets")
        client, token = self.console[role]
        if method == "POST":
            kwargs["data"] = {**(kwargs.get("data") or {}), "csrf_token": token}  # type: ignore[dict-item]
        return client.open(url, method=method, **kwargs)


_NUMBER = re.compile(r"<int[^>]*:\w+>")


def _id_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every route with a number in its path."""
    found = []
    for rule in app.url_map.iter_rules():
        if _NUMBER.search(rule.rule):
            for method in sorted(rule.methods & set(METHODS)):
                found.append((rule.endpoint, method, rule.rule))
    return found


def _url(rule: str, number: object) -> str:
    return _NUMBER.sub(str(number), rule)


def test_every_numbered_route_is_404_past_the_largest_id_and_never_500(any_app: Flask) -> None:
    staff = Staff(any_app)
    routes = _id_routes(any_app)
    assert len(routes) >= 15, routes
    for endpoint, method, rule in routes:
        role = min(allowed_roles(any_app, endpoint) or {Role.ADMIN}, key=lambda r: r.value)
        for number in (HUGE, MAX_ID + 1, 2**40):
            response = staff.send(role, method, _url(rule, number))
            assert response.status_code == 404, (method, rule, number, response.status_code)
            if rule.startswith("/api/"):
                assert "error" in response.json, (method, rule)
        # The largest id still reaches the view, which finds nothing (no 500 on a 32-bit column).
        # A portal view refuses a staff credential before it looks (401; the console's portal pages
        # redirect to the portal's sign-in); tests/web/test_portal.py reaches them as a requester.
        portal = getattr(any_app.view_functions[endpoint], "requester", False)
        response = staff.send(role, method, _url(rule, MAX_ID))
        allowed = (302, 400, 404, 422) + ((401,) if portal else ())
        assert response.status_code in allowed, (method, rule, response.status_code)


def test_a_page_number_past_any_queue_shows_an_empty_page(any_app: Flask) -> None:
    staff = Staff(any_app)
    make_ticket(any_app.extensions["helpdesk"].session_factory, "VPN down")
    page = staff.send(Role.AGENT, "GET", f"/tickets?page={HUGE}")
    assert page.status_code == 200 and "VPN down" not in page.get_data(as_text=True)
    listing = staff.send(Role.AGENT, "GET", f"/api/tickets?page={HUGE}")
    assert listing.status_code == 200 and listing.json["tickets"] == [] and listing.json["total"] == 1


def test_nul_in_a_console_query_or_form_is_refused(any_app: Flask) -> None:
    staff = Staff(any_app)
    factory = any_app.extensions["helpdesk"].session_factory
    n = make_ticket(factory, "VPN down").number
    for method, url, body in (
        ("GET", "/tickets?q=a%00b", None),
        ("GET", "/tickets?category=a%00b", None),
        ("GET", "/tickets?a%00b=1", None),
        ("POST", f"/tickets/{n}/note", {"text": "a\x00b"}),
        ("POST", f"/tickets/{n}/reply", {"text": "a\x00b"}),
        ("POST", f"/tickets/{n}/change", {"category": "a\x00b"}),
    ):
        response = staff.send(Role.AGENT, method, url, data=body)
        assert response.status_code == 400, (method, url)
        assert "NUL" in response.get_data(as_text=True)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1  # nothing added
    client = any_app.test_client()
    token = csrf_token(client)
    response = client.post("/login", data={"email": "a\x00b@example.org", "password": "x", "csrf_token": token})
    assert response.status_code == 400


def test_nul_in_api_json_or_query_is_a_json_400(any_app: Flask) -> None:
    staff = Staff(any_app)
    factory = any_app.extensions["helpdesk"].session_factory
    number = make_ticket(factory, "VPN down").number
    for response in (
        staff.send(Role.AGENT, "POST", f"/api/tickets/{number}/note", json={"text": "a\x00b"}),
        staff.send(Role.AGENT, "POST", f"/api/tickets/{number}/status", json={"status": "resolved", "reason": ["\x00"]}),
        staff.send(Role.AGENT, "POST", f"/api/tickets/{number}/note", json={"text": "ok", "a\x00": 1}),
        staff.send(Role.AGENT, "GET", "/api/tickets?q=a%00b"),
    ):
        assert response.status_code == 400 and "NUL" in response.json["error"]
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1
    # The same text without the NUL goes through.
    assert staff.send(Role.AGENT, "POST", f"/api/tickets/{number}/note", json={"text": "ab"}).status_code == 201
