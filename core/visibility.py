"""Which tickets a console or API user may read, and whether they see internal notes.

Agents and admins see everything. Approvers are there to decide: by default they see only the tickets
they are asked to decide (access requests, and service requests that need approval, of the groups
they approve), without the agents' internal notes. ``HELPDESK_APPROVERS_SEE_ALL=yes`` lifts that.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from helpdesk.core.approval import APPROVER_ROLE, approvers_for
from helpdesk.core.catalogue import catalogue_for
from helpdesk.core.models import AccessRequest, Contact, Fulfilment, Role, Ticket
from helpdesk.core.settings import Settings


def _limited(settings: Settings, user: Contact) -> bool:
    return user.role is Role.APPROVER and not settings.access.approvers_see_all


def decides_group(session: Session, settings: Settings, user: Contact, group: str | None) -> bool:
    """Whether the user is among a resource group's approvers (all approvers, for a group without named ones)."""
    return not group or group not in settings.access.approvers_by_group or user in approvers_for(session, settings, group)


def _groups_not_theirs(session: Session, settings: Settings, user: Contact) -> list[str]:
    return [g for g in settings.access.approvers_by_group if not decides_group(session, settings, user, g)]


def ticket_filter(session: Session, settings: Settings, user: Contact) -> ColumnElement[bool] | None:
    """A condition on Ticket for the tickets the user may read; None: all of them."""
    if not _limited(settings, user):
        return None
    excluded = _groups_not_theirs(session, settings, user)
    access = select(AccessRequest.ticket_id)
    if excluded:
        access = access.where(or_(AccessRequest.resource_group.is_(None), AccessRequest.resource_group.not_in(excluded)))
    items = [
        i.code for i in catalogue_for(settings).items
        if i.approval and (i.approver or APPROVER_ROLE) != APPROVER_ROLE and i.approver in excluded
    ]
    requests = select(Fulfilment.ticket_id).where(Fulfilment.approval_needed.is_(True))
    if items:
        requests = requests.where(Fulfilment.item.not_in(items))
    return or_(Ticket.id.in_(access), Ticket.id.in_(requests))


def may_read(session: Session, settings: Settings, user: Contact, ticket: Ticket) -> bool:
    where = ticket_filter(session, settings, user)
    return where is None or session.scalar(select(Ticket.id).where(Ticket.id == ticket.id, where)) is not None


def sees_notes(settings: Settings, user: Contact) -> bool:
    """Whether the user reads the agents' internal notes in a thread."""
    return not _limited(settings, user)
