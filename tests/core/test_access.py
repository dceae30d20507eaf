"""Access management: policy enforced in core, grants with expiry, revocation, audit."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.core import access, audit, tickets
from helpdesk.core.access import AccessError, PolicyViolation
from helpdesk.core.db import transaction
from helpdesk.core.mail import Address, ParsedMail
from helpdesk.core.models import AccessStatus, Fulfilment, Outbox, Role, Ticket, TicketKind, TicketStatus, utcnow
from helpdesk.core.settings import AccessSettings, Settings
from helpdesk.core.models import aware

SETTINGS = Settings(data_dir=Path("."), database_url="sqlite://", address="help@example.org")


def _people(session):
    people = {}
    for name, role in (("hank", Role.USER), ("ivy", Role.APPROVER), ("jack", Role.APPROVER), ("kim", Role.AGENT)):
        people[name] = tickets.contact_for(session, f"{name}@example.org")
        people[name].role = role
    session.flush()
    return people


def _sent_to(session, purpose: str) -> list[str]:
    rows = session.scalars(select(Outbox).where(Outbox.purpose == purpose).order_by(Outbox.id))
    return [r for row in rows for r in row.recipients]


def _access_request(session, settings, requester, beneficiary=None, resource="finance share", group=None):
    ticket = tickets.open_ticket(
        session, requester=requester, subject=f"Access to {resource}", kind=TicketKind.ACCESS_REQUEST,
        category="access",
    )
    return access.open_request(session, settings, ticket.id, resource=resource, beneficiary=beneficiary,
                               resource_group=group)


def test_approval_grants_access_with_expiry_and_opens_fulfilment_task(session_factory):
    with transaction(session_factory) as session:
        p = _people(session)
        request = _access_request(session, SETTINGS, p["hank"])
        assert request.ticket.status is TicketStatus.AWAITING_APPROVAL
        assert _sent_to(session, "approval_request") == ["ivy@example.org", "jack@example.org"]

        grant = access.decide(session, SETTINGS, request, p["ivy"], True, "needed for month-end close")
        assert request.status is AccessStatus.APPROVED and request.decided_by.email == "ivy@example.org"
        assert grant.contact.email == "hank@example.org" and grant.resource == "finance share"
        assert aware(grant.expires_at) - aware(grant.granted_at) == timedelta(days=90)
        task = session.get(Ticket, grant.fulfilment_ticket_id)
        assert task.kind is TicketKind.SERVICE_REQUEST and task.catalogue_item == "access"
        assert task.status is TicketStatus.IN_PROGRESS and task.linked_ticket_id == request.ticket_id
        assert session.get(Fulfilment, task.id).approved is True
        told = session.scalars(select(Outbox).where(Outbox.purpose == "access_decision")).one()
        assert told.recipients == ["hank@example.org"] and b"approved" in told.raw
        assert request.ticket.status is TicketStatus.RESOLVED

        with pytest.raises(AccessError):
            access.decide(session, SETTINGS, request, p["jack"], False, "too late")
        trail = [e.action for e in audit.history(session, "access_request", request.id)]
        assert trail == ["access.request", "access.approve"]
        assert [e.action for e in audit.history(session, "access_grant", grant.id)] == ["access.grant"]
        assert audit.verify(session).ok


@pytest.mark.parametrize(
    "who, requester, beneficiary, message",
    [
        ("kim", "hank", None, "not an approver"),
        ("hank", "ivy", "hank", "not an approver"),  # a plain user deciding their own access
        ("ivy", "ivy", "hank", "made this request"),
        ("ivy", "hank", "ivy", "give ivy@example.org access"),
    ],
)
def test_policy_refuses_decisions(sqlite_session_factory, who, requester, beneficiary, message):
    with transaction(sqlite_session_factory) as session:
        p = _people(session)
        request = _access_request(session, SETTINGS, p[requester], p[beneficiary] if beneficiary else None)
        with pytest.raises(PolicyViolation, match=message):
            access.decide(session, SETTINGS, request, p[who], True, "please")
        assert request.status is AccessStatus.PENDING
        assert access.expiring(session, timedelta(days=365)) == []


def test_approver_is_not_asked_about_their_own_access(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        p = _people(session)
        _access_request(session, SETTINGS, p["hank"], p["ivy"])
        assert _sent_to(session, "approval_request") == ["jack@example.org"]


def test_resource_group_routes_to_its_own_approvers(sqlite_session_factory):
    settings = replace(SETTINGS, access=AccessSettings(grant_days=30, approvers_by_group={"hr": ("jack@example.org",)}))
    with transaction(sqlite_session_factory) as session:
        p = _people(session)
        request = _access_request(session, settings, p["hank"], resource="HR salary folder", group="hr")
        assert _sent_to(session, "approval_request") == ["jack@example.org"]
        with pytest.raises(PolicyViolation, match="not an approver for 'hr'"):
            access.decide(session, settings, request, p["ivy"], True)
        grant = access.decide(session, settings, request, p["jack"], True)
        assert aware(grant.expires_at) - aware(grant.granted_at) == timedelta(days=30)


def test_rejection_tells_requester_and_grants_nothing(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        p = _people(session)
        request = _access_request(session, SETTINGS, p["hank"])
        assert access.decide(session, SETTINGS, request, p["jack"], False, "use the shared reports instead") is None
        told = session.scalars(select(Outbox).where(Outbox.purpose == "access_decision")).one()
        assert b"rejected" in told.raw and b"use the shared reports instead" in told.raw
        assert request.status is AccessStatus.REJECTED


def test_expiring_grants_are_flagged_and_can_be_revoked(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        p = _people(session)
        soon = access.decide(session, SETTINGS, _access_request(session, SETTINGS, p["hank"], resource="VPN"), p["ivy"], True)
        later = access.decide(session, SETTINGS, _access_request(session, SETTINGS, p["hank"], resource="CRM"), p["ivy"], True)
        soon.expires_at = utcnow() + timedelta(days=3)
        session.flush()
        assert access.expiring(session, timedelta(days=7)) == [soon]
        assert soon.revoked_at is None and later.revoked_at is None

        for not_allowed in ("hank", "kim"):  # the user, an agent
            with pytest.raises(PolicyViolation, match="only approvers and admins"):
                access.revoke(session, SETTINGS, later, p[not_allowed], "I want it gone")
        assert later.revoked_at is None
        access.revoke(session, SETTINGS, later, p["jack"], "left the sales team")
        assert later.revoked_by == "jack@example.org"
        assert later.revoked_at is not None and soon.revoked_at is None
        with pytest.raises(AccessError):
            access.revoke(session, SETTINGS, later, p["jack"], "again")
        told = session.scalars(select(Outbox).where(Outbox.purpose == "access_revoked")).one()
        assert told.recipients == ["hank@example.org"] and b"left the sales team" in told.raw
        assert audit.history(session, "access_grant", later.id)[-1].reason == "left the sales team"


@pytest.mark.parametrize(
    "subject, body, resource, beneficiary",
    [
        ("Access to the finance share", "Hi, I need this for the audit.", "finance share", None),
        ("Request", "Please grant access to SAP HR for lisa.new@example.org, she starts Monday.", "SAP HR",
         "lisa.new@example.org"),
        ("Zugriff", "Ich brauche Zugriff auf das Projektlaufwerk P: bitte.", "Projektlaufwerk P:", None),
        ("Need permissions on Jira project OPS", "", "Jira project OPS", None),
        ("CRM", "Could you please set up CRM rights for carol@example.org?", "CRM", "carol@example.org"),
    ],
)
def test_reads_resource_and_beneficiary_from_mail(subject, body, resource, beneficiary):
    mail = ParsedMail(from_=Address("hank@example.org"), subject=subject, text=body)
    assert access.read_request(mail) == access.RequestedAccess(resource, beneficiary)
