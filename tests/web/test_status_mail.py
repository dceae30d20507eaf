"""A status changed in the console or through the API is mailed to requester and watchers, as by email."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from helpdesk.core import tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Outbox, Role, Ticket
from helpdesk.core.settings import SmtpSettings
from helpdesk.core.users import issue_api_token
from helpdesk.mailgateway.smtp import send_once
from tests.web.conftest import STAFF, csrf_token, make_ticket


def _told(factory) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(purpose, recipient) of every queued mail but agent notifications."""
    with factory() as session:
        rows = session.scalars(select(Outbox).where(Outbox.purpose != "agent notification").order_by(Outbox.id))
        return [(r.purpose, r.recipients[0]) for r in rows]


def _with_watcher(factory, subject: str) -> int:  # type: ignore[no-untyped-def]
    made = make_ticket(factory, subject, requester="carol@example.com")
    with transaction(factory) as session:
        ticket = session.get(Ticket, made.number)
        assert ticket is not None
        tickets.add_watchers(session, ticket, ["dave@example.com"])
    return made.number


def test_console_status_change_mails_requester_and_watchers(as_agent: FlaskClient, factory, smtp_sink) -> None:
    number = _with_watcher(factory, "Scanner offline")
    token = csrf_token(as_agent, f"/tickets/{number}")
    form = {"csrf_token": token, "status": "new", "priority": "P4", "impact": "3", "urgency": "3",
            "kind": "incident", "category": "general", "assignee": ""}
    as_agent.post(f"/tickets/{number}/change", data=form | {"priority": "P2"})
    assert _told(factory) == []  # no status change, no mail

    as_agent.post(f"/tickets/{number}/change", data=form | {"status": "resolved", "reason": "replaced the cable"})
    assert _told(factory) == [("resolution", "carol@example.com"), ("resolution", "dave@example.com")]
    as_agent.post(f"/tickets/{number}/change", data=form | {"status": "in_progress"})
    assert _told(factory)[2:] == [("status change", "carol@example.com"), ("status change", "dave@example.com")]

    send_once(factory, SmtpSettings(host=smtp_sink.host, port=smtp_sink.port))
    received = smtp_sink.wait_for(4)
    to_carol = [m.message for m in received if m.rcpt_tos == ["carol@example.com"]]
    assert len(to_carol) == 2 and all(f"[#{number}]" in m["Subject"] for m in to_carol)
    assert all(m["Auto-Submitted"] == "auto-generated" for m in to_carol)
    # threaded on the user's own mail, like every other mail of the ticket
    with factory() as session:
        first = session.get(Ticket, number).messages[0].message_id  # type: ignore[union-attr]
    assert all(first and first.strip("<>") in m["References"] for m in to_carol)


def test_api_status_change_mails_requester_and_watchers(app: Flask, factory) -> None:
    number = _with_watcher(factory, "Laptop fan loud")
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[Role.AGENT])).one())
    api, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    assert api.post(f"/api/tickets/{number}/status", json={"status": "done"}, headers=auth).status_code == 400
    changed = api.post(f"/api/tickets/{number}/status", json={"status": "closed", "reason": "user confirmed"},
                       headers=auth)
    assert changed.status_code == 200 and changed.json["status"] == "closed"
    assert _told(factory) == [("status change", "carol@example.com"), ("status change", "dave@example.com")]
    again = api.post(f"/api/tickets/{number}/status", json={"status": "closed"}, headers=auth)
    assert again.status_code == 200 and len(_told(factory)) == 2  # unchanged: nobody is told twice
