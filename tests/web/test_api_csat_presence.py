"""The API's presence, stale-reply check and satisfaction figures, through the Flask test client on a real database."""

from __future__ import annotations

import email
import email.policy
import re

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Outbox, Role
from helpdesk.core.users import issue_api_token
from tests.web.conftest import STAFF, make_ticket

LINK = re.compile(r"https?://[^/\s]+(/satisfaction/\S+/(?:good|bad))")


def _auth(factory: sessionmaker[Session], role: Role) -> dict[str, str]:
    with transaction(factory) as session:
        token = issue_api_token(session, session.scalars(select(Contact).where(Contact.email == STAFF[role])).one())
    return {"Authorization": f"Bearer {token}"}


def test_presence_and_a_stale_reply_through_the_api(app: Flask, factory: sessionmaker[Session]) -> None:
    api, agent, admin = app.test_client(), _auth(factory, Role.AGENT), _auth(factory, Role.ADMIN)
    number = make_ticket(factory, "VPN is down", "No VPN", requester="alice@example.com").number

    assert api.post(f"/api/tickets/{number}/presence", json={"state": "typing"}, headers=agent).json["others"] == []
    here = api.get(f"/api/tickets/{number}/presence", headers=admin).json
    assert [(o["email"], o["state"]) for o in here["others"]] == [("agent@example.org", "typing")]
    assert api.post(f"/api/tickets/{number}/presence", json={"state": "dancing"}, headers=admin).status_code == 400
    seen = here["newest"]

    assert api.post(f"/api/tickets/{number}/reply", json={"text": "Gateway restarted.", "seen": seen},
                    headers=admin).status_code == 201
    stale = api.post(f"/api/tickets/{number}/reply", json={"text": "Restart the client.", "seen": seen}, headers=agent)
    assert stale.status_code == 409 and [m["text"] for m in stale.json["newer"]] == ["Gateway restarted."]
    sent = api.post(f"/api/tickets/{number}/reply", json={"text": "Restart the client.",
                                                         "seen": stale.json["newer"][-1]["id"]}, headers=agent)
    assert sent.status_code == 201
    assert api.post(f"/api/tickets/{number}/reply", json={"text": "No check without seen."},
                    headers=agent).status_code == 201


def test_satisfaction_figures_through_the_api(app: Flask, factory: sessionmaker[Session]) -> None:
    api, agent = app.test_client(), _auth(factory, Role.AGENT)
    number = make_ticket(factory, "Printer jammed", "Paper stuck", requester="alice@example.com",
                         category="hardware").number
    assert api.get("/api/reports/satisfaction", headers=agent).json == {"results": []}
    assert api.post(f"/api/tickets/{number}/status", json={"status": "resolved"}, headers=agent).status_code == 200
    with factory() as session:
        raw = session.scalars(select(Outbox.raw).where(Outbox.rcpt == "alice@example.com")).one()
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    bad = LINK.search(mail.get_body(("plain",)).get_content())
    assert bad is not None
    page = app.test_client().get(bad.group(1).replace("/good", "/bad"))  # the requester: no login, no token header
    assert page.status_code == 200 and "bad" in page.get_data(as_text=True)
    [row] = api.get("/api/reports/satisfaction", headers=agent).json["results"]
    assert (row["agent"], row["category"], row["good"], row["bad"], row["score"]) == (None, "hardware", 0, 1, 0.0)
    assert api.get(f"/api/reports/satisfaction?since={row['month']}", headers=agent).json["results"] == [row]
    assert api.get("/api/reports/satisfaction?since=2999-01", headers=agent).json["results"] == []
    assert api.get("/api/reports/satisfaction?since=soon", headers=agent).status_code == 400
