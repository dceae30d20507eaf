"""Access and approvals from real mail through intake: access management decides, never a plain request."""

from __future__ import annotations

from dataclasses import replace
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from helpdesk.core import fulfilment, tickets
from helpdesk.core.approval import PolicyViolation
from helpdesk.core.db import transaction
from helpdesk.core.models import AccessGrant, AccessRequest, Contact, Role, Ticket, TicketKind
from helpdesk.core.settings import AccessSettings
from tests.core.desk import Desk, mail, make_desk

ALICE = "alice@example.com"
CAROL = "carol@example.org"  # an approver, and the one the access is for
SEC = "sec@example.org"  # an approver


@pytest.fixture
def desk(sqlite_session_factory, tmp_path) -> Desk:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.add_user(CAROL, Role.APPROVER)
    desk.add_user(SEC, Role.APPROVER)
    return desk


def _asked(desk: Desk, number: int) -> dict[str, EmailMessage]:
    return {r: m for r, m in desk.sent("approval_request") if m["X-Helpdesk-Ticket"] == str(number)}


def _answer(ours: EmailMessage, body: str, *, sender: str) -> bytes:
    return mail(sender, f"Re: {ours['Subject']}", body, to=ours["Reply-To"], in_reply_to=ours["Message-ID"])


def test_access_asked_for_in_request_wording_goes_to_access_management_not_to_its_beneficiary(desk: Desk) -> None:
    number = desk.deliver(mail(ALICE, "CRM", "Could you please set up CRM rights for carol@example.org?")).ticket_id
    detail = desk.ticket(number)
    assert (detail["kind"], detail["status"]) == ("access_request", "awaiting_approval")
    with desk.factory() as session:
        request = session.scalars(select(AccessRequest).where(AccessRequest.ticket_id == number)).one()
        assert (request.resource, request.requester.email, request.beneficiary.email) == ("CRM", ALICE, CAROL)
    asked = _asked(desk, number)
    assert list(asked) == [SEC]  # Carol would be deciding her own access
    [(_, ack)] = desk.sent("acknowledgement")  # and Alice is told what her mail became
    assert tickets.KIND_LABELS[TicketKind.ACCESS_REQUEST] in ack.get_body(("plain",)).get_content()

    desk.deliver(_answer(asked[SEC], "#approve she moved to sales", sender=SEC))
    with desk.factory() as session:
        [grant] = session.scalars(select(AccessGrant)).all()
        assert (grant.contact.email, grant.resource, grant.request.decided_by.email) == (CAROL, "CRM", SEC)
        assert grant.expires_at > grant.granted_at


def test_a_catalogue_request_for_someone_else_is_neither_put_to_them_nor_decided_by_them(desk: Desk) -> None:
    number = desk.deliver(mail(ALICE, "New laptop", "Could you please order a laptop for carol@example.org?")).ticket_id
    detail = desk.ticket(number)
    assert (detail["kind"], detail["catalogue_item"], detail["status"]) == (
        "service_request", "hardware", "awaiting_approval",
    )
    assert list(_asked(desk, number)) == [SEC]
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, number)
        carol = session.scalars(select(Contact).where(Contact.email == CAROL)).one()
        with pytest.raises(PolicyViolation, match="carol@example.org"):
            fulfilment.decide(session, desk.settings, ticket, carol, True)


def _notes(desk: Desk, number: int) -> list[str]:
    return [m["text"] for m in desk.ticket(number)["messages"] if m["internal"]]


def test_reject_with_its_reason_on_the_line_below_tells_the_requester_that_reason(desk: Desk) -> None:
    number = desk.deliver(mail(ALICE, "Access to the finance share", "I need it for the audit.")).ticket_id
    ask = _asked(desk, number)[SEC]
    desk.deliver(_answer(ask, "#reject\nPlease ask your manager to request it.\nThey own the share.\n\nSec", sender=SEC))
    [(rcpt, told)] = desk.sent("access_decision")
    text = told.get_body(("plain",)).get_content()
    assert rcpt == ALICE and "Please ask your manager to request it. They own the share." in text
    assert "no reason given" not in text
    with desk.factory() as session:
        request = session.scalars(select(AccessRequest).where(AccessRequest.ticket_id == number)).one()
        assert request.reason == "Please ask your manager to request it. They own the share."  # not the signature
    assert any("reason taken from the text below #reject" in n for n in _notes(desk, number))


def test_reject_without_any_reason_is_not_applied(desk: Desk) -> None:
    number = desk.deliver(mail(ALICE, "Access to the finance share", "I need it for the audit.")).ticket_id
    desk.deliver(_answer(_asked(desk, number)[SEC], "#reject", sender=SEC))
    assert desk.ticket(number)["status"] == "awaiting_approval" and desk.sent("access_decision") == []
    assert any("#reject needs a reason" in n for n in _notes(desk, number))


def test_the_rules_group_of_an_access_mail_chooses_its_approvers(desk: Desk) -> None:
    settings = replace(desk.settings, access=AccessSettings(approvers_by_group={"security": (SEC,)}))
    desk = Desk(desk.factory, settings)
    number = desk.deliver(mail(ALICE, "Access to the finance share", "I need it for the audit.")).ticket_id
    with desk.factory() as session:
        request = session.scalars(select(AccessRequest).where(AccessRequest.ticket_id == number)).one()
        assert request.ticket.group == "security"  # the shipped access-request rule's group
        assert request.resource_group == "security"
    assert list(_asked(desk, number)) == [SEC]  # not Carol: she approves for no group named "security"
