"""The JSON API's errors and its access decisions, through the Flask test client on a real database."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.models import Contact, Role
from core.users import issue_api_token
from tests.web.conftest import STAFF, make_ticket
from web.security import public


def _auth(factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[role])).one())
    return {"Authorization": f"Bearer {token}"}


def test_a_refusal_by_the_service_is_a_json_422(app: Flask, factory) -> None:
    number = make_ticket(factory, "VPN down").number
    response = app.test_client().post(f"/api/tickets/{number}/note", json={"text": "   "},
                                      headers=_auth(factory, Role.AGENT))
    assert response.status_code == 422
    assert response.is_json and response.json == {"error": "a note needs some text"}


def test_an_unexpected_error_is_a_json_500_that_tells_nothing_of_the_exception(app: Flask) -> None:
    @public
    def boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("password=hunter2 in a stack trace")

    app.add_url_rule("/api/boom", "api_boom", boom)
    app.add_url_rule("/boom", "boom", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the error handler answers
    response = app.test_client().get("/api/boom")
    assert response.status_code == 500 and response.is_json
    assert "error" in response.json and "hunter2" not in response.get_data(as_text=True)
    page = app.test_client().get("/boom")
    assert page.status_code == 500 and "Internal Server Error" in page.get_data(as_text=True)
    assert "hunter2" not in page.get_data(as_text=True)
