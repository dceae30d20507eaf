"""Who sees what beyond the role: approvers see the tickets they decide, and an `events` token posts alerts only."""

from __future__ import annotations

import re
from dataclasses import replace

from flask import Flask
from sqlalchemy import select

from helpdesk.core import access, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Event, Role, Ticket, TicketKind
from helpdesk.core.settings import EventSettings, EventSource, Settings
from helpdesk.core.users import TokenScope, issue_api_token
from tests.web.conftest import STAFF, csrf_token, login, make_ticket
from tests.web.test_security import _routes
from helpdesk.web.security import allowed_roles
from helpdesk.web import create_app

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
    # Every API route the token could open: public ones (the portal's link request) need no token at all.
    # A portal route takes no staff token of any kind: 401 there, as for any staff token.
    others = [(m, url, 401 if getattr(app.view_functions[endpoint], "requester", False) else 403)
              for endpoint, m, url in _routes(app)
              if url.startswith("/api/") and endpoint != "api.alertmanager" and allowed_roles(app, endpoint) is not None]
    assert others
    for method, url, refused in others:
        assert client.open(url, method=method, headers=headers, json={}).status_code == refused, (method, url)


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


def _access_ticket(factory, settings: Settings) -> int:
    made = make_ticket(factory, "Access to payroll", "need access to payroll", kind=TicketKind.ACCESS_REQUEST,
                       requester="dave@example.com")
    with transaction(factory) as session:
        access.open_request(session, settings, made.number, resource="payroll")
        ticket = session.get(Ticket, made.number)
        agent = session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one()
        tickets.add_note(session, ticket, agent, "INTERNAL: dave is leaving in May")
    return made.number


def _seen(app: Flask, role: Role, factory, numbers: list[int]) -> dict[str, object]:
    """What one role sees: queue page, ticket pages, API list and API tickets."""
    client, headers = login(app.test_client(), role), _token(factory, role)
    queue = client.get("/tickets").get_data(as_text=True)
    api_list = client.get("/api/tickets", headers=headers).json["tickets"]
    pages = {n: client.get(f"/tickets/{n}") for n in numbers}
    api = {n: client.get(f"/api/tickets/{n}", headers=headers) for n in numbers}
    return {
        "queue": {n for n in numbers if f'href="/tickets/{n}"' in queue},
        "api_list": {t["number"] for t in api_list},
        "pages": {n for n, r in pages.items() if r.status_code == 200},
        "api": {n for n, r in api.items() if r.status_code == 200},
        "notes": {n for n, r in pages.items() if "INTERNAL: dave" in r.get_data(as_text=True)}
        | {n for n, r in api.items() if "INTERNAL: dave" in r.get_data(as_text=True)},
    }


def test_an_approver_sees_only_the_tickets_to_decide_and_no_internal_notes(
    app: Flask, factory, settings: Settings, sample_tickets
) -> None:
    decide = _access_ticket(factory, settings)
    numbers = [t.number for t in sample_tickets] + [decide]
    seen = _seen(app, Role.APPROVER, factory, numbers)
    assert seen == {"queue": {decide}, "api_list": {decide}, "pages": {decide}, "api": {decide}, "notes": set()}
    for role in (Role.AGENT, Role.ADMIN):
        everything = set(numbers)
        assert _seen(app, role, factory, numbers) == {
            "queue": everything, "api_list": everything, "pages": everything, "api": everything, "notes": {decide}
        }


def test_approvers_see_everything_when_the_admin_says_so(settings: Settings, factory, sample_tickets) -> None:
    app = create_app(replace(settings, access=replace(settings.access, approvers_see_all=True)), factory, testing=True)
    decide = _access_ticket(factory, settings)
    numbers = [t.number for t in sample_tickets] + [decide]
    everything = set(numbers)
    assert _seen(app, Role.APPROVER, factory, numbers) == {
        "queue": everything, "api_list": everything, "pages": everything, "api": everything, "notes": {decide}
    }


def test_an_approver_for_another_group_does_not_see_the_request(settings: Settings, factory) -> None:
    others = replace(settings.access, approvers_by_group={"hr": ("someone.else@example.org",)})
    app = create_app(replace(settings, access=others), factory, testing=True)
    made = make_ticket(factory, "Access to hr files", "need access", kind=TicketKind.ACCESS_REQUEST)
    with transaction(factory) as session:
        access.open_request(session, settings, made.number, resource="hr files", resource_group="hr")
    assert _seen(app, Role.APPROVER, factory, [made.number])["pages"] == set()
    assert "hr files" not in login(app.test_client(), Role.APPROVER).get("/approvals").get_data(as_text=True)


def _with_alertmanager(settings: Settings, factory, source: EventSource) -> Flask:
    return create_app(replace(settings, events=EventSettings({"alertmanager": source})), factory, testing=True)


def test_the_webhook_answers_404_and_stores_nothing_while_alertmanager_is_turned_off(settings: Settings, factory) -> None:
    app = _with_alertmanager(settings, factory, EventSource(enabled=False))
    response = app.test_client().post("/api/events/alertmanager", json=PAYLOAD, headers=_token(factory, Role.AGENT))
    assert response.status_code == 404
    assert "events.alertmanager" in response.json["error"]
    with factory() as session:
        assert session.scalars(select(Event)).all() == [] and session.scalars(select(Ticket)).all() == []


def test_the_sender_pattern_is_for_alert_mail_only_and_does_not_stop_the_webhook(settings: Settings, factory) -> None:
    app = _with_alertmanager(settings, factory, EventSource(sender=re.compile(r"am@mon\.example\.org", re.I)))
    response = app.test_client().post("/api/events/alertmanager", json=PAYLOAD, headers=_token(factory, Role.AGENT))
    assert response.status_code == 200 and response.json["events"][0]["ticket"] is not None
