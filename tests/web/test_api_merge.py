"""The API's merge, undo, split and canned replies, through the Flask test client on a real database."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import access, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Direction, Message, Outbox, Role, Ticket, TicketKind
from helpdesk.core.users import issue_api_token
from tests.web.conftest import STAFF, make_ticket


def _auth(factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[role])).one())
    return {"Authorization": f"Bearer {token}"}


def test_merge_undo_and_split_through_the_api(app: Flask, factory) -> None:
    api, agent = app.test_client(), _auth(factory, Role.AGENT)
    first = make_ticket(factory, "VPN is down", "No VPN", requester="alice@example.com").number
    dup = make_ticket(factory, "VPN down too", "Cannot connect", requester="bob@example.com").number

    assert api.post(f"/api/tickets/{dup}/merge", json={"into": "x"}, headers=agent).status_code == 400
    refused = api.post(f"/api/tickets/{dup}/merge", json={"into": dup}, headers=agent)
    assert refused.status_code == 422 and refused.json == {"error": f"#{dup} cannot be merged into itself"}
    merged = api.post(f"/api/tickets/{dup}/merge", json={"into": first}, headers=agent)
    assert merged.status_code == 200 and merged.json["number"] == first and merged.json["watchers"] == ["bob@example.com"]
    source = api.get(f"/api/tickets/{dup}", headers=agent).json
    assert (source["status"], source["merged_into"]) == ("closed", first)
    target = api.get(f"/api/tickets/{first}", headers=agent).json
    assert "Cannot connect" in [m["text"] for m in target["messages"]]

    back = api.post(f"/api/tickets/{dup}/unmerge", headers=agent)
    assert back.status_code == 200 and (back.json["status"], back.json["merged_into"]) == ("new", None)
    assert api.post(f"/api/tickets/{dup}/unmerge", headers=agent).status_code == 422

    with transaction(factory) as session:
        ticket = session.get(Ticket, first)
        tickets.append_message(session, ticket, Message(direction=Direction.IN, from_address="alice@example.com",
                                                        subject="Re: VPN", text="Also my printer"))
    printer = [m for m in api.get(f"/api/tickets/{first}", headers=agent).json["messages"] if m["text"] == "Also my printer"]
    split = api.post(f"/api/tickets/{first}/messages/{printer[0]['id']}/split", headers=agent)
    assert split.status_code == 201 and split.json["linked_ticket"] == first
    assert api.post(f"/api/tickets/{first}/messages/999999/split", headers=agent).status_code == 404


def test_merging_an_access_request_awaiting_approval_is_refused_with_a_reason(app: Flask, factory, settings) -> None:
    made = make_ticket(factory, "Access to payroll", "need payroll", kind=TicketKind.ACCESS_REQUEST,
                       requester="dave@example.com")
    with transaction(factory) as session:
        access.open_request(session, settings, made.number, resource="payroll")
    other = make_ticket(factory, "Payroll access again", "need payroll").number
    response = app.test_client().post(f"/api/tickets/{other}/merge", json={"into": made.number},
                                      headers=_auth(factory, Role.AGENT))
    assert response.status_code == 422 and "is awaiting approval: approve or reject it first" in response.json["error"]


def test_macros_are_kept_by_admins_and_sent_by_agents_through_the_api(app: Flask, factory) -> None:
    api, admin, agent = app.test_client(), _auth(factory, Role.ADMIN), _auth(factory, Role.AGENT)
    macro = {"name": "known-outage", "body": "Hi {{ requester_name }}, {{ ticket_tag }} is a known outage.",
             "priority": "P2", "assignee": STAFF[Role.AGENT]}
    assert api.post("/api/macros", json=macro, headers=agent).status_code == 403
    assert api.post("/api/macros", json=macro | {"body": "{{ self }}"}, headers=admin).status_code == 422
    created = api.post("/api/macros", json=macro, headers=admin)
    assert created.status_code == 201 and created.json["assignee"] == STAFF[Role.AGENT]
    assert api.post("/api/macros", json=macro, headers=admin).status_code == 422  # the name is taken
    changed = api.put("/api/macros/known-outage", json={"body": macro["body"], "priority": "P1"}, headers=admin)
    assert changed.status_code == 200 and (changed.json["priority"], changed.json["assignee"]) == ("P1", None)
    assert [m["name"] for m in api.get("/api/macros", headers=agent).json["macros"]] == ["known-outage"]

    number = make_ticket(factory, "VPN is down", requester="alice@example.com").number
    assert api.post(f"/api/tickets/{number}/macro", json={"name": "nope"}, headers=agent).status_code == 404
    sent = api.post(f"/api/tickets/{number}/macro", json={"name": "known-outage"}, headers=agent)
    assert sent.status_code == 200 and sent.json["changed"] == {"priority": "P1"}
    with factory() as session:
        [reply] = session.scalars(select(Outbox).where(Outbox.purpose == "reply")).all()
        assert f"Hi alice@example.com, [#{number}] is a known outage." in reply.raw.decode()
    assert api.delete("/api/macros/known-outage", headers=admin).status_code == 204
    assert api.get("/api/macros", headers=agent).json["macros"] == []
