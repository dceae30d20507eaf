"""The console's pages and actions, through the Flask test client on a real SQLite database."""

from __future__ import annotations

import re
from dataclasses import replace
import urllib.request

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from helpdesk.core import tickets as ticket_service
from helpdesk.core.db import transaction
from helpdesk.core.models import (
    AuditEntry,
    Contact,
    Event,
    Outbox,
    OutboxStatus,
    Role,
    SlaLevel,
    SlaMark,
    SlaMetric,
    Ticket,
)
from helpdesk.core.rulebook import load_rulebook
from helpdesk.core.users import issue_api_token, verify_password
from tests.web.conftest import STAFF, csrf_token, login, make_ticket
from helpdesk.web import WebServer, create_app


def _numbers(page: str) -> list[str]:
    import re

    return re.findall(r'<td><a href="/tickets/(\d+)">', page)


def test_queue_filters_by_each_field(as_agent: FlaskClient, sample_tickets, factory) -> None:
    vpn, password, printer = (str(t.number) for t in sample_tickets)
    with transaction(factory) as session:
        session.get(Ticket, printer and int(printer)).assignee = session.scalars(  # type: ignore[union-attr]
            select(Contact).where(Contact.email == STAFF[Role.AGENT])
        ).one()
        session.add(SlaMark(ticket_id=int(vpn), metric=SlaMetric.RESPONSE, level=SlaLevel.BREACH,
                            elapsed_seconds=7200, target_seconds=3600))
    cases = {
        "": [printer, password, vpn],
        "kind=service_request": [password],
        "priority=P1": [vpn],
        "category=hardware": [printer],
        f"assignee={STAFF[Role.AGENT]}": [printer],
        "assignee=none": [password, vpn],
        "sla=breached": [vpn],
        "sla=on_track": [printer, password],
        "sort=oldest": [vpn, password, printer],
        "sort=priority": [vpn, printer, password],
        "status=resolved": [],
    }
    for query, expected in cases.items():
        page = as_agent.get(f"/tickets?{query}").get_data(as_text=True)
        assert _numbers(page) == expected, query


def test_search_finds_words_in_subjects_and_message_texts_and_ticket_numbers(as_agent: FlaskClient, sample_tickets) -> None:
    vpn, password, printer = (str(t.number) for t in sample_tickets)
    for q, expected in {"printer": [printer], "forgot": [password], "VPN connect": [vpn], "noises jammed": [printer],
                        "pass": [password], f"#{vpn}": [vpn], "nothing-like-this": [], "%": []}.items():
        assert _numbers(as_agent.get("/tickets", query_string={"q": q}).get_data(as_text=True)) == expected, q


def test_search_sees_messages_added_after_the_index_was_built(as_agent: FlaskClient, factory, sample_tickets) -> None:
    made = make_ticket(factory, "Monitor flickers", "the flux capacitor hums")
    assert _numbers(as_agent.get("/tickets?q=capacitor").get_data(as_text=True)) == [str(made.number)]


def test_queue_pages_through_many_tickets(as_agent: FlaskClient, factory) -> None:
    for i in range(120):
        make_ticket(factory, f"Ticket {i}")
    first = as_agent.get("/tickets").get_data(as_text=True)
    assert len(_numbers(first)) == 50 and "Page 1 of 3" in first
    last = as_agent.get("/tickets?page=3").get_data(as_text=True)
    assert len(_numbers(last)) == 20 and _numbers(last)[-1] == "1"


def test_agent_note_and_change_go_through_the_ticket_service(as_agent: FlaskClient, factory, sample_tickets) -> None:
    number = sample_tickets[2].number
    token = csrf_token(as_agent, f"/tickets/{number}")
    as_agent.post(f"/tickets/{number}/note", data={"text": "checked the tray", "csrf_token": token})
    as_agent.post(f"/tickets/{number}/change", data={
        "csrf_token": token, "impact": "1", "urgency": "1", "priority": "P3", "status": "in_progress",
        "kind": "incident", "category": "printing", "assignee": STAFF[Role.AGENT], "reason": "whole floor affected",
    })
    with factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        assert (ticket.impact, ticket.urgency, ticket.priority, ticket.status.value, ticket.category) == (
            1, 1, "P1", "in_progress", "printing")  # priority follows impact x urgency when only those change
        assert ticket.assignee is not None and ticket.assignee.email == STAFF[Role.AGENT]
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.change")).all()[-1]
        assert entry.reason == "whole floor affected" and entry.actor == STAFF[Role.AGENT]
    page = as_agent.get(f"/tickets/{number}").get_data(as_text=True)
    assert "checked the tray" in page and "internal note" in page


def test_approver_may_read_the_tickets_to_decide_but_not_act_on_them(
    app: Flask, sample_tickets, factory, settings
) -> None:
    from tests.web.conftest import login

    number, _ = _access_request(factory, settings)
    client = login(app.test_client(), Role.APPROVER)
    page = client.get(f"/tickets/{number}").get_data(as_text=True)
    assert "Send reply" not in page and "Access to payroll" in page
    assert client.get(f"/tickets/{sample_tickets[0].number}").status_code == 404  # nothing to decide there


def test_admin_adds_a_user_who_can_then_log_in(as_admin: FlaskClient, factory, app: Flask) -> None:
    token = csrf_token(as_admin, "/admin/users")
    response = as_admin.post("/admin/users", data={"email": "New.Agent@example.org", "role": "agent",
                                                   "password": "s3cret-enough", "csrf_token": token})
    assert response.status_code == 302
    weak = as_admin.post("/admin/users", data={"email": "x@example.org", "role": "agent", "password": "short",
                                                "csrf_token": token}, follow_redirects=True)
    assert "at least 8 characters" in weak.get_data(as_text=True)
    with factory() as session:
        assert verify_password(session, "new.agent@example.org", "s3cret-enough") is not None
        assert verify_password(session, "x@example.org", "short") is None
    issued = as_admin.post("/admin/users/1/token", data={"csrf_token": token, "action": "issue"}).get_data(as_text=True)
    assert 'id="new-token">hd_' in issued


def test_admin_retries_a_failed_outbox_mail(as_admin: FlaskClient, factory) -> None:
    with transaction(factory) as session:
        row = Outbox(message_id="<o1@example.org>", purpose="reply", mail_from="help@example.org",
                     recipients=["u@example.com"], raw=b"x", status=OutboxStatus.FAILED, last_error="550 no such user")
        session.add(row)
        session.flush()
        outbox_id = row.id
    page = as_admin.get("/admin/outbox").get_data(as_text=True)
    assert "550 no such user" in page
    as_admin.post(f"/admin/outbox/{outbox_id}/retry", data={"csrf_token": csrf_token(as_admin, "/admin/outbox")})
    with factory() as session:
        assert session.get(Outbox, outbox_id).status is OutboxStatus.PENDING  # type: ignore[union-attr]


def test_alertmanager_webhook_opens_an_incident_shown_on_the_events_page(app: Flask, as_agent: FlaskClient, factory) -> None:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())
    alert = {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
             "annotations": {"summary": "disk / is 97% full"}, "startsAt": "2026-01-01T00:00:00Z",
             "fingerprint": "abc123"}
    payload = {"version": "4", "status": "firing", "receiver": "helpdesk", "alerts": [alert]}
    response = app.test_client().post("/api/events/alertmanager", json=payload,
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    ticket = response.json["events"][0]["ticket"]
    assert ticket is not None
    with factory() as session:
        assert session.scalars(select(Event)).one().ticket_id == ticket
    page = as_agent.get("/events").get_data(as_text=True)
    assert "db1" in page and f'href="/tickets/{ticket}"' in page


def test_alertmanager_webhook_alert_goes_to_the_group_its_rule_names(settings, factory) -> None:
    """A webhook alert has no mail, but the rules route its incident as they would its mail (title and summary)."""
    (settings.data_dir / "rules.toml").write_text(
        '[defaults]\nkind = "incident"\ncategory = "general"\ngroup = "service-desk"\n'
        '[[rule]]\nname = "disks"\n[rule.when]\nsubject = "DiskFull"\n[rule.then]\ncategory = "storage"\n'
        'group = "storage-team"\n'
    )
    settings = replace(settings, rulebook=load_rulebook(settings.data_dir))  # read at start, as helpdesk.config does
    app = create_app(settings, factory, testing=True)
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())

    def fire(name: str) -> int:
        alert = {"status": "firing", "labels": {"alertname": name, "instance": "db1:9100"},
                 "annotations": {"summary": "check it"}, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": name}
        payload = {"version": "4", "status": "firing", "receiver": "helpdesk", "alerts": [alert]}
        response = app.test_client().post("/api/events/alertmanager", json=payload,
                                          headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return int(response.json["events"][0]["ticket"])

    disk, cpu = fire("DiskFull"), fire("HighLoad")
    with factory() as session:
        assert session.get(Ticket, disk).group == "storage-team"  # type: ignore[union-attr]
        assert session.get(Ticket, cpu).group == "service-desk"  # type: ignore[union-attr] # the rules' default


def test_reports_page_draws_charts(as_agent: FlaskClient, sample_tickets) -> None:
    page = as_agent.get("/reports").get_data(as_text=True)
    assert page.count("<svg") >= 4 and "3 tickets" in page


def test_openapi_document_describes_every_api_route(app: Flask, factory) -> None:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.ADMIN])).one())
    doc = app.test_client().get("/api/openapi.json", headers={"Authorization": f"Bearer {token}"}).json
    assert doc["openapi"].startswith("3.")
    documented = {p.replace("{decision}", "approve") for p in doc["paths"]} | {
        p.replace("{decision}", "reject") for p in doc["paths"]}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api"))
            assert path in documented, path


def test_api_reply_and_note(app: Flask, factory, sample_tickets) -> None:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())
    api = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    number = sample_tickets[0].number
    assert api.post(f"/api/tickets/{number}/note", json={"text": "looking"}, headers=auth).status_code == 201
    reply = api.post(f"/api/tickets/{number}/reply", json={"text": "fixed"}, headers=auth)
    assert reply.status_code == 201 and reply.json["direction"] == "out"
    assert api.post(f"/api/tickets/{number}/reply", json={"nope": 1}, headers=auth).status_code == 400
    detail = api.get(f"/api/tickets/{number}", headers=auth).json
    assert [m["text"] for m in detail["messages"]][-2:] == ["looking", "fixed"]
    with factory() as session:
        assert session.scalars(select(Outbox).where(Outbox.purpose == "reply")).one().ticket_id == number


def test_waitress_server_serves_and_stops_cleanly(app: Flask) -> None:
    server = WebServer(app, "127.0.0.1", 0).start()
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
        assert response.status == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    server.stop()
    try:
        urllib.request.urlopen(f"{server.url}/health", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("still serving after stop()")


def _access_request(factory, settings, requester: str = "dave@example.com") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    from helpdesk.core import access
    from helpdesk.core.models import TicketKind

    made = make_ticket(factory, "Access to payroll", "need access to payroll", kind=TicketKind.ACCESS_REQUEST,
                       requester=requester)
    with transaction(factory) as session:
        return made.number, access.open_request(session, settings, made.number, resource="payroll").id


def test_approver_rejects_from_the_ticket_page_with_a_reason(app: Flask, factory, settings) -> None:
    from helpdesk.core.models import AccessRequest, AccessStatus
    from tests.web.conftest import login

    number, request_id = _access_request(factory, settings)
    client = login(app.test_client(), Role.APPROVER)
    page = client.get(f"/tickets/{number}").get_data(as_text=True)
    assert "payroll" in page and 'value="reject"' in page
    token = csrf_token(client, f"/tickets/{number}")
    response = client.post(f"/approvals/{request_id}/decide",
                           data={"decision": "reject", "reason": "not in payroll team", "back": "ticket", "csrf_token": token})
    assert response.headers["Location"] == f"/tickets/{number}"
    with factory() as session:
        item = session.get(AccessRequest, request_id)
        assert item is not None and item.status is AccessStatus.REJECTED and item.reason == "not in payroll team"
    # an agent sees the decision but no buttons
    agent_page = login(app.test_client(), Role.AGENT).get(f"/tickets/{number}").get_data(as_text=True)
    assert "rejected" in agent_page and 'value="reject"' not in agent_page


def test_the_service_refuses_an_approver_deciding_their_own_request(app: Flask, factory, settings) -> None:
    from helpdesk.core.models import AccessRequest, AccessStatus
    from tests.web.conftest import login

    _, request_id = _access_request(factory, settings, requester=STAFF[Role.APPROVER])
    client = login(app.test_client(), Role.APPROVER)
    token = csrf_token(client, "/approvals")
    page = client.post(f"/approvals/{request_id}/decide", data={"decision": "approve", "csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "Refused" in page
    with factory() as session:
        assert session.get(AccessRequest, request_id).status is AccessStatus.PENDING  # type: ignore[union-attr]
        refused = session.scalars(select(AuditEntry).where(AuditEntry.action == "access.refused")).one()
        assert refused.actor == STAFF[Role.APPROVER]


def test_approver_revokes_a_grant_with_a_reason(app: Flask, factory, settings) -> None:
    from helpdesk.core import access
    from helpdesk.core.models import AccessGrant
    from tests.web.conftest import login

    _, request_id = _access_request(factory, settings)
    with transaction(factory) as session:
        approver = session.scalars(select(Contact).where(Contact.email == STAFF[Role.APPROVER])).one()
        grant = access.decide(session, settings, session.get(access.AccessRequest, request_id), approver, True, "ok")
        assert grant is not None
        grant_id = grant.id
    client = login(app.test_client(), Role.APPROVER)
    token = csrf_token(client, "/approvals/grants")
    assert client.post(f"/approvals/grants/{grant_id}/revoke", data={"csrf_token": token}).status_code == 302
    with factory() as session:
        assert session.get(AccessGrant, grant_id).revoked_at is None  # type: ignore[union-attr] # no reason, no revoke
    client.post(f"/approvals/grants/{grant_id}/revoke", data={"csrf_token": token, "reason": "left the team"})
    with factory() as session:
        revoked = session.get(AccessGrant, grant_id)
        assert revoked is not None and revoked.revoked_by == STAFF[Role.APPROVER]
        assert revoked.revoke_reason == "left the team"
    assert "revoked" in client.get("/approvals/grants").get_data(as_text=True)


def test_queue_pager_links_carry_only_the_filters(as_agent: FlaskClient, factory) -> None:
    for i in range(51):
        make_ticket(factory, f"Ticket {i}")
    # Names that url_for reads as its own arguments must not reach it from the query string.
    response = as_agent.get("/tickets?q=Ticket&endpoint=x&_external=1&_anchor=y&page=1")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'href="/tickets?q=Ticket&amp;page=2"' in page or 'href="/tickets?page=2&amp;q=Ticket"' in page


def test_api_ticket_list_reads_a_page_in_the_same_few_queries_however_many_tickets(app: Flask, factory) -> None:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())
    auth = {"Authorization": f"Bearer {token}"}
    api = app.test_client()
    engine = factory.kw["bind"]
    statements: list[str] = []

    def count(*_args) -> None:  # type: ignore[no-untyped-def]
        statements.append("x")

    def queries_for_list() -> int:
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            assert api.get("/api/tickets", headers=auth).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    def add_tickets(n: int) -> None:
        for i in range(n):
            made = make_ticket(factory, f"Ticket {i}")
            with transaction(factory) as session:
                ticket_service.add_watchers(session, session.get(Ticket, made.number), [f"cc{i}@example.com"])

    add_tickets(2)
    few = queries_for_list()
    add_tickets(20)
    assert queries_for_list() == few


def test_changing_impact_and_urgency_uses_the_configured_priority_matrix(settings, factory) -> None:
    (settings.data_dir / "priority.toml").write_text("matrix = [\n" + '  ["P5", "P5", "P5"],\n' * 3 + "]\n")
    settings = replace(settings, rulebook=load_rulebook(settings.data_dir))  # read at start, as helpdesk.config does
    client = login(create_app(settings, factory, testing=True).test_client(), Role.AGENT)
    number = make_ticket(factory, "Slow laptop", priority="P4").number
    token = csrf_token(client, f"/tickets/{number}")
    client.post(f"/tickets/{number}/change", data={"csrf_token": token, "impact": "1", "urgency": "1"})
    with factory() as session:
        assert session.get(Ticket, number).priority == "P5"  # type: ignore[union-attr] # not the ITIL P1
