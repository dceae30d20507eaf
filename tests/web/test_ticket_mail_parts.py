"""The ticket page says what the parser found: signed (not verified), encrypted (could not be
read), and a calendar invitation's summary, time and organiser."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from helpdesk.core.db import transaction
from helpdesk.core.mail import Protection
from helpdesk.core.models import Contact, Message, Role
from helpdesk.core.users import issue_api_token
from tests.web.conftest import STAFF, make_ticket

EVENT = {"summary": "Printer maintenance", "start": "2025-03-10T09:00:00+01:00", "end": "2025-03-10T10:00:00+01:00",
         "organiser": "Anna Berg <anna@example.org>", "location": "Room 3.14", "method": "REQUEST"}


def _with(factory, subject: str, **fields) -> int:  # noqa: ANN001, ANN003
    made = make_ticket(factory, subject, "" if fields.get("protection") is Protection.ENCRYPTED else "Hello")
    with transaction(factory) as session:
        message = session.get(Message, made.message_id)
        for name, value in fields.items():
            setattr(message, name, value)
    return made.number


def test_ticket_page_says_signed_encrypted_and_invitation(as_agent: FlaskClient, factory) -> None:  # noqa: ANN001
    signed = _with(factory, "Signed", protection=Protection.SIGNED)
    encrypted = _with(factory, "Encrypted", protection=Protection.ENCRYPTED)
    invite = _with(factory, "Invite", calendar=[EVENT])
    page = as_agent.get(f"/tickets/{signed}").get_data(as_text=True)
    assert "signed, not verified" in page and "could not be read" not in page
    page = as_agent.get(f"/tickets/{encrypted}").get_data(as_text=True)
    assert "encrypted" in page and "could not be read" in page
    page = as_agent.get(f"/tickets/{invite}").get_data(as_text=True)
    assert "Printer maintenance" in page and "2025-03-10T09:00:00+01:00" in page
    assert "Anna Berg &lt;anna@example.org&gt;" in page and "Room 3.14" in page
    assert "signed, not verified" not in page


JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", type(None): "null"}


def _undocumented(value: object, schema: dict, schemas: dict, where: str) -> list[str]:
    """Every key the API returns is in the OpenAPI document, with a type the document allows."""
    schema = schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
    allowed = schema.get("type", [])
    allowed = [allowed] if isinstance(allowed, str) else allowed
    problems = [] if JSON_TYPES[type(value)] in allowed else [f"{where}: {JSON_TYPES[type(value)]} not in {allowed}"]
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                problems.append(f"{where}.{key}: not documented")
            else:
                problems += _undocumented(item, schema["properties"][key], schemas, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _undocumented(item, schema["items"], schemas, f"{where}[{index}]")
    return problems


def test_the_openapi_document_describes_every_field_of_a_ticket_and_its_messages(app: Flask, factory) -> None:  # noqa: ANN001
    with transaction(factory) as session:
        staff = session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one()
        token = issue_api_token(session, staff)
    api = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    invite = _with(factory, "Invite", calendar=[EVENT], protection=Protection.SIGNED)
    assert api.post(f"/api/tickets/{invite}/note", json={"text": "noted"}, headers=auth).status_code == 201
    ticket = api.get(f"/api/tickets/{invite}", headers=auth).json
    assert ticket["messages"][0]["calendar"] and ticket["messages"][0]["protection"] == "signed"
    schemas = api.get("/api/openapi.json", headers=auth).json["components"]["schemas"]
    assert _undocumented(ticket, {"$ref": "#/components/schemas/Ticket"}, schemas, "Ticket") == []
