"""Ticket services: open, append, change, reply, note, and the stable JSON shape other tools read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from helpdesk.core import audit, fields, presence, safehtml, webhooks
from helpdesk.core.attachments import store_for
from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.mail import Address, ParsedMail
from helpdesk.core.models import (
    Attachment,
    Contact,
    Direction,
    Message,
    Role,
    Ticket,
    TicketKind,
    TicketStatus,
    Watcher,
    utcnow,
)
from helpdesk.core.notify import (
    AutoSubmitted,
    OutboundAttachment,
    enqueue,
    fit_attachments,
    notify_agents,
    public_recipients,
)
from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.core.settings import ConversationSettings, Settings
from helpdesk.core.text import SUBJECT_LIMIT, display_name, one_line

KIND_LABELS = {
    TicketKind.INCIDENT: "incident",
    TicketKind.SERVICE_REQUEST: "service request",
    TicketKind.ACCESS_REQUEST: "access request",
}
OPEN_STATUSES = (
    TicketStatus.NEW,
    TicketStatus.OPEN,
    TicketStatus.PENDING,
    TicketStatus.AWAITING_APPROVAL,
    TicketStatus.IN_PROGRESS,
)


class TicketError(Refusal):
    """A ticket action that cannot be done, with a reason fit to show (marked for translation: core.i18n)."""


# Built once: building a select costs about as much as running it, and this runs for every mail.
_BY_EMAIL = select(Contact).where(Contact.email == bindparam("email"))


def contact_for(session: Session, address: Address | str) -> Contact:
    """The contact with this address, created on first sight.

    The display name of a mail (unauthenticated) names a user the first time; never staff, whose
    name is in every reply they sign.
    """
    email, name = (address, None) if isinstance(address, str) else (address.address, display_name(address.name))
    email = email.lower()
    contact = session.scalars(_BY_EMAIL, {"email": email}).first()
    if contact is None:
        try:
            with session.begin_nested():  # (flushed at its end)
                contact = Contact(email=email, name=name, role=Role.USER)
                session.add(contact)
        except IntegrityError:  # another worker's mail from the same new sender, committed meanwhile
            contact = session.scalars(_BY_EMAIL, {"email": email}).one()
    elif name and not contact.name and contact.role is Role.USER:
        contact.name = name
    return contact


def message_from_mail(mail: ParsedMail, *, inbound_id: int | None, internal: bool = False) -> Message:
    return Message(
        direction=Direction.IN,
        internal=internal,
        from_address=mail.sender,
        from_name=display_name(mail.from_.name) if mail.from_ else None,
        to=[a.address for a in mail.to],
        cc=[a.address for a in mail.cc],
        subject=mail.subject,
        text=mail.text,
        reply_text=mail.reply_text or None,
        html=mail.html,
        html_note=mail.html_note,
        html_policy=safehtml.POLICY,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=list(mail.references),
        inbound_id=inbound_id,
        created_at=utcnow(),
        protection=mail.protection,
        calendar=[asdict(event) for event in mail.calendar] or None,
    )


def open_ticket(
    session: Session,
    *,
    requester: Contact,
    subject: str,
    kind: TicketKind,
    category: str = "general",
    impact: int = 3,
    urgency: int = 3,
    priority: str = "P4",
    catalogue_item: str | None = None,
    group: str | None = None,
    classification: list[dict[str, Any]] | None = None,
    linked_ticket_id: int | None = None,
    actor: str = "system",
    first_message: Message | None = None,
) -> Ticket:
    """A new ticket, audited; ``first_message`` (the mail that opened it) goes in with it."""
    ticket = Ticket(
        kind=kind,
        category=category,
        impact=impact,
        urgency=urgency,
        priority=priority,
        catalogue_item=catalogue_item,
        group=group,
        status=TicketStatus.NEW,
        subject=one_line(subject, SUBJECT_LIMIT) or "(no subject)",  # it heads every mail about the ticket
        requester=requester,
        classification=classification or [],
        linked_ticket_id=linked_ticket_id,
        watchers=[],  # a new ticket's collections are known empty: no lazy loads
        messages=[first_message] if first_message is not None else [],
    )
    session.add(ticket)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="ticket.open",
        object_type="ticket",
        object_id=ticket.id,
        after=snapshot(ticket),
        reason="; ".join(f"{c.get('rule')}: {c.get('reason')}" for c in ticket.classification) or None,
        flush=False,
    )
    return ticket


def contacts_for(session: Session, emails: Sequence[str]) -> dict[str, int]:
    """Contact ids for these (lower-case) addresses, created on first sight: a few statements for any number."""
    def known(chunk: Sequence[str]) -> dict[str, int]:
        rows = session.execute(select(Contact.email, Contact.id).where(Contact.email.in_(chunk)))
        return {email: id_ for email, id_ in rows}

    chunks = [emails[start : start + 500] for start in range(0, len(emails), 500)]
    found = {email: id_ for chunk in chunks for email, id_ in known(chunk).items()}
    new = [{"email": email, "role": Role.USER} for email in emails if email not in found]
    if new:
        session.execute(insert(Contact), new)  # one executemany, no row at a time
        found.update(item for chunk in chunks for item in known(chunk).items())
    return found


def add_watchers(
    session: Session, ticket: Ticket, addresses: Sequence[str], *, limit: int = ConversationSettings.max_watchers
) -> list[str]:
    """Make ``addresses`` watchers until the ticket has ``limit``; returns those left out (audited, not mailed).

    Linear in the addresses, with a fixed number of statements: a mail may Cc tens of thousands.
    """
    if not addresses:
        return []  # (most mails: nobody else in To or Cc; no flush, no statement)
    session.flush()  # watchers added before are in the table
    watching = session.scalars(
        select(Contact.email).join(Watcher, Watcher.contact_id == Contact.id).where(Watcher.ticket_id == ticket.id)
    ).all()
    known = {*watching, ticket.requester.email}
    wanted = [a for a in dict.fromkeys(a.lower() for a in addresses if a) if a not in known]
    room = max(0, limit - len(watching))
    taken, left = wanted[:room], wanted[room:]
    if taken:
        ids = contacts_for(session, taken)
        session.execute(insert(Watcher), [{"ticket_id": ticket.id, "contact_id": ids[email]} for email in taken])
        session.expire(ticket, ["watchers"])  # read again, with the new rows, when next needed
    if left:
        audit.record(
            session, actor="system", action="ticket.watchers_capped", object_type="ticket", object_id=ticket.id,
            after={"left_out": len(left), "first": left[:10]},
            reason=f"a ticket takes at most {limit} watchers (HELPDESK_MAX_WATCHERS); the rest are not mailed",
            flush=False,
        )
    return left


def append_message(session: Session, ticket: Ticket, message: Message) -> Message:
    """Add a mail to a ticket; a user's reply to a resolved ticket reopens it."""
    ticket.messages.append(message)
    ticket.updated_at = utcnow()
    if message.direction is Direction.IN and not message.internal:
        if ticket.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            # Intake sends replies to long-closed tickets to a new ticket instead (conversation.route).
            _set_status(session, ticket, TicketStatus.OPEN, actor=message.from_address, reason="reply reopened it")
        elif ticket.status is TicketStatus.PENDING and message.from_address == ticket.requester.email:
            _set_status(session, ticket, TicketStatus.OPEN, actor=message.from_address, reason="user answered")
    session.flush()
    return message


def user_wrote(session: Session, settings: Settings, ticket: Ticket, message: Message) -> Message:
    """A requester's or watcher's own message, by mail or in the portal: one path for both.

    Into the thread (a reply reopens a resolved ticket and resumes one waiting on the user, so the SLA
    clocks run again), and the agents are told.
    """
    append_message(session, ticket, message)
    notify_agents(session, settings, ticket, message, new=False)
    webhooks.emit(session, ticket, webhooks.WebhookEvent.REPLIED, {"by": "requester"})  # not audited: told here
    return message


def snapshot(ticket: Ticket) -> dict[str, Any]:
    return {
        "kind": ticket.kind.value,
        "category": ticket.category,
        "priority": ticket.priority,
        "impact": ticket.impact,
        "urgency": ticket.urgency,
        "status": ticket.status.value,
        "assignee": ticket.assignee.email if ticket.assignee else None,
        "group": ticket.group,
    }


def _set_status(session: Session, ticket: Ticket, status: TicketStatus, *, actor: str, reason: str | None) -> None:
    change(session, ticket, actor, status=status, reason=reason)


def change(
    session: Session,
    ticket: Ticket,
    actor: str,
    *,
    reason: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Change ticket fields (priority, impact, urgency, status, assignee, kind, category), audited.

    Returns the fields that really changed. ``assignee`` takes a Contact or None.
    """
    allowed = {"priority", "impact", "urgency", "status", "assignee", "kind", "category", "group", "catalogue_item"}
    unknown = set(fields) - allowed
    if unknown:
        raise TicketError(N_("cannot change %(fields)s"), fields=", ".join(sorted(unknown)))
    if "priority" in fields and fields["priority"] not in DESK_PRIORITIES:
        raise TicketError(N_("priority must be P1..P5, not %(priority)r"), priority=fields["priority"])
    before = snapshot(ticket)
    for name, value in fields.items():
        setattr(ticket, name, value)
    now = utcnow()
    if "status" in fields:
        if ticket.status is TicketStatus.RESOLVED:
            ticket.resolved_at = now
        elif ticket.status is TicketStatus.CLOSED:
            ticket.closed_at = now
            ticket.resolved_at = ticket.resolved_at or now
        else:
            ticket.resolved_at = None
            ticket.closed_at = None
    after = snapshot(ticket)
    changed = {k: after[k] for k in after if after[k] != before[k]}
    if changed:
        ticket.updated_at = now
        audit.record(
            session,
            actor=actor,
            action="ticket.change",
            object_type="ticket",
            object_id=ticket.id,
            before={k: before[k] for k in changed},
            after=changed,
            reason=reason,
        )
    session.flush()
    return changed


def reply(
    session: Session, settings: Settings, ticket: Ticket, author: Contact, text: str, *,
    attachments: Sequence[OutboundAttachment] = (), seen: int | None = None,
) -> Message:
    """An agent's public reply: stored in the thread and mailed (with ``attachments``) to the requester and watchers.

    ``seen``: the newest public message the agent saw; presence.NewerReply if one came after it (None: no check).
    """
    if not text.strip() and not attachments:
        raise TicketError(N_("a reply needs some text"))
    presence.refuse_stale(ticket, seen)
    message = enqueue(
        session,
        settings,
        template="reply",
        ticket=ticket,
        to=public_recipients(settings, ticket),
        context={"text": text, "author": author},
        auto_submitted=AutoSubmitted.NO,
        purpose="reply",
        attachments=attachments,
    ).message
    if ticket.first_response_at is None:
        ticket.first_response_at = utcnow()
    if ticket.status is TicketStatus.NEW:
        change(session, ticket, author.email, status=TicketStatus.OPEN, reason="first reply")
    audit.record(session, actor=author.email, action="ticket.reply", object_type="ticket", object_id=ticket.id)
    session.flush()
    if message is None:  # every recipient bounces: keep the reply in the thread all the same
        message = append_message(
            session,
            ticket,
            Message(direction=Direction.OUT, from_address=author.email, subject=ticket.subject, text=text),
        )
    else:
        message.from_name = author.name
        message.text = text
    return message


def reply_with_files(
    session: Session, settings: Settings, ticket: Ticket, author: Contact, text: str,
    files: Sequence[OutboundAttachment], *, seen: int | None = None,
) -> tuple[Message, list[str]]:
    """A public reply with files an agent uploaded: all kept on the ticket, mailed as far as they fit.

    Returns the reply and the names of the files left out of the mail (over ``max_message_bytes``).
    """
    presence.refuse_stale(ticket, seen)  # before any file is stored
    store = store_for(settings)
    kept = [
        Attachment(filename=f.filename, content_type=f.content_type, size=len(f.data), sha256=store.put(f.data))
        for f in files
    ]
    mailed, too_big = fit_attachments(settings, files)
    message = reply(session, settings, ticket, author, text, attachments=mailed, seen=seen)
    message.attachments.extend(kept)
    session.flush()
    return message, too_big


def add_note(session: Session, ticket: Ticket, author: Contact, text: str) -> Message:
    """An internal note: in the thread, mailed to nobody outside."""
    if not text.strip():
        raise TicketError(N_("a note needs some text"))
    note = Message(
        direction=Direction.IN,
        internal=True,
        from_address=author.email,
        from_name=author.name,
        subject=ticket.subject,
        text=text,
    )
    ticket.messages.append(note)
    audit.record(session, actor=author.email, action="ticket.note", object_type="ticket", object_id=ticket.id)
    session.flush()
    return note


def get(session: Session, number: int) -> Ticket | None:
    return session.scalars(
        select(Ticket)
        .where(Ticket.id == number)
        .options(selectinload(Ticket.messages).selectinload(Message.attachments))
    ).first()


def to_json(ticket: Ticket, *, with_messages: bool = True) -> dict[str, Any]:
    """The stable JSON shape of ``helpdesk ticket N --json``: add fields, never rename."""
    data: dict[str, Any] = {
        "number": ticket.id,
        "kind": ticket.kind.value,
        "category": ticket.category,
        "catalogue_item": ticket.catalogue_item,
        "priority": ticket.priority,
        "impact": ticket.impact,
        "urgency": ticket.urgency,
        "status": ticket.status.value,
        "requester": ticket.requester.email,
        "assignee": ticket.assignee.email if ticket.assignee else None,
        "subject": ticket.subject,
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat() if ticket.updated_at else None,
        "due_at": ticket.due_at.isoformat() if ticket.due_at else None,
        "linked_ticket": ticket.linked_ticket_id,
        "merged_into": ticket.merged_into_id,  # mail to this ticket goes there (core.merge)
        "classification": ticket.classification,
        "watchers": [w.contact.email for w in ticket.watchers],
        "group": ticket.group,
        "fields": fields.ticket_values(ticket),  # custom fields by key (core.fields)
    }
    if with_messages:
        data["messages"] = [message_json(m) for m in ticket.messages]
    return data


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,  # names the message for a split
        "direction": m.direction.value,
        "internal": m.internal,
        "from": m.from_address,
        "to": m.to,
        "cc": m.cc,
        "subject": m.subject,
        "text": m.text,
        "reply_text": m.reply_text,
        "message_id": m.message_id,
        "in_reply_to": m.in_reply_to,
        "created_at": m.created_at.isoformat() if m.created_at else None,
        "authenticated": m.authenticated,  # null: mail that claims no staff rights
        "attachments": [attachment_json(a) for a in m.attachments],
        "protection": m.protection.value if m.protection else None,  # signed (not verified) / encrypted
        "calendar": m.calendar,  # invitations read from the mail: summary, start, end, organiser, ...
    }


def attachment_json(a: Attachment) -> dict[str, Any]:
    return {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256, "note": a.note}
