"""Request fulfilment: a service request follows its catalogue item from logging to closure.

logged -> (awaiting approval) -> in progress -> fulfilled -> closed; the user is told each step.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.core import approval, audit, notify, tickets
from helpdesk.core.catalogue import CatalogueItem, catalogue_for
from helpdesk.core.i18n import N_, Refusal, Word
from helpdesk.core.models import Contact, Fulfilment, Ticket, TicketStatus, aware, utcnow
from helpdesk.core.notify import enqueue, enqueue_resolution
from helpdesk.core.settings import BusinessHours, Settings
from helpdesk.core.sla import add_business_time


class Step(enum.Enum):
    LOGGED = "logged"
    AWAITING_APPROVAL = "awaiting approval"
    IN_PROGRESS = "in progress"
    FULFILLED = "fulfilled"
    CLOSED = "closed"


STATUS_OF = {
    Step.LOGGED: TicketStatus.NEW,
    Step.AWAITING_APPROVAL: TicketStatus.AWAITING_APPROVAL,
    Step.IN_PROGRESS: TicketStatus.IN_PROGRESS,
    Step.FULFILLED: TicketStatus.RESOLVED,
    Step.CLOSED: TicketStatus.CLOSED,
}
_STEP_OF = {status: step for step, status in STATUS_OF.items()} | {
    TicketStatus.OPEN: Step.LOGGED,  # an agent answered before work started
    TicketStatus.PENDING: Step.IN_PROGRESS,  # waiting on the user mid-fulfilment
}
_NEXT: dict[Step, frozenset[Step]] = {
    Step.LOGGED: frozenset({Step.AWAITING_APPROVAL, Step.IN_PROGRESS, Step.CLOSED}),
    Step.AWAITING_APPROVAL: frozenset({Step.IN_PROGRESS, Step.CLOSED}),
    Step.IN_PROGRESS: frozenset({Step.FULFILLED, Step.CLOSED}),
    Step.FULFILLED: frozenset({Step.CLOSED, Step.IN_PROGRESS}),
    Step.CLOSED: frozenset(),
}


class FulfilmentError(Refusal):
    """A step that cannot be taken now, with a reason fit to show."""


def step_of(ticket: Ticket) -> Step:
    return _STEP_OF[ticket.status]


def schedule(session: Session, ticket: Ticket, item: CatalogueItem, *, hours: BusinessHours | None = None) -> datetime:
    """Set the ticket's due date from the item's fulfilment target, counted from logging."""
    due = add_business_time(ticket.created_at, item.fulfilment, hours)
    before = ticket.due_at
    ticket.due_at = due
    audit.record(
        session, actor=audit.SYSTEM, action="request.schedule", object_type="ticket", object_id=ticket.id,
        before={"due_at": before}, after={"due_at": due}, reason=f"catalogue item {item.code}: {item.fulfilment}",
        flush=False,  # with the step that follows it (start's advance)
    )
    return due


def start(
    session: Session,
    settings: Settings,
    ticket: Ticket,
    item: CatalogueItem,
    *,
    actor: str = audit.SYSTEM,
    approved_by: Contact | None = None,
) -> Fulfilment:
    """Take a new service request on: checklist, due date, then approval or work.

    ``approved_by``: the approval was already given elsewhere (an access request's decision).
    """
    record = Fulfilment(
        ticket_id=ticket.id,
        item=item.code,
        approval_needed=item.approval,
        checklist=[{"step": s, "done_by": None, "done_at": None} for s in item.steps],
    )
    if approved_by is not None:
        record.approved, record.decided_by, record.decided_at = True, approved_by.email, utcnow()
    session.add(record)  # written with the first step's change (advance finds it pending: _record)
    if ticket.catalogue_item != item.code or (item.group and not ticket.group):
        tickets.change(session, ticket, actor, catalogue_item=item.code, group=ticket.group or item.group)
    schedule(session, ticket, item, hours=settings.sla.business_hours)
    if item.approval and approved_by is None:
        advance(session, settings, ticket, Step.AWAITING_APPROVAL, actor=actor, reason=f"{item.name} needs approval")
        _ask_approvers(session, settings, ticket, item)
    else:
        advance(session, settings, ticket, Step.IN_PROGRESS, actor=actor)
    session.flush()
    return record


def _group(item: CatalogueItem | None) -> str | None:
    """The resource group whose approvers decide the item; None: anyone with the approver role."""
    return None if item is None or item.approver == approval.APPROVER_ROLE else item.approver


def _approver_group(settings: Settings, record: Fulfilment) -> str | None:
    return _group(catalogue_for(settings).get(record.item))


def _beneficiary(session: Session, ticket: Ticket) -> Contact | None:
    """Whom the opening mail asks for, when not the requester ("a laptop for bob@..."); None if nobody we know."""
    address = approval.named_beneficiary(ticket.requester.email, *approval.opening_texts(session, ticket.id))
    return session.scalars(select(Contact).where(Contact.email == address)).first() if address else None


def _ask_approvers(session: Session, settings: Settings, ticket: Ticket, item: CatalogueItem) -> None:
    group = _group(item)
    beneficiary = _beneficiary(session, ticket) or ticket.requester
    # Nobody is asked to decide a request they could not decide (core.approval.ensure_may_decide).
    named = approval.named_beneficiaries(*approval.opening_texts(session, ticket.id))
    to = [a.email for a in approval.approvers_for(session, settings, group)
          if approval.may_be_asked(a, ticket.requester, beneficiary, named)]
    enqueue(
        session, settings, template="approval_request", ticket=ticket, to=to,
        context={"what": item.name, "requester": ticket.requester, "beneficiary": beneficiary, "reason": None},
        purpose="approval_request", record=False,
    )


def advance(
    session: Session, settings: Settings, ticket: Ticket, to: Step, *, actor: str, reason: str | None = None
) -> Step:
    """Move the request one step on, audited, and tell the user."""
    current = step_of(ticket)
    if to not in _NEXT[current]:
        raise FulfilmentError(N_("a request that is %(current)s cannot become %(to)s"), current=Word(current.value),
                              to=Word(to.value))
    _check_work(ticket, _record(session, ticket), to)
    tickets.change(session, ticket, actor, status=STATUS_OF[to], reason=reason)
    _tell_user(session, settings, ticket, to, reason)
    return to


def check_status(session: Session, ticket: Ticket, status: TicketStatus) -> None:
    """Refuse a status set by hand (console, API, ``#resolve``) that the steps themselves would refuse."""
    step = _STEP_OF.get(status)
    if step in (Step.IN_PROGRESS, Step.FULFILLED):
        _check_work(ticket, session.get(Fulfilment, ticket.id), step)


def _check_work(ticket: Ticket, record: Fulfilment | None, to: Step) -> None:
    if record is None or to not in (Step.IN_PROGRESS, Step.FULFILLED):
        return
    if record.approval_needed and not record.approved:
        raise FulfilmentError(N_("request #%(number)s has not been approved"), number=ticket.id)
    undone = [c["step"] for c in record.checklist if not c.get("done_at")]
    if to is Step.FULFILLED and undone:
        raise FulfilmentError(N_("checklist not done: %(steps)s"), steps="; ".join(undone))


def _record(session: Session, ticket: Ticket) -> Fulfilment | None:
    """The ticket's fulfilment record, also one ``start`` added and no flush has written yet."""
    for pending in session.new:
        if isinstance(pending, Fulfilment) and pending.ticket_id == ticket.id:
            return pending
    return session.get(Fulfilment, ticket.id)


def _tell_user(session: Session, settings: Settings, ticket: Ticket, step: Step, reason: str | None) -> None:
    record = _record(session, ticket)
    context: dict[str, Any] = {
        "step": step.value,
        "reason": reason,
        "due_at": aware(ticket.due_at).astimezone(UTC) if ticket.due_at else None,
        "checklist": record.checklist if record else [],
    }
    send = enqueue_resolution if step is Step.FULFILLED else enqueue  # the fulfilled mail asks for satisfaction
    send(
        session, settings, template="request_step", ticket=ticket, to=notify.public_recipients(settings, ticket),
        context={**context, "survey": None}, purpose=f"request_{step.name.lower()}",
    )


def decide(
    session: Session, settings: Settings, ticket: Ticket, approver: Contact, approve: bool, reason: str | None = None
) -> Step:
    """An approver's decision on a catalogue request that needs approval."""
    record = session.get(Fulfilment, ticket.id)
    if record is None or not record.approval_needed:
        raise FulfilmentError(N_("request #%(number)s needs no approval"), number=ticket.id)
    approval.lock_for_decision(session, record, ticket)
    if step_of(ticket) is not Step.AWAITING_APPROVAL:
        raise FulfilmentError(N_("request #%(number)s is not awaiting approval"), number=ticket.id)
    try:
        group = _approver_group(settings, record)
        approval.ensure_may_decide(
            session, settings, approver, requester=ticket.requester, beneficiary=_beneficiary(session, ticket),
            named=approval.named_beneficiaries(*approval.opening_texts(session, ticket.id)), group=group,
        )
    except approval.PolicyViolation as exc:
        # A refusal is evidence too (as for access requests); the caller's transaction keeps it or not.
        audit.record(
            session, actor=approver.email, action="request.refused", object_type="ticket", object_id=ticket.id,
            reason=str(exc),
        )
        raise
    record.approved, record.decided_by, record.decided_at = approve, approver.email, utcnow()
    audit.record(
        session, actor=approver.email, action="request.approve" if approve else "request.reject",
        object_type="ticket", object_id=ticket.id, after={"approved": approve, "item": record.item}, reason=reason,
    )
    if approve:
        return advance(session, settings, ticket, Step.IN_PROGRESS, actor=approver.email, reason=reason or "approved")
    return advance(session, settings, ticket, Step.CLOSED, actor=approver.email, reason=reason or "rejected")


def complete_step(session: Session, ticket: Ticket, index: int, actor: Contact) -> list[dict[str, Any]]:
    """Tick one checklist step off (0-based), audited."""
    record = session.get(Fulfilment, ticket.id)
    if record is None or not 0 <= index < len(record.checklist):
        raise FulfilmentError(N_("request #%(number)s has no checklist step %(step)s"), number=ticket.id, step=index + 1)
    if step_of(ticket) is not Step.IN_PROGRESS:
        raise FulfilmentError(N_("request #%(number)s is not in progress"), number=ticket.id)
    _check_work(ticket, record, Step.IN_PROGRESS)  # the status may have been set by hand before this check existed
    if record.checklist[index].get("done_at"):
        raise FulfilmentError(N_("step %(step)s is already done (by %(by)s)"), step=index + 1,
                             by=record.checklist[index].get("done_by"))
    checklist = [dict(c) for c in record.checklist]
    checklist[index].update(done_by=actor.email, done_at=utcnow().isoformat())
    record.checklist = checklist  # a new list, so the JSON column sees the change
    audit.record(
        session, actor=actor.email, action="request.step", object_type="ticket", object_id=ticket.id,
        after={"step": checklist[index]["step"]},
    )
    session.flush()
    return checklist


def fulfil(session: Session, settings: Settings, ticket: Ticket, actor: Contact) -> Step:
    """Mark a service request fulfilled once its checklist is done; the user is told."""
    if session.get(Fulfilment, ticket.id) is None:
        raise FulfilmentError(N_("#%(number)s is not a service request with a checklist"), number=ticket.id)
    return advance(session, settings, ticket, Step.FULFILLED, actor=actor.email, reason=None)
