"""Two approvers deciding one request at once (a mail and the console): the first decision counts, the second is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import access, fulfilment, tickets
from helpdesk.core.catalogue import load_catalogue
from helpdesk.core.db import transaction
from helpdesk.core.models import AccessGrant, AccessRequest, AccessStatus, Contact, Role, Ticket, TicketKind, TicketStatus
from helpdesk.core.settings import Settings

SETTINGS = Settings(data_dir=Path("."), database_url="sqlite://", address="help@example.org")
T = TypeVar("T")


def _approvers(session: Session) -> None:
    for name in ("ivy", "jack"):
        tickets.contact_for(session, f"{name}@example.org").role = Role.APPROVER


def _race(
    factory: sessionmaker[Session], load: Callable[[Session], T], decide: Callable[[Session, T, Contact], object]
) -> BaseException | None:
    """Ivy approves and holds her transaction open; Jack, who read the request still undecided before
    that, rejects it meanwhile in his own session and thread. What Jack's decision raised."""
    read, go = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def jack() -> None:
        with factory() as session:
            seen = load(session)
            read.set()
            go.wait(10)
            try:
                decide(session, seen, tickets.contact_for(session, "jack@example.org"))
                session.commit()
                outcome.append(None)
            except BaseException as exc:  # reported to the main thread
                session.rollback()
                outcome.append(exc)

    worker = threading.Thread(target=jack)
    worker.start()
    assert read.wait(10)
    with transaction(factory) as session:
        decide(session, load(session), tickets.contact_for(session, "ivy@example.org"))
        go.set()
        time.sleep(0.5)  # Jack's decision is under way (waiting for Ivy's commit) before she commits
    worker.join(30)
    assert not worker.is_alive() and len(outcome) == 1
    return outcome[0]


def test_second_access_decision_at_once_is_refused(session_factory) -> None:
    with transaction(session_factory) as session:
        _approvers(session)
        hank = tickets.contact_for(session, "hank@example.org")
        ticket = tickets.open_ticket(session, requester=hank, subject="Access to CRM", kind=TicketKind.ACCESS_REQUEST)
        number = access.open_request(session, SETTINGS, ticket.id, resource="CRM").id

    def load(session: Session) -> AccessRequest:
        request = session.get(AccessRequest, number)
        assert request is not None and request.status is AccessStatus.PENDING
        return request

    def decide(session: Session, request: AccessRequest, approver: Contact) -> object:
        return access.decide(session, SETTINGS, request, approver, approver.email.startswith("ivy"), "reason")

    refused = _race(session_factory, load, decide)
    assert isinstance(refused, access.AccessError) and "already approved" in str(refused)
    with session_factory() as session:
        request = session.get(AccessRequest, number)
        assert request is not None and request.status is AccessStatus.APPROVED
        assert request.decided_by is not None and request.decided_by.email == "ivy@example.org"
        assert session.scalar(select(func.count()).select_from(AccessGrant)) == 1


def test_second_request_decision_at_once_is_refused(session_factory) -> None:
    with transaction(session_factory) as session:
        _approvers(session)
        erin = tickets.contact_for(session, "erin@example.org")
        ticket = tickets.open_ticket(
            session, requester=erin, subject="A monitor", kind=TicketKind.SERVICE_REQUEST, catalogue_item="hardware",
        )
        fulfilment.start(session, SETTINGS, ticket, load_catalogue().get("hardware"))  # type: ignore[arg-type]
        number = ticket.id

    def load(session: Session) -> Ticket:
        ticket = session.get(Ticket, number)
        assert ticket is not None and ticket.status is TicketStatus.AWAITING_APPROVAL
        return ticket

    def decide(session: Session, ticket: Ticket, approver: Contact) -> object:
        return fulfilment.decide(session, SETTINGS, ticket, approver, approver.email.startswith("ivy"), "reason")

    refused = _race(session_factory, load, decide)
    assert isinstance(refused, fulfilment.FulfilmentError) and "not awaiting approval" in str(refused)
    with session_factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None and ticket.status is TicketStatus.IN_PROGRESS
