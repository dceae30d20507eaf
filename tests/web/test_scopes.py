"""Who sees what beyond the role: approvers see the tickets they decide, and an `events` token posts alerts only."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from core.db import transaction
from core.models import Contact, Role
from core.users import TokenScope, issue_api_token
from tests.web.conftest import STAFF, csrf_token, login
from tests.web.test_security import _routes

ALERT = {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
         "annotations": {"summary": "disk / is 97% full"}, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "abc1"}
PAYLOAD = {"version": "4", "status": "firing", "receiver": "helpdesk", "alerts": [ALERT]}


def _token(factory, role: Role, scope: TokenScope | None = None) -> dict[str, str]:
    with transaction(factory) as session:
        user = session.scalars(select(Contact).where(Contact.email == STAFF[role])).one()
        return {"Authorization": f"Bearer {issue_api_token(session, user, scope=scope)}"}


def test_an_events_token_posts_alerts_and_gets_403_on_every_other_api_route(app: Flask, factory, role: Role) -> None:
    headers = _token(factory, role, TokenScope.EVENTS)
    client = app.test_client()
    response = client.post("/api/events/alertmanager", json=PAYLOAD, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["events"][0]["ticket"] is not None
    others = [(m, url) for endpoint, m, url in _routes(app) if url.startswith("/api/") and endpoint != "api.alertmanager"]
    assert others
    for method, url in others:
        assert client.open(url, method=method, headers=headers, json={}).status_code == 403, (method, url)


def test_an_ordinary_agent_token_still_posts_alerts_but_an_approvers_does_not(app: Flask, factory) -> None:
    client = app.test_client()
    assert client.post("/api/events/alertmanager", json=PAYLOAD, headers=_token(factory, Role.AGENT)).status_code == 200
    assert client.post("/api/events/alertmanager", json=PAYLOAD,
                       headers=_token(factory, Role.APPROVER)).status_code == 403


def test_an_admin_issues_an_events_token_on_the_users_page_and_rotating_keeps_its_scope(app: Flask, factory) -> None:
    admin = login(app.test_client(), Role.ADMIN)
    with factory() as session:
        agent_id = session.scalars(select(Contact.id).where(Contact.email == STAFF[Role.AGENT])).one()
    tokens = []
    for action in ("issue-events", "issue"):
        page = admin.post(f"/admin/users/{agent_id}/token",
                          data={"action": action, "csrf_token": csrf_token(admin, "/admin/users")}).get_data(as_text=True)
        tokens.append(page.split('id="new-token">', 1)[1].split("<", 1)[0])
    assert "events only" in admin.get("/admin/users").get_data(as_text=True)
    client = app.test_client()
    for token in tokens[-1:]:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/tickets", headers=headers).status_code == 403
        assert client.post("/api/events/alertmanager", json=PAYLOAD, headers=headers).status_code == 200
