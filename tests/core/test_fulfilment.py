"""Request fulfilment: catalogue items, due dates, approval, steps told to the user."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.core import audit, fulfilment, processes, tickets
from helpdesk.core.approval import PolicyViolation
from helpdesk.core.catalogue import CatalogueError, catalogue_for, load_catalogue
from helpdesk.core.rulebook import load_rulebook
from helpdesk.core.db import transaction
from helpdesk.core.fulfilment import FulfilmentError, Step
from helpdesk.core.models import Direction, Message, Outbox, Role, TicketKind, TicketStatus
from helpdesk.core.settings import AccessSettings, Settings
from helpdesk.core.models import aware

SETTINGS = Settings(data_dir=Path("."), database_url="sqlite://", address="help@example.org")


def test_shipped_catalogue_has_the_standard_items():
    catalogue = load_catalogue()
    assert [i.code for i in catalogue.items] == [
        "password-reset", "new-software", "licence", "hardware", "standard-change", "access",
    ]
    assert catalogue.match("Bitte Passwort zurücksetzen").code == "password-reset"
    assert catalogue.match("Could I get a second monitor?").code == "hardware"
    assert catalogue.get("new-software").approval and catalogue.get("new-software").steps


def test_data_dir_catalogue_replaces_the_shipped_one(tmp_path):
    (tmp_path / "catalogue.toml").write_text(
        '[[item]]\ncode = "coffee"\nname = "Coffee"\nfulfilment_hours = 1\nsteps = ["brew"]\n', "utf-8"
    )
    catalogue = load_rulebook(tmp_path).catalogue
    assert [i.code for i in catalogue.items] == ["coffee"]
    (tmp_path / "catalogue.toml").write_text('[[item]]\ncode = "x"\nname = "X"\nfulfilment_hours = 1\napproval = true\n')
    with pytest.raises(CatalogueError, match="names no approver"):
        load_rulebook(tmp_path)


def _request(session, item_code: str, subject: str):
    user = tickets.contact_for(session, "erin@example.org")
    ticket = tickets.open_ticket(
        session, requester=user, subject=subject, kind=TicketKind.SERVICE_REQUEST, category="software",
        catalogue_item=item_code,
    )
    item = load_catalogue().get(item_code)
    return ticket, item


def _step_mails(session, ticket) -> list[str]:
    rows = session.scalars(select(Outbox).where(Outbox.ticket_id == ticket.id).order_by(Outbox.id))
    return [r.purpose for r in rows if r.recipients == ["erin@example.org"]]


def test_request_with_approval_goes_through_every_step_and_user_hears_of_each(session_factory):
    with transaction(session_factory) as session:
        approver = tickets.contact_for(session, "frank@example.org")
        approver.role = Role.APPROVER
        agent = tickets.contact_for(session, "gina@example.org")
        agent.role = Role.AGENT
        ticket, item = _request(session, "new-software", "Please install Inkscape")
        fulfilment.start(session, SETTINGS, ticket, item)
        assert ticket.status is TicketStatus.AWAITING_APPROVAL
        assert aware(ticket.due_at) - aware(ticket.created_at) == timedelta(hours=24)
        assert ticket.group == "desktop"
        asked = session.scalars(select(Outbox).where(Outbox.purpose == "approval_request")).one()
        assert asked.recipients == ["frank@example.org"] and b"#approve" in asked.raw

        with pytest.raises(FulfilmentError):  # no work before approval
            fulfilment.advance(session, SETTINGS, ticket, Step.IN_PROGRESS, actor=agent.email)
        with pytest.raises(PolicyViolation):  # agents do not approve
            fulfilment.decide(session, SETTINGS, ticket, agent, True)
        fulfilment.decide(session, SETTINGS, ticket, approver, True, "budget ok")
        assert ticket.status is TicketStatus.IN_PROGRESS

        with pytest.raises(FulfilmentError, match="checklist not done"):
            fulfilment.advance(session, SETTINGS, ticket, Step.FULFILLED, actor=agent.email)
        for n in range(len(item.steps)):
            fulfilment.complete_step(session, ticket, n, agent)
        fulfilment.advance(session, SETTINGS, ticket, Step.FULFILLED, actor=agent.email)
        fulfilment.advance(session, SETTINGS, ticket, Step.CLOSED, actor=agent.email)
        assert ticket.status is TicketStatus.CLOSED
        assert _step_mails(session, ticket) == [
            "request_awaiting_approval", "request_in_progress", "request_fulfilled", "request_closed",
        ]
        actions = [e.action for e in audit.history(session, "ticket", ticket.id)]
        assert "request.approve" in actions and actions.count("request.step") == 3
        assert audit.verify(session).ok


def test_rejected_request_is_closed_with_the_reason(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        approver = tickets.contact_for(session, "frank@example.org")
        approver.role = Role.APPROVER
        ticket, item = _request(session, "hardware", "I need a 4K monitor")
        fulfilment.start(session, SETTINGS, ticket, item)
        fulfilment.decide(session, SETTINGS, ticket, approver, False, "not in this year's budget")
        assert ticket.status is TicketStatus.CLOSED
        closed = session.scalars(select(Outbox).where(Outbox.purpose == "request_closed")).one()
        assert b"not in this year's budget" in closed.raw


def test_requester_cannot_approve_their_own_request(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ticket, item = _request(session, "licence", "Licence for PyCharm")
        ticket.requester.role = Role.APPROVER
        fulfilment.start(session, SETTINGS, ticket, item)
        with pytest.raises(PolicyViolation, match="made this request"):
            fulfilment.decide(session, SETTINGS, ticket, ticket.requester, True)


def test_request_without_approval_starts_at_once(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ticket, item = _request(session, "password-reset", "Password reset please")
        fulfilment.start(session, SETTINGS, ticket, item)
        assert ticket.status is TicketStatus.IN_PROGRESS
        assert aware(ticket.due_at) - aware(ticket.created_at) == timedelta(hours=4)
        assert _step_mails(session, ticket) == ["request_in_progress"]


def test_only_the_items_approver_group_decides_its_requests(sqlite_session_factory, tmp_path):
    (tmp_path / "catalogue.toml").write_text(
        '[[item]]\ncode = "budget"\nname = "Budget line"\nfulfilment_hours = 8\napproval = true\n'
        'approver = "finance"\nsteps = ["book it"]\n', "utf-8"
    )
    settings = replace(
        SETTINGS, data_dir=tmp_path, access=AccessSettings(approvers_by_group={"finance": ("fiona@example.org",)}),
        rulebook=load_rulebook(tmp_path),
    )
    item = catalogue_for(settings).get("budget")
    with transaction(sqlite_session_factory) as session:
        outsider = tickets.contact_for(session, "frank@example.org")
        finance = tickets.contact_for(session, "fiona@example.org")
        outsider.role = finance.role = Role.APPROVER
        ticket, _ = _request(session, "budget", "A budget line for the new lab")
        fulfilment.start(session, settings, ticket, item)
        asked = session.scalars(select(Outbox).where(Outbox.purpose == "approval_request")).one()
        assert asked.recipients == ["fiona@example.org"]
        with pytest.raises(PolicyViolation, match="not an approver for 'finance'"):
            fulfilment.decide(session, settings, ticket, outsider, True)
        assert ticket.status is TicketStatus.AWAITING_APPROVAL
        fulfilment.decide(session, settings, ticket, finance, True)
        assert ticket.status is TicketStatus.IN_PROGRESS


def test_request_put_in_progress_by_hand_is_not_worked_or_fulfilled_before_approval(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        agent = tickets.contact_for(session, "gina@example.org")
        agent.role = Role.AGENT
        ticket, item = _request(session, "new-software", "Please install Inkscape")
        fulfilment.start(session, SETTINGS, ticket, item)
        # The ticket's status is the agent's to change; approval is still the approvers' to give.
        tickets.change(session, ticket, agent.email, status=TicketStatus.IN_PROGRESS)
        with pytest.raises(FulfilmentError, match="not been approved"):
            fulfilment.complete_step(session, ticket, 0, agent)
        with pytest.raises(FulfilmentError, match="not been approved"):
            fulfilment.fulfil(session, SETTINGS, ticket, agent)
        assert ticket.status is TicketStatus.IN_PROGRESS


def test_status_set_by_hand_cannot_skip_approval_or_the_checklist(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ticket, item = _request(session, "new-software", "Please install Inkscape")
        fulfilment.start(session, SETTINGS, ticket, item)
        assert ticket.status is TicketStatus.AWAITING_APPROVAL
        for status in (TicketStatus.OPEN, TicketStatus.IN_PROGRESS, TicketStatus.RESOLVED, TicketStatus.CLOSED):
            with pytest.raises(tickets.TicketError, match="awaiting approval"):
                processes.check_staff_change(session, ticket, {"status": status})
        approver = tickets.contact_for(session, "ann@example.org")
        approver.role = Role.APPROVER
        fulfilment.decide(session, SETTINGS, ticket, approver, approve=True, reason="ok")
        assert ticket.status is TicketStatus.IN_PROGRESS
        with pytest.raises(tickets.TicketError, match="checklist not done"):
            processes.check_staff_change(session, ticket, {"status": TicketStatus.RESOLVED})
        with pytest.raises(tickets.TicketError, match="only when its process asks"):
            processes.check_staff_change(session, ticket, {"status": TicketStatus.AWAITING_APPROVAL})
        processes.check_staff_change(session, ticket, {"status": TicketStatus.PENDING})  # waiting on the user: fine
        agent = tickets.contact_for(session, "gina@example.org")
        for index in range(len(item.steps)):
            fulfilment.complete_step(session, ticket, index, agent)
        processes.check_staff_change(session, ticket, {"status": TicketStatus.RESOLVED})  # now allowed


def test_incident_status_is_free_to_change_by_hand_but_never_to_awaiting_approval(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        user = tickets.contact_for(session, "erin@example.org")
        ticket = tickets.open_ticket(session, requester=user, subject="VPN down", kind=TicketKind.INCIDENT, category="network")
        for status in (TicketStatus.IN_PROGRESS, TicketStatus.RESOLVED, TicketStatus.CLOSED):
            processes.check_staff_change(session, ticket, {"status": status})
        with pytest.raises(tickets.TicketError):
            processes.check_staff_change(session, ticket, {"status": TicketStatus.AWAITING_APPROVAL})


def test_an_approver_cannot_approve_a_request_for_a_plus_address_of_their_own(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        ivy = tickets.contact_for(session, "ivy@example.org")
        ivy.role = Role.APPROVER
        ticket, item = _request(session, "hardware", "A 4K monitor")
        tickets.append_message(session, ticket, Message(
            direction=Direction.IN, from_address="erin@example.org", subject=ticket.subject,
            text="Please order a 4K monitor for Ivy+Home@example.org, she works from home now."))
        fulfilment.start(session, SETTINGS, ticket, item)
        assert session.scalars(select(Outbox).where(Outbox.purpose == "approval_request")).all() == []
        with pytest.raises(PolicyViolation, match="would give ivy@example.org"):
            fulfilment.decide(session, SETTINGS, ticket, ivy, True)
        assert ticket.status is TicketStatus.AWAITING_APPROVAL
