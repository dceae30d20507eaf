"""A service request's checklist on the ticket page: a button per open step, then "Mark fulfilled"."""

from __future__ import annotations

import re
from dataclasses import replace

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from helpdesk.core import fulfilment, tickets
from helpdesk.core.catalogue import load_catalogue
from helpdesk.core.db import transaction
from helpdesk.core.models import Outbox, Role, Ticket, TicketKind, TicketStatus
from helpdesk.core.settings import Settings
from tests.web.conftest import STAFF, csrf_token, login
from helpdesk.web import create_app

USER = "erin@example.com"


def _password_reset(factory, settings: Settings) -> int:  # type: ignore[no-untyped-def]
    with transaction(factory) as session:
        ticket = tickets.open_ticket(
            session, requester=tickets.contact_for(session, USER), subject="Password reset please",
            kind=TicketKind.SERVICE_REQUEST, category="account", catalogue_item="password-reset",
        )
        fulfilment.start(session, settings, ticket, load_catalogue().get("password-reset"))
        return ticket.id


def _step_buttons(page: str) -> list[str]:
    return re.findall(r'action="/tickets/\d+/steps/(\d+)/done"', page)


def _fulfilled_mails(factory) -> list[list[str]]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return [r.recipients for r in session.scalars(select(Outbox).where(Outbox.purpose == "request_fulfilled"))]


def test_agent_ticks_off_each_step_then_marks_the_request_fulfilled(
    as_agent: FlaskClient, factory, settings: Settings
) -> None:
    number = _password_reset(factory, settings)
    page = as_agent.get(f"/tickets/{number}").get_data(as_text=True)
    assert "Verify the caller&#39;s identity" in page and _step_buttons(page) == ["1", "2", "3"]
    assert "Mark fulfilled" not in page
    token = csrf_token(as_agent, f"/tickets/{number}")

    early = as_agent.post(f"/tickets/{number}/fulfilled", data={"csrf_token": token}, follow_redirects=True)
    assert "checklist not done" in early.get_data(as_text=True)
    as_agent.post(f"/tickets/{number}/steps/2/done", data={"csrf_token": token})
    twice = as_agent.post(f"/tickets/{number}/steps/2/done", data={"csrf_token": token}, follow_redirects=True)
    assert "step 2 is already done" in twice.get_data(as_text=True)
    assert "has no checklist step 4" in as_agent.post(
        f"/tickets/{number}/steps/4/done", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    page = as_agent.get(f"/tickets/{number}").get_data(as_text=True)
    assert _step_buttons(page) == ["1", "3"] and f"done by {STAFF[Role.AGENT]}" in page

    for step in (1, 3):
        as_agent.post(f"/tickets/{number}/steps/{step}/done", data={"csrf_token": token})
    page = as_agent.get(f"/tickets/{number}").get_data(as_text=True)
    assert _step_buttons(page) == [] and "Mark fulfilled" in page
    assert _fulfilled_mails(factory) == []

    done = as_agent.post(f"/tickets/{number}/fulfilled", data={"csrf_token": token}, follow_redirects=True)
    assert "requester is told by email" in done.get_data(as_text=True)
    assert _fulfilled_mails(factory) == [[USER]]
    with factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None and ticket.status is TicketStatus.RESOLVED
    assert "Mark fulfilled" not in as_agent.get(f"/tickets/{number}").get_data(as_text=True)


def test_approver_sees_the_checklist_without_buttons_and_may_not_tick(
    app: Flask, factory, settings: Settings
) -> None:
    number = _password_reset(factory, settings)
    # A password reset needs no approval: only an approver who sees all tickets reads it.
    app = create_app(replace(settings, access=replace(settings.access, approvers_see_all=True)), factory, testing=True)
    approver = login(app.test_client(), Role.APPROVER)
    page = approver.get(f"/tickets/{number}").get_data(as_text=True)
    assert "Verify the caller&#39;s identity" in page and _step_buttons(page) == []
    token = csrf_token(approver, f"/tickets/{number}")
    assert approver.post(f"/tickets/{number}/steps/1/done", data={"csrf_token": token}).status_code == 403


def test_change_form_cannot_resolve_a_request_with_steps_left_or_put_it_awaiting_approval(
    as_agent: FlaskClient, factory, settings: Settings
) -> None:
    number = _password_reset(factory, settings)
    page = as_agent.get(f"/tickets/{number}").get_data(as_text=True)
    assert 'value="resolved"' in page and 'value="awaiting_approval"' not in page  # not offered
    token = csrf_token(as_agent, f"/tickets/{number}")
    for status, why in (("resolved", "checklist not done"), ("awaiting_approval", "only when its process asks")):
        page = as_agent.post(f"/tickets/{number}/change", data={"csrf_token": token, "status": status},
                             follow_redirects=True).get_data(as_text=True)
        assert why in page
        with factory() as session:
            ticket = session.get(Ticket, number)
            assert ticket is not None and ticket.status is TicketStatus.IN_PROGRESS
    assert _fulfilled_mails(factory) == []
