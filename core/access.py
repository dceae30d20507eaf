"""Access management: requests for access, approvers' decisions, grants with an expiry.

Policy lives here (and in core.approval), not in the console: only approvers decide, nobody
decides a request they made or that would give them access, and every decision is audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.core import approval, audit, fulfilment, notify, tickets
from helpdesk.core.approval import PolicyViolation
from helpdesk.core.catalogue import catalogue_for
from helpdesk.core.i18n import N_, Refusal, Word
from helpdesk.core.locks import serialise
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import (
    AccessGrant,
    AccessRequest,
    AccessStatus,
    AuditEntry,
    Contact,
    Role,
    Ticket,
    TicketKind,
    TicketStatus,
    aware,
    utcnow,
)
from helpdesk.core.notify import enqueue, enqueue_resolution
from helpdesk.core.settings import Settings

__all__ = [
    "AccessError", "PolicyViolation", "decide", "expiring", "open_request", "read_request", "revoke", "warn_expiring",
]

ACCESS_ITEM = "access"


class AccessError(Refusal):
    """An access action that cannot be done now (already decided, already revoked)."""


@dataclass(frozen=True)
class RequestedAccess:
    """What a mail asks for: the resource, and whose access it is when not the sender's."""

    resource: str
    beneficiary: str | None


_RESOURCE = re.compile(
    # "rights for bob@example.org" names whom, not what: an address is never the resource.
    r"(?:access|permissions?|rights)\s+(?:to|for|on)\s+(?:the\s+)?(?![\w.+-]+@)(?P<r>[^\n.,;!?()]{2,80}?)"
    r"(?=\s+(?:for|please|because|so)\b|[\n.,;!?()]|$)"
    r"|(?:zugriff|berechtigung(?:en)?)\s+(?:auf|f[üu]r)\s+(?:das\s+|den\s+|die\s+)?(?P<d>[^\n.,;!?()]{2,80}?)"
    r"(?=\s+(?:f[üu]r|bitte|weil)\b|[\n.,;!?()]|$)",
    re.IGNORECASE,
)
# "CRM rights for bob@...": the word before; not a kind of access ("read access", "admin rights").
_RESOURCE_BEFORE = re.compile(
    r"(?<![\w-])(?!(?:read|write|admin|administrator|full|some|the|my|his|her|their|any|more|of|up)\b)"
    r"(?P<r>[\w-]{2,40})\s+(?:access|permissions?|rights)\b",
    re.IGNORECASE,
)


def read_request(mail: ParsedMail) -> RequestedAccess:
    """The resource and beneficiary a mail names ("access to the finance share for bob@...")."""
    texts = (mail.subject, mail.reply_text or mail.text)
    for text in texts:
        m = _RESOURCE.search(text)
        if m:
            resource = (m.group("r") or m.group("d")).strip()
            break
    else:
        before = next((m for m in map(_RESOURCE_BEFORE.search, texts) if m), None)
        resource = before.group("r") if before else mail.subject.strip() or "(unspecified)"
    return RequestedAccess(resource=resource[:200], beneficiary=approval.named_beneficiary(mail.sender, *texts))


def open_request(
    session: Session,
    settings: Settings,
    ticket_id: int,
    *,
    resource: str,
    beneficiary: Contact | None = None,
    resource_group: str | None = None,
    actor: str = audit.SYSTEM,
) -> AccessRequest:
    """Record an access request for a ticket and route it to its approvers."""
    ticket = session.get(Ticket, ticket_id)  # usually just opened: no query
    if ticket is None:
        raise AccessError(N_("no ticket #%(number)s"), number=ticket_id)
    request = AccessRequest(
        ticket_id=ticket.id,
        resource=resource,
        resource_group=resource_group,
        requester=ticket.requester,
        beneficiary=beneficiary or ticket.requester,
    )
    session.add(request)
    session.flush()
    audit.record(
        session, actor=actor, action="access.request", object_type="access_request", object_id=request.id,
        after=_snapshot(request), flush=False,  # goes in with the status change next (one flush less)
    )
    if ticket.status is not TicketStatus.AWAITING_APPROVAL:
        tickets.change(session, ticket, actor, status=TicketStatus.AWAITING_APPROVAL, reason="access needs approval")
    # Nobody is asked to decide a request they could not decide.
    named = approval.named_beneficiaries(*approval.opening_texts(session, ticket.id))
    to = [a.email for a in approval.approvers_for(session, settings, resource_group)
          if approval.may_be_asked(a, request.requester, request.beneficiary, named)]
    enqueue(
        session, settings, template="approval_request", ticket=ticket, to=to,
        context={"what": f"access to {resource}", "requester": request.requester,
                 "beneficiary": request.beneficiary, "reason": None},
        purpose="approval_request", record=False,
    )
    return request


def _snapshot(request: AccessRequest) -> dict[str, object]:
    return {
        "resource": request.resource,
        "resource_group": request.resource_group,
        "requester": request.requester.email,
        "beneficiary": request.beneficiary.email,
        "status": request.status.value,
        "decided_by": request.decided_by.email if request.decided_by else None,
    }


def decide(
    session: Session,
    settings: Settings,
    request: AccessRequest,
    approver: Contact,
    approve: bool,
    reason: str | None = None,
) -> AccessGrant | None:
    """Approve (grant with expiry + fulfilment task) or reject; audited; the requester is told."""
    approval.lock_for_decision(session, request)
    if request.status is not AccessStatus.PENDING:
        raise AccessError(N_("access request %(id)s was already %(status)s"), id=request.id, status=Word(request.status.value))
    try:
        approval.ensure_may_decide(
            session, settings, approver, requester=request.requester, beneficiary=request.beneficiary,
            named=approval.named_beneficiaries(*approval.opening_texts(session, request.ticket_id)), group=request.resource_group,
        )
    except PolicyViolation as exc:
        # Refusals are evidence too; recorded and the caller's transaction decides whether it stays.
        audit.record(
            session, actor=approver.email, action="access.refused", object_type="access_request",
            object_id=request.id, reason=str(exc),
        )
        raise
    before = _snapshot(request)
    request.status = AccessStatus.APPROVED if approve else AccessStatus.REJECTED
    request.decided_by, request.decided_at, request.reason = approver, utcnow(), reason
    session.flush()
    audit.record(
        session, actor=approver.email, action="access.approve" if approve else "access.reject",
        object_type="access_request", object_id=request.id, before=before, after=_snapshot(request), reason=reason,
    )
    grant = _grant(session, settings, request, approver) if approve else None
    ticket = request.ticket
    enqueue_resolution(  # the decision resolves the request: the requester's copy asks for satisfaction
        session, settings, template="access_decision", ticket=ticket,
        to=notify.public_recipients(settings, ticket) + [request.beneficiary.email],
        context={"request": request, "approved": approve, "reason": reason, "grant": grant},
        purpose="access_decision",
    )
    note = f"approved: {reason}" if approve else f"rejected: {reason or 'no reason given'}"
    tickets.change(session, ticket, approver.email, status=TicketStatus.RESOLVED, reason=note)
    return grant


def _grant(session: Session, settings: Settings, request: AccessRequest, approver: Contact) -> AccessGrant:
    item = catalogue_for(settings).get(ACCESS_ITEM)
    task = tickets.open_ticket(
        session,
        requester=request.requester,
        subject=f"Grant access to {request.resource} for {request.beneficiary.email}",
        kind=TicketKind.SERVICE_REQUEST,
        category="access",
        catalogue_item=ACCESS_ITEM,
        group=item.group if item else None,
        linked_ticket_id=request.ticket_id,
        actor=approver.email,
    )
    now = utcnow()
    grant = AccessGrant(
        request_id=request.id,
        contact_id=request.beneficiary_id,
        resource=request.resource,
        granted_by_id=approver.id,
        granted_at=now,
        expires_at=now + timedelta(days=settings.access.grant_days),
        fulfilment_ticket_id=task.id,
    )
    session.add(grant)
    session.flush()
    audit.record(
        session, actor=approver.email, action="access.grant", object_type="access_grant", object_id=grant.id,
        after={"resource": grant.resource, "holder": request.beneficiary.email, "expires_at": grant.expires_at,
               "fulfilment_ticket": task.id},
    )
    if item is not None:
        fulfilment.start(session, settings, task, item, actor=approver.email, approved_by=approver)
    return grant


def expiring(session: Session, within: timedelta, now: datetime | None = None) -> list[AccessGrant]:
    """Grants still in force that expire within ``within`` (or already have), soonest first."""
    until = (now or utcnow()) + within
    query = (
        select(AccessGrant)
        .where(AccessGrant.revoked_at.is_(None), AccessGrant.expires_at <= until)
        .order_by(AccessGrant.expires_at)
    )
    return list(session.scalars(query))


EXPIRY_WARNING = "access.expiring"


@dataclass(frozen=True)
class ExpiryRun:
    warned: list[int]  # grants whose holder (and approvers) were told they expire soon
    expired: list[int]  # grants past their expiry, now ended


def warn_expiring(session: Session, settings: Settings, now: datetime | None = None) -> ExpiryRun:
    """The scheduled expiry check: warn once per grant before it expires, end the expired ones."""
    now = aware(now or utcnow())
    serialise(session)  # two schedulers must not both warn
    due = expiring(session, timedelta(days=settings.access.expiry_warning_days), now)
    warned_before = set(
        session.scalars(
            select(AuditEntry.object_id).where(
                AuditEntry.action == EXPIRY_WARNING,
                AuditEntry.object_type == "access_grant",
                AuditEntry.object_id.in_([g.id for g in due]),
            )
        )
    ) if due else set()
    run = ExpiryRun([], [])
    for grant in due:
        if aware(grant.expires_at) <= now:
            revoke(session, settings, grant, audit.SYSTEM, f"expired on {aware(grant.expires_at):%Y-%m-%d}")
            run.expired.append(grant.id)
        elif grant.id not in warned_before:
            _warn(session, settings, grant)
            run.warned.append(grant.id)
    return run


def _warn(session: Session, settings: Settings, grant: AccessGrant) -> None:
    request = grant.request
    approvers = [a.email for a in approval.approvers_for(session, settings, request.resource_group) if a.id != grant.contact_id]
    queued = enqueue(
        session, settings, template="access_expiring", ticket=request.ticket, to=[grant.contact.email, *approvers],
        context={"grant": grant, "expires_at": aware(grant.expires_at)}, purpose="access_expiring", record=False,
    )
    audit.record(
        session, actor=audit.SYSTEM, action=EXPIRY_WARNING, object_type="access_grant", object_id=grant.id,
        after={"expires_at": grant.expires_at, "notified": [r for row in queued.rows for r in row.recipients]},
        reason=f"expires within {settings.access.expiry_warning_days} days",
    )


def revoke(
    session: Session, settings: Settings, grant: AccessGrant, actor: Contact | str, reason: str
) -> AccessGrant:
    """Take access away before (or at) its expiry; ``actor`` is an approver or admin, or "system" for expiry runs."""
    who = actor if isinstance(actor, str) else actor.email
    if not isinstance(actor, str) and actor.role not in (Role.APPROVER, Role.ADMIN):
        # Those who may grant access take it away; the console's grant register says the same.
        raise PolicyViolation(N_("%(email)s may not revoke access: only approvers and admins do"), email=actor.email)
    if grant.revoked_at is not None:
        raise AccessError(N_("grant %(id)s was already revoked"), id=grant.id)
    grant.revoked_at, grant.revoked_by, grant.revoke_reason = utcnow(), who, reason
    session.flush()
    audit.record(
        session, actor=who, action="access.revoke", object_type="access_grant", object_id=grant.id,
        before={"revoked_at": None}, after={"revoked_at": grant.revoked_at}, reason=reason,
    )
    ticket = grant.request.ticket
    enqueue(
        session, settings, template="access_revoked", ticket=ticket, to=[grant.contact.email],
        context={"grant": grant, "reason": reason}, purpose="access_revoked",
    )
    return grant


def pending(session: Session) -> list[AccessRequest]:
    """Requests waiting for a decision, oldest first (the console's approval queue)."""
    query = select(AccessRequest).where(AccessRequest.status == AccessStatus.PENDING).order_by(AccessRequest.id)
    return list(session.scalars(query))
