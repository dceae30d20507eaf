"""The requester portal: sign-in links by mail, portal sessions, and what a requester sees and does.

No passwords: a requester asks for a link, which is mailed to the address on file. The link names a
``portal_link`` row, carries a random nonce (only its hash is kept) and an HMAC over row, nonce,
address and expiry made with the secret key: it works once, for ``link_lifetime``, and only while the
contact still has the address it was sent to. Asking for a link answers the same whether the address
is known or not; every request counts against per-address and per-client limits kept in the database.

A portal session is a row of its own (``portal_session``), never a console session: a requester who is
also staff gets no staff rights from it. Replies go through ``tickets.user_wrote``, as a mail reply does.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from helpdesk.core import audit, i18n, tickets
from helpdesk.core.attachments import store_for
from helpdesk.core.conversation import make_message_id
from helpdesk.core.db import rowcount
from helpdesk.core.fulfilment import step_of
from helpdesk.core.i18n import N_
from helpdesk.core.models import (
    MAX_ID,
    AccessRequest,
    Attachment,
    Contact,
    Direction,
    Fulfilment,
    Message,
    Outbox,
    PortalLink,
    PortalSession,
    Ticket,
    TicketStatus,
    Watcher,
    aware,
    utcnow,
)
from helpdesk.core.notify import OutboundAttachment, notify_status, render
from helpdesk.core.settings import Settings
from helpdesk.core.users import normalise_email

SESSION_PREFIX = "hdp_"  # never the console's "hd_": a portal token is no API token
LINK_PURPOSE = "portal link"


@dataclass(frozen=True)
class PortalPolicy:
    link_lifetime: timedelta = timedelta(minutes=15)
    per_address: int = 3  # links asked for one address within the window
    per_client: int = 10  # links asked from one client address within the window, any addresses
    window: timedelta = timedelta(hours=1)
    session_lifetime: timedelta = timedelta(hours=8)


class PortalError(i18n.Refusal):
    """Something the requester cannot do here, with a reason fit to show."""


class TooManyLinks(PortalError):
    """Over the limit of links for this address or from this client."""


class LinkRefused(PortalError):
    """A sign-in link that is used, expired, or not one of ours."""


class LinkOutcome(enum.Enum):
    MAILED = "mailed"
    UNKNOWN = "unknown"  # no requester or watcher with this address: nothing mailed, same answer


def _key(settings: Settings, purpose: str, text: str) -> str:
    """A keyed digest: addresses and clients are compared, never stored as text."""
    return hmac.new(settings.secret_key.encode(), f"{purpose}\0{text}".encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


def _signature(settings: Settings, link_id: int, nonce: str, address: str, expires_at: datetime) -> str:
    return _key(settings, "portal-link", f"{link_id}.{nonce}.{address}.{int(aware(expires_at).timestamp())}")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def known_requester(session: Session, address: str) -> Contact | None:
    """The contact with this address if it asked for or watches a ticket (and its mail is delivered)."""
    contact = session.scalars(select(Contact).where(Contact.email == normalise_email(address))).first()
    if contact is None or contact.undeliverable:
        return None
    asked = select(Ticket.id).where(Ticket.requester_id == contact.id).limit(1)
    watches = select(Watcher.id).where(Watcher.contact_id == contact.id).limit(1)
    if session.scalar(asked) is None and session.scalar(watches) is None:
        return None
    return contact


def request_link(
    session: Session, settings: Settings, address: str, client: str, *,
    policy: PortalPolicy = PortalPolicy(), now: datetime | None = None,
) -> LinkOutcome:
    """Mail a sign-in link to ``address`` if it is a requester's or watcher's; raises TooManyLinks over a limit.

    The row is written before the limits are read, so requests racing each other all count.
    """
    now = now or utcnow()
    address = normalise_email(address)
    session.execute(delete(PortalLink).where(PortalLink.created_at < now - max(policy.window, policy.link_lifetime)))
    row = PortalLink(address=_key(settings, "address", address), client=_key(settings, "client", client),
                     created_at=now, expires_at=now + policy.link_lifetime)
    session.add(row)
    session.flush()
    since = now - policy.window
    count = select(func.count()).select_from(PortalLink).where(PortalLink.created_at >= since)
    if (session.scalar(count.where(PortalLink.address == row.address)) or 0) > policy.per_address or (
        session.scalar(count.where(PortalLink.client == row.client)) or 0
    ) > policy.per_client:
        session.delete(row)
        session.flush()
        raise TooManyLinks(N_("Too many sign-in links asked for. Wait a while and try again."))
    contact = known_requester(session, address)
    if contact is None:
        return LinkOutcome.UNKNOWN
    nonce = secrets.token_urlsafe(24)
    row.contact_id, row.nonce_hash = contact.id, _sha256(nonce)
    token = f"{row.id}.{nonce}.{_signature(settings, row.id, nonce, contact.email, row.expires_at)}"
    _queue_link_mail(session, settings, contact, f"{settings.console_url}/portal/sign-in/{token}", policy, row.expires_at)
    audit.record(session, actor=contact.email, action="portal.link", object_type="user", object_id=contact.id,
                 after={"expires_at": row.expires_at.isoformat()})
    return LinkOutcome.MAILED


def _queue_link_mail(
    session: Session, settings: Settings, contact: Contact, link: str, policy: PortalPolicy, expires_at: datetime
) -> None:
    language = contact.language or i18n.DEFAULT
    subject, text, _ = render("portal_link", {
        "settings": settings, "contact": contact, "link": link,
        "minutes": int(policy.link_lifetime.total_seconds() // 60),
    }, language)
    mid = make_message_id(settings, None)
    msg = EmailMessage()
    msg["From"] = formataddr((i18n.gettext(language, "IT Service Desk"), settings.address))
    msg["To"] = contact.email
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{mid}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text)
    msg["Content-Language"] = language
    session.add(Outbox(
        message_id=mid, purpose=LINK_PURPOSE, mail_from=settings.address, recipients=[contact.email],
        raw=msg.as_bytes(), deadline_at=expires_at,  # a link mailed after it expired helps nobody
        automatic=True, rcpt=contact.email,
    ))


def redeem_link(session: Session, settings: Settings, token: str, *, now: datetime | None = None) -> Contact:
    """The contact a sign-in link was mailed to; the link is used up. Raises LinkRefused (audited when it names a row)."""
    now = now or utcnow()
    link_id, nonce, signature = (token.split(".") + ["", "", ""])[:3]
    row = session.get(PortalLink, int(link_id)) if link_id.isdigit() and int(link_id) <= MAX_ID else None
    contact = session.get(Contact, row.contact_id) if row is not None and row.contact_id is not None else None
    if row is None or contact is None or row.nonce_hash is None or not hmac.compare_digest(row.nonce_hash, _sha256(nonce)):
        raise LinkRefused(N_("This sign-in link is not valid. Ask for a new one."))
    bound = row.address == _key(settings, "address", contact.email) and hmac.compare_digest(
        signature, _signature(settings, row.id, nonce, contact.email, row.expires_at))
    reason = (N_("it was made for another address") if not bound
              else N_("it was used already") if row.used_at is not None
              else N_("it has expired") if aware(row.expires_at) <= now else None)
    if reason is None:
        # One statement decides who uses it: of two racing requests, only one changes the row.
        used = rowcount(session.execute(update(PortalLink).where(PortalLink.id == row.id, PortalLink.used_at.is_(None))
                                        .values(used_at=now).execution_options(synchronize_session=False)))
        reason = None if used == 1 else N_("it was used already")
    if reason is not None:
        audit.record(session, actor=contact.email, action="portal.link_refused", object_type="user",
                     object_id=contact.id, reason=reason)
        raise LinkRefused(N_("This sign-in link cannot be used: %(reason)s. Ask for a new one."), reason=i18n.Word(reason))
    return contact


def open_session(session: Session, settings: Settings, contact: Contact, *, policy: PortalPolicy = PortalPolicy()) -> str:
    """A portal session for the contact (audited); the token goes into the cookie or an API client, its hash here."""
    session.execute(delete(PortalSession).where(PortalSession.created_at < utcnow() - policy.session_lifetime))
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    session.add(PortalSession(token_hash=_sha256(token), contact_id=contact.id,
                              address=_key(settings, "address", contact.email)))
    audit.record(session, actor=contact.email, action="portal.sign_in", object_type="user", object_id=contact.id)
    return token


def session_contact(
    session: Session, settings: Settings, token: str, *, policy: PortalPolicy = PortalPolicy(),
    now: datetime | None = None,
) -> Contact | None:
    """The requester of a live portal session: not ended, not too old, the contact's address unchanged."""
    if not token.startswith(SESSION_PREFIX):
        return None
    now = now or utcnow()
    row = session.scalars(select(PortalSession).where(PortalSession.token_hash == _sha256(token))).first()
    if row is None or row.revoked_at is not None or aware(row.created_at) + policy.session_lifetime < now:
        return None
    contact = session.get(Contact, row.contact_id)
    if contact is None or row.address != _key(settings, "address", contact.email):
        return None  # erased or renamed: the sign-in was for the address, not the row
    if aware(row.last_seen_at) + timedelta(minutes=1) < now:
        row.last_seen_at = now
    return contact


def end_session(session: Session, token: str) -> None:
    session.execute(update(PortalSession).where(PortalSession.token_hash == _sha256(token),
                                                PortalSession.revoked_at.is_(None)).values(revoked_at=utcnow()))


# -- what a requester sees -------------------------------------------------------------------------------------

def _theirs(contact: Contact) -> ColumnElement[bool]:
    watched = select(Watcher.ticket_id).where(Watcher.contact_id == contact.id)
    return or_(Ticket.requester_id == contact.id, Ticket.id.in_(watched))


def my_tickets(session: Session, contact: Contact) -> list[Ticket]:
    """The tickets the contact asked for or watches, newest first."""
    return list(session.scalars(select(Ticket).where(_theirs(contact)).order_by(Ticket.id.desc())))


def my_ticket(session: Session, contact: Contact, number: int) -> Ticket | None:
    """The ticket if the contact asked for or watches it; None (as if missing) otherwise."""
    if not 0 < number <= MAX_ID:
        return None
    return session.scalars(select(Ticket).where(Ticket.id == number, _theirs(contact))).first()


def public_messages(ticket: Ticket) -> list[Message]:
    """The thread as the requester's mail shows it: never internal notes, bounces or automatic answers."""
    return [m for m in ticket.messages if not m.internal]


def public_attachment(session: Session, ticket: Ticket, attachment_id: int) -> Attachment | None:
    item = session.get(Attachment, attachment_id) if 0 < attachment_id <= MAX_ID else None
    message = session.get(Message, item.message_id) if item is not None else None
    if item is None or message is None or message.ticket_id != ticket.id or message.internal or item.sha256 is None:
        return None
    return item


@dataclass(frozen=True)
class Approval:
    what: str
    status: str  # pending | approved | rejected
    decided_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class Progress:
    """Where a ticket's process stands: its approvals and its fulfilment steps."""

    step: str | None  # a service request's step (core.fulfilment), None for other tickets
    due_at: datetime | None
    approvals: list[Approval] = field(default_factory=list)
    checklist: list[tuple[str, bool]] = field(default_factory=list)


def progress(session: Session, ticket: Ticket) -> Progress:
    record = session.get(Fulfilment, ticket.id)
    approvals = [
        Approval(f"access to {r.resource}", r.status.value, r.decided_at, r.reason)
        for r in session.scalars(select(AccessRequest).where(AccessRequest.ticket_id == ticket.id).order_by(AccessRequest.id))
    ]
    if record is not None and record.approval_needed:
        status = "pending" if record.approved is None else "approved" if record.approved else "rejected"
        approvals.append(Approval(f"request {record.item}", status, record.decided_at, None))
    return Progress(
        step=step_of(ticket).value if record is not None else None,
        due_at=ticket.due_at,
        approvals=approvals,
        checklist=[(str(c.get("step")), bool(c.get("done_at"))) for c in (record.checklist if record else [])],
    )


# -- what a requester does ------------------------------------------------------------------------------------

def reply(
    session: Session, settings: Settings, ticket: Ticket, contact: Contact, text: str,
    files: Sequence[OutboundAttachment] = (),
) -> Message:
    """The requester's reply in the portal: as their mail reply would be (tickets.user_wrote), audited."""
    if not text.strip() and not files:
        raise PortalError(N_("A reply needs some text or a file."))
    if ticket.status is TicketStatus.CLOSED:
        raise PortalError(N_("#%(number)s is closed. Write to %(address)s to open a new ticket."), number=ticket.id,
                          address=settings.address)
    store = store_for(settings)
    message = Message(
        direction=Direction.IN, from_address=contact.email, from_name=contact.name, to=[settings.address],
        subject=f"Re: {ticket.subject}", text=text, reply_text=text, created_at=utcnow(),
        attachments=[Attachment(filename=f.filename, content_type=f.content_type, size=len(f.data),
                                sha256=store.put(f.data)) for f in files],
    )
    tickets.user_wrote(session, settings, ticket, message)
    audit.record(session, actor=contact.email, action="portal.reply", object_type="ticket", object_id=ticket.id,
                 after={"files": [f.filename for f in files]} if files else None)
    return message


def close(session: Session, settings: Settings, ticket: Ticket, contact: Contact) -> None:
    """The requester closes their ticket; watchers are told, as for a status change in the console."""
    if ticket.requester_id != contact.id:
        raise PortalError(N_("Only the person who asked may close this ticket."))
    if ticket.status is TicketStatus.CLOSED:
        raise PortalError(N_("#%(number)s is closed already."), number=ticket.id)
    if ticket.status is TicketStatus.AWAITING_APPROVAL:
        raise PortalError(N_("#%(number)s is waiting for an approver's decision; reply to ask the desk to withdraw it."),
                          number=ticket.id)
    tickets.change(session, ticket, contact.email, status=TicketStatus.CLOSED, reason="closed by the requester in the portal")
    notify_status(session, settings, ticket, actor=contact.email)
