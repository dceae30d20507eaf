"""API for custom fields, their values and groups: admins define, agents set, the queue filters; all in OpenAPI."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Contact, Role
from helpdesk.core.users import issue_api_token
from tests.web.conftest import STAFF, make_ticket


def _auth(factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[role])).one())
    return {"Authorization": f"Bearer {token}"}


def test_fields_and_groups_over_the_api(app: Flask, factory) -> None:  # type: ignore[no-untyped-def]
    api, admin, agent = app.test_client(), _auth(factory, Role.ADMIN), _auth(factory, Role.AGENT)
    site = {"key": "site", "label": "Site", "type": "choice", "choices": ["Berlin", "Hamburg"]}
    assert api.post("/api/fields", json=site, headers=agent).status_code == 403
    made = api.post("/api/fields", json=site, headers=admin)
    assert made.status_code == 201 and made.json["choices"] == ["Berlin", "Hamburg"]
    bad = api.post("/api/fields", json={"key": "when", "label": "When", "type": "calendar"}, headers=admin)
    assert bad.status_code == 422 and "type is one of" in bad.json["error"]
    assert [f["key"] for f in api.get("/api/fields", headers=agent).json["fields"]] == ["site"]

    first, second = make_ticket(factory, "VPN down").number, make_ticket(factory, "Printer jammed").number
    refused = api.put(f"/api/tickets/{first}/fields", json={"site": "Paris"}, headers=agent)
    assert refused.status_code == 422 and "not one of Berlin, Hamburg" in refused.json["error"]
    done = api.put(f"/api/tickets/{first}/fields", json={"site": "hamburg"}, headers=agent)
    assert done.status_code == 200 and done.json["fields"] == {"site": "Hamburg"}

    group = api.post("/api/groups", json={"name": "Network", "members": [STAFF[Role.AGENT]]}, headers=admin)
    assert group.status_code == 201 and group.json["members"] == [STAFF[Role.AGENT]]
    assert api.put(f"/api/tickets/{second}/group", json={"group": "Nowhere"}, headers=agent).status_code == 422
    moved = api.put(f"/api/tickets/{second}/group", json={"group": "Network"}, headers=agent)
    assert moved.status_code == 200 and moved.json["group"] == "Network"

    def listed(query: str) -> list[int]:
        return [t["number"] for t in api.get(f"/api/tickets?{query}", headers=agent).json["tickets"]]
    assert listed("field=site:Hamburg") == [first]
    assert listed("group=Network") == listed("group=mine") == [second]
    assert first in listed("group=none") and second not in listed("group=none")
    whole = api.get(f"/api/tickets/{first}", headers=agent).json
    assert whole["fields"] == {"site": "Hamburg"} and "group" in whole

    renamed = api.put(f"/api/groups/{group.json['id']}", json={"name": "Net"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json["members"] == [STAFF[Role.AGENT]]
    assert api.get(f"/api/tickets/{second}", headers=agent).json["group"] == "Net"
    assert api.delete("/api/fields/site", headers=admin).status_code == 204
    assert api.get(f"/api/tickets/{first}", headers=agent).json["fields"] == {}
    with factory() as session:
        actions = set(session.scalars(select(AuditEntry.action)))
    assert {"field.create", "ticket.field", "group.create", "group.members", "group.update", "field.delete"} <= actions

    doc = api.get("/api/openapi.json", headers=agent).json
    for path in ("/fields", "/fields/{key}", "/tickets/{number}/fields", "/tickets/{number}/group", "/groups",
                 "/groups/{group_id}"):
        assert path in doc["paths"], path
    assert {"group", "fields"} <= set(doc["components"]["schemas"]["Ticket"]["properties"])
    assert {"group", "field"} <= {p["name"] for p in doc["paths"]["/tickets"]["get"]["parameters"]}
