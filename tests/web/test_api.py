"""The JSON API's errors and its access decisions, through the Flask test client on a real database."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import access
from helpdesk.core.db import transaction
from helpdesk.core.models import AccessGrant, AccessRequest, AccessStatus, AuditEntry, Contact, Outbox, Role, TicketKind
from helpdesk.core.settings import Settings
from helpdesk.core.users import issue_api_token
from tests.web.conftest import STAFF, make_ticket
from helpdesk.web.security import public


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


def _access_request(factory: sessionmaker[Session], settings: Settings, requester: str, resource: str) -> int:
    made = make_ticket(factory, f"Access to {resource}", f"need access to {resource}",
                       kind=TicketKind.ACCESS_REQUEST, requester=requester)
    with transaction(factory) as session:
        return access.open_request(session, settings, made.number, resource=resource).id


def test_an_approver_decides_access_requests_through_the_api(app: Flask, factory, settings: Settings) -> None:
    approved = _access_request(factory, settings, "dave@example.com", "payroll")
    rejected = _access_request(factory, settings, "erin@example.com", "finance share")
    api, approver = app.test_client(), _auth(factory, Role.APPROVER)

    response = api.post(f"/api/access/{approved}/approve", json={"reason": "month-end close"}, headers=approver)
    assert response.status_code == 200 and response.json["status"] == "approved"
    response = api.post(f"/api/access/{rejected}/reject", json={"reason": "not in finance"}, headers=approver)
    assert response.status_code == 200 and response.json["status"] == "rejected"
    with factory() as session:
        [grant] = session.scalars(select(AccessGrant)).all()
        assert (grant.contact.email, grant.resource) == ("dave@example.com", "payroll")
        decisions = session.scalars(select(Outbox).where(Outbox.purpose == "access_decision").order_by(Outbox.id)).all()
        assert [row.recipients for row in decisions] == [["dave@example.com"], ["erin@example.com"]]
        assert b"approved" in decisions[0].raw and b"not in finance" in decisions[1].raw
        assert session.get(AccessRequest, rejected).status is AccessStatus.REJECTED  # type: ignore[union-attr]

    # Deciding again is refused, as JSON; nothing more is granted or mailed.
    for choice in ("approve", "reject"):
        again = api.post(f"/api/access/{approved}/{choice}", json={}, headers=approver)
        assert again.status_code == 422 and again.is_json and "already approved" in again.json["error"]
    with factory() as session:
        assert len(session.scalars(select(AccessGrant)).all()) == 1
        assert len(session.scalars(select(Outbox).where(Outbox.purpose == "access_decision")).all()) == 2
    missing = api.post("/api/access/999/approve", json={}, headers=approver)
    assert missing.status_code == 404 and missing.is_json


def test_the_api_refuses_self_approval_and_other_roles(app: Flask, factory, settings: Settings) -> None:
    own = _access_request(factory, settings, STAFF[Role.APPROVER], "payroll")
    other = _access_request(factory, settings, "dave@example.com", "payroll")
    api = app.test_client()

    refused = api.post(f"/api/access/{own}/approve", json={"reason": "me"}, headers=_auth(factory, Role.APPROVER))
    assert refused.status_code == 422 and refused.is_json and refused.json["error"].startswith("Refused")
    for role in (Role.AGENT, Role.ADMIN):
        forbidden = api.post(f"/api/access/{other}/approve", json={}, headers=_auth(factory, role))
        assert forbidden.status_code == 403 and forbidden.json == {"error": "forbidden for your role"}
    with factory() as session:
        assert session.get(AccessRequest, own).status is AccessStatus.PENDING  # type: ignore[union-attr]
        assert session.get(AccessRequest, other).status is AccessStatus.PENDING  # type: ignore[union-attr]
        assert session.scalars(select(AccessGrant)).all() == []
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "access.refused")).all()
        assert (entry.actor, entry.object_id) == (STAFF[Role.APPROVER], own)


def test_the_api_refuses_approval_for_the_approvers_own_mailbox_under_a_plus_tag(
    app: Flask, factory, settings: Settings
) -> None:
    # Asked from a plus-address of the approver's, and asked by Dave for one (named in the text only).
    asked_by = _access_request(factory, settings, "Approver+Laptop@example.org", "payroll")
    made = make_ticket(factory, "Access to payroll", "Please give access to payroll for approver+x@example.org.",
                       kind=TicketKind.ACCESS_REQUEST, requester="dave@example.com")
    with transaction(factory) as session:
        named = access.open_request(session, settings, made.number, resource="payroll").id
    api, approver = app.test_client(), _auth(factory, Role.APPROVER)
    for request_id, why in ((asked_by, "made this request"), (named, "would give approver@example.org access")):
        refused = api.post(f"/api/access/{request_id}/approve", json={"reason": "me"}, headers=approver)
        assert refused.status_code == 422 and why in refused.json["error"]
    with factory() as session:
        assert {session.get(AccessRequest, i).status for i in (asked_by, named)} == {AccessStatus.PENDING}  # type: ignore[union-attr]
        assert session.scalars(select(AccessGrant)).all() == []
        refusals = session.scalars(select(AuditEntry).where(AuditEntry.action == "access.refused")).all()
        assert [e.object_id for e in refusals] == [asked_by, named]
