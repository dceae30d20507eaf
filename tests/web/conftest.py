"""Fixtures for the console: an app on a real (SQLite) database, users of each role, tickets."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Direction, Message, Role, Ticket, TicketKind
from helpdesk.core.settings import Settings
from helpdesk.core.users import create_user
from helpdesk.web import create_app

PASSWORD = "correct horse battery"
STAFF = {Role.ADMIN: "admin@example.org", Role.AGENT: "agent@example.org", Role.APPROVER: "approver@example.org"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}", secret_key="test-secret")


@pytest.fixture
def factory(sqlite_session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with transaction(sqlite_session_factory) as session:
        for role, email in STAFF.items():
            create_user(session, email, role, PASSWORD)
    return sqlite_session_factory


@pytest.fixture
def app(settings: Settings, factory: sessionmaker[Session]) -> Flask:
    return create_app(settings, factory, testing=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, role: Role) -> FlaskClient:
    token = csrf_token(client)
    response = client.post("/login", data={"email": STAFF[role], "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture(params=[Role.ADMIN, Role.AGENT, Role.APPROVER], ids=lambda r: r.value)
def role(request: pytest.FixtureRequest) -> Role:
    return request.param


@pytest.fixture
def as_agent(app: Flask) -> FlaskClient:
    return login(app.test_client(), Role.AGENT)


@pytest.fixture
def as_admin(app: Flask) -> FlaskClient:
    return login(app.test_client(), Role.ADMIN)


@dataclass(frozen=True)
class MadeTicket:
    number: int
    message_id: int  # the stored row's id
    header_id: str  # its Message-ID header


def make_ticket(
    factory: sessionmaker[Session],
    subject: str,
    text: str = "Hello",
    *,
    html: str | None = None,
    kind: TicketKind = TicketKind.INCIDENT,
    category: str = "general",
    priority: str = "P4",
    requester: str = "user@example.com",
) -> MadeTicket:
    with transaction(factory) as session:
        ticket: Ticket = tickets.open_ticket(
            session,
            requester=tickets.contact_for(session, requester),
            subject=subject,
            kind=kind,
            category=category,
            priority=priority,
            classification=[{"rule": "test-rule", "reason": "made by the test", "sets": {"kind": kind.value}}],
        )
        message = tickets.append_message(
            session,
            ticket,
            Message(direction=Direction.IN, from_address=requester, subject=subject, text=text, html=html,
                    message_id=f"<{uuid.uuid4().hex}@example.com>"),
        )
        return MadeTicket(number=ticket.id, message_id=message.id, header_id=message.message_id or "")


@pytest.fixture
def sample_tickets(factory: sessionmaker[Session]) -> Iterator[list[MadeTicket]]:
    yield [
        make_ticket(factory, "VPN is down for everyone", "Cannot connect to the VPN since 9am", priority="P1",
                    category="network"),
        make_ticket(factory, "Password reset please", "I forgot my password", kind=TicketKind.SERVICE_REQUEST,
                    category="account", priority="P4"),
        make_ticket(factory, "Printer jammed on floor 3", "The printer makes noises", category="hardware",
                    priority="P3"),
    ]


# The browser fixtures live beside the helpers that use them; defined once here so that the
# module's Chromium is shared by its tests.
from tests.web.browser import browser, live, page  # noqa: E402,F401
