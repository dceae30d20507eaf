"""Starting the ITIL process that a new ticket belongs to, and keeping hand-made changes within it.

Intake opens the ticket; this module hands it to its process: request fulfilment for a
catalogue item, access management for an access request (and for a request for the access
item), and SLA clocks for everything.
Staff set statuses by hand (console, API, ``#resolve`` by email); those may not skip a step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from helpdesk.core import access, audit, fulfilment, sla, tickets
from helpdesk.core.catalogue import Catalogue, CatalogueItem
from helpdesk.core.i18n import N_
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import Contact, Ticket, TicketKind, TicketStatus
from helpdesk.core.notify import notify_status
from helpdesk.core.priority import matrix_for, priority_for
from helpdesk.core.settings import Settings


def settle_kind(session: Session, catalogue: Catalogue, ticket: Ticket, mail: ParsedMail) -> CatalogueItem | None:
    """A service request for the access item is an access request: settled before anyone is told the kind.

    Once per new ticket; returns a service request's catalogue item, which ``start`` takes.
    """
    if ticket.kind is not TicketKind.SERVICE_REQUEST:
        return None
    item = _item(catalogue, ticket, mail)
    if item is not None and item.code == access.ACCESS_ITEM:
        # Access is decided by access management (its policy, the beneficiary, a grant that expires),
        # never as a plain catalogue request.
        tickets.change(
            session, ticket, audit.SYSTEM, kind=TicketKind.ACCESS_REQUEST, catalogue_item=item.code,
            reason=f"catalogue item {item.code}: an access request",
        )
    return item


def _item(catalogue: Catalogue, ticket: Ticket, mail: ParsedMail) -> CatalogueItem | None:
    return catalogue.get(ticket.catalogue_item) or catalogue.match(f"{mail.subject}\n{mail.reply_text or mail.text}")


def start(session: Session, settings: Settings, ticket: Ticket, mail: ParsedMail, item: CatalogueItem | None) -> None:
    """Hand a new ticket to its process; its kind is settled already (``settle_kind`` gave ``item``)."""
    if ticket.kind is TicketKind.SERVICE_REQUEST and item is not None:
        fulfilment.start(session, settings, ticket, item)
    if ticket.kind is TicketKind.ACCESS_REQUEST:
        wanted = access.read_request(mail)
        beneficiary = tickets.contact_for(session, wanted.beneficiary) if wanted.beneficiary else None
        # The rules' group for the mail is the resource group whose approvers decide (access.approvers_by_group).
        access.open_request(
            session, settings, ticket.id, resource=wanted.resource, beneficiary=beneficiary, resource_group=ticket.group,
        )
    sla.start(settings, ticket)


def statuses_by_hand(ticket: Ticket) -> list[TicketStatus]:
    """What a change form offers: the current status, and those staff may set (see ``check_staff_change``)."""
    if ticket.status is TicketStatus.AWAITING_APPROVAL:
        return [ticket.status]
    return [s for s in TicketStatus if s is not TicketStatus.AWAITING_APPROVAL]


def check_staff_change(session: Session, ticket: Ticket, fields: dict[str, object]) -> None:
    """Refuse a status set by hand that would skip a process's own steps (raises ``tickets.TicketError``)."""
    status = fields.get("status")
    if not isinstance(status, TicketStatus) or status is ticket.status:
        return
    if status is TicketStatus.AWAITING_APPROVAL:
        raise tickets.TicketError(N_("a ticket awaits approval only when its process asks for one"))
    if ticket.status is TicketStatus.AWAITING_APPROVAL:
        raise tickets.TicketError(N_("#%(number)s is awaiting approval: approve or reject it first"), number=ticket.id)
    try:
        fulfilment.check_status(session, ticket, status)
    except fulfilment.FulfilmentError as exc:
        raise tickets.TicketError(exc) from exc  # its words, marked for translation


def staff_change(
    session: Session, settings: Settings, ticket: Ticket, actor: Contact, fields: dict[str, Any], *, reason: str | None
) -> dict[str, Any]:
    """Staff change fields by hand (console, API, a command by email): within the process, audited; a new status
    is mailed to requester and watchers. Returns what really changed."""
    if ("impact" in fields or "urgency" in fields) and "priority" not in fields:
        # The desk's matrix gives the priority, unless one is chosen with them.
        impact, urgency = fields.get("impact", ticket.impact), fields.get("urgency", ticket.urgency)
        fields = {**fields, "priority": priority_for(impact, urgency, matrix_for(settings))}
    check_staff_change(session, ticket, fields)
    changed = tickets.change(session, ticket, actor.email, reason=reason, **fields)
    if "status" in changed:
        notify_status(session, settings, ticket, actor=actor.email)
    return changed
