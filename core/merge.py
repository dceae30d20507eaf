"""Merge a duplicate ticket into another, undo that, and split one message off into a ticket of its own.

A merge moves the duplicate's (source's) messages with their attachments, its watchers (its
requester becomes a watcher of the target) and its monitoring events to the target, closes the
source with a link (``merged_into_id``) and records what moved, so that an undo puts back exactly
that. The target keeps its own SLA clocks; the source's stop when it closes. Mail that later finds
the source (subject tag, reply token, Message-IDs) is threaded into the target by
``conversation.find_ticket``. Mail that arrived on the target after the merge stays there on undo:
it was answered there, and nothing records which of the source's marks brought it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from helpdesk.core import audit, locks, sla, tickets, visibility
from helpdesk.core.i18n import N_
from helpdesk.core.models import (
    MAX_ID,
    AccessRequest,
    AccessStatus,
    Contact,
    Direction,
    Event,
    Message,
    Ticket,
    TicketKind,
    TicketMerge,
    TicketStatus,
    Watcher,
    utcnow,
)
from helpdesk.core.notify import enqueue
from helpdesk.core.settings import Settings


class MergeError(tickets.TicketError):
    """A merge, undo or split that is refused, with the reason to show."""


class NoTarget(MergeError):
    """The ticket to merge into does not exist, or is not the actor's to read."""


def _readable(session: Session, settings: Settings, actor: Contact, number: int) -> Ticket | None:
    ticket = tickets.get(session, number) if 0 < number <= MAX_ID else None
    return ticket if ticket is not None and visibility.may_read(session, settings, actor, ticket) else None


def merge_into(
    session: Session, settings: Settings, numbers: Sequence[int], into: int, actor: Contact
) -> tuple[Ticket, list[int]]:
    """Merge the tickets ``numbers`` into ``into`` (console, API, ``#merge N`` by email), each one the actor may read.

    Returns the target and the numbers merged; NoTarget or MergeError when refused.
    """
    target = _readable(session, settings, actor, into)
    if target is None:
        raise NoTarget(N_("there is no ticket #%(number)s"), number=into)
    sources = [_readable(session, settings, actor, n) for n in dict.fromkeys(numbers)]
    if not sources or any(s is None for s in sources):
        raise MergeError(N_("choose tickets to merge, other than the one they go into"))
    merged = []
    for source in sources:
        assert source is not None
        merge(session, settings, source, target, actor)
        merged.append(source.id)
    return target, merged


def _awaiting_approval(session: Session, ticket: Ticket) -> bool:
    if ticket.status is TicketStatus.AWAITING_APPROVAL:
        return True
    pending = select(AccessRequest.id).where(
        AccessRequest.ticket_id == ticket.id, AccessRequest.status == AccessStatus.PENDING)
    return session.scalars(pending.limit(1)).first() is not None


def check_merge(session: Session, source: Ticket, target: Ticket) -> None:
    """Raise ``MergeError`` when ``source`` may not be merged into ``target``."""
    if source.id == target.id:
        raise MergeError(N_("#%(number)s cannot be merged into itself"), number=source.id)
    if source.merged_into_id is not None:
        raise MergeError(N_("#%(number)s is already merged into #%(into)s"), number=source.id, into=source.merged_into_id)
    if target.merged_into_id is not None:
        raise MergeError(N_("#%(number)s was merged into #%(into)s: merge into #%(into)s"), number=target.id,
                         into=target.merged_into_id)
    if target.status is TicketStatus.CLOSED:
        raise MergeError(N_("#%(number)s is closed: merge into an open ticket"), number=target.id)
    for ticket in (source, target):
        # An approver decides on what the request says: its thread must not change under them.
        if _awaiting_approval(session, ticket):
            raise MergeError(N_("#%(number)s is awaiting approval: approve or reject it first (reject a duplicate request)"),
                             number=ticket.id)


def merge(session: Session, settings: Settings, source: Ticket, target: Ticket, actor: Contact) -> TicketMerge:
    """Merge ``source`` into ``target`` (audited on both, the source's people told by mail)."""
    _fresh(session, source, target)
    check_merge(session, source, target)
    session.flush()
    messages = list(session.scalars(select(Message.id).where(Message.ticket_id == source.id).order_by(Message.id)))
    known = {target.requester_id, *session.scalars(select(Watcher.contact_id).where(Watcher.ticket_id == target.id))}
    moved_watchers: list[int] = []
    for watcher in session.scalars(select(Watcher).where(Watcher.ticket_id == source.id)):
        if watcher.contact_id not in known:  # one already on the target stays on the source (unique per ticket)
            watcher.ticket_id = target.id
            moved_watchers.append(watcher.id)
            known.add(watcher.contact_id)
    added: list[int] = []
    if source.requester_id not in known:
        row = Watcher(ticket_id=target.id, contact_id=source.requester_id)
        session.add(row)
        session.flush()
        added.append(row.id)
    events = list(session.scalars(select(Event).where(Event.ticket_id == source.id)))
    for event in events:  # repeats and the recovery of the same alert now find the target
        event.ticket_id = target.id
    session.execute(update(Message).where(Message.id.in_(messages)).values(ticket_id=target.id))
    record = TicketMerge(
        source_id=source.id, target_id=target.id, actor=actor.email,
        moved={"messages": messages, "watchers": moved_watchers, "added_watchers": added,
               "events": [e.id for e in events], "status": source.status.value},
    )
    session.add(record)
    source.merged_into_id = target.id
    session.flush()
    session.expire(source, ["messages", "watchers"])
    session.expire(target, ["messages", "watchers"])
    tickets.change(session, source, actor.email, status=TicketStatus.CLOSED, reason=f"merged into #{target.id}")
    summary = {"source": source.id, "target": target.id, "messages": len(messages),
               "watchers": len(moved_watchers) + len(added), "events": len(events)}
    for ticket, action in ((source, "ticket.merge"), (target, "ticket.merged_in")):
        audit.record(session, actor=actor.email, action=action, object_type="ticket", object_id=ticket.id,
                     after=summary, flush=False)
    _note(session, settings, source, f"Merged into #{target.id} by {actor.email}: {len(messages)} messages moved there; "
          f"mail to this ticket now goes to #{target.id}.")
    _note(session, settings, target, f"#{source.id} ({source.subject}) merged into this ticket by {actor.email}: "
          f"{len(messages)} messages, {len(moved_watchers) + len(added)} watchers, {len(events)} events.")
    people = [source.requester.email, *session.scalars(
        select(Contact.email).join(Watcher, Watcher.contact_id == Contact.id).where(Watcher.id.in_(moved_watchers)))]
    enqueue(session, settings, template="merged", ticket=target, to=people, context={"source": source},
            purpose="merged", record=True)
    session.flush()
    return record


def undo(session: Session, settings: Settings, source: Ticket, actor: Contact) -> TicketMerge:
    """Undo ``source``'s merge: what moved goes back, the source gets its status back (audited on both)."""
    _fresh(session, source)
    record = session.scalars(
        select(TicketMerge).where(TicketMerge.source_id == source.id, TicketMerge.undone_at.is_(None))
        .order_by(TicketMerge.id.desc())
    ).first()
    if record is None or source.merged_into_id != record.target_id:
        raise MergeError(N_("#%(number)s is not merged into another ticket"), number=source.id)
    target = session.get(Ticket, record.target_id)
    assert target is not None
    if target.merged_into_id is not None:
        raise MergeError(N_("#%(number)s was itself merged into #%(into)s: undo that merge first"), number=target.id,
                         into=target.merged_into_id)
    moved = record.moved
    session.execute(update(Message).where(
        Message.id.in_(moved.get("messages", [])), Message.ticket_id == target.id).values(ticket_id=source.id))
    on_source = set(session.scalars(select(Watcher.contact_id).where(Watcher.ticket_id == source.id)))
    for watcher in session.scalars(select(Watcher).where(Watcher.id.in_(moved.get("watchers", [])))):
        if watcher.contact_id in on_source:
            session.delete(watcher)
        else:
            watcher.ticket_id = source.id
    for watcher in session.scalars(select(Watcher).where(Watcher.id.in_(moved.get("added_watchers", [])))):
        session.delete(watcher)
    for event in session.scalars(select(Event).where(Event.id.in_(moved.get("events", [])))):
        event.ticket_id = source.id
    later = session.scalar(select(func.count()).select_from(Message).where(
        Message.ticket_id == target.id, Message.created_at > record.at, Message.direction == Direction.IN,
        Message.from_address != settings.address)) or 0
    source.merged_into_id = None
    record.undone_at, record.undone_by = utcnow(), actor.email
    session.flush()
    session.expire(source, ["messages", "watchers"])
    session.expire(target, ["messages", "watchers"])
    tickets.change(session, source, actor.email, status=TicketStatus(moved.get("status", "open")),
                   reason=f"merge into #{target.id} undone")
    for ticket, action in ((source, "ticket.unmerge"), (target, "ticket.unmerged_out")):
        audit.record(session, actor=actor.email, action=action, object_type="ticket", object_id=ticket.id,
                     after={"source": source.id, "target": target.id, "stayed_on_target": later}, flush=False)
    stayed = f" {later} mails that arrived after the merge stay on #{target.id}." if later else ""
    _note(session, settings, source, f"Merge into #{target.id} undone by {actor.email}.{stayed}")
    _note(session, settings, target, f"Merge of #{source.id} undone by {actor.email}: its messages went back.{stayed}")
    return record


_TAG = r"\s*\[{prefix}\d+\]\s*"


def split(session: Session, settings: Settings, message: Message, actor: Contact) -> Ticket:
    """Split ``message`` off its ticket into a new ticket linked to it; the sender is told its number."""
    _fresh(session, message)
    ticket = message.ticket
    if message.direction is not Direction.IN or message.internal:
        raise MergeError(N_("only a mail that came in can be split off (not a reply or a note)"))
    if ticket.merged_into_id is not None:
        raise MergeError(N_("#%(number)s is merged into #%(into)s"), number=ticket.id, into=ticket.merged_into_id)
    first = session.scalar(select(func.min(Message.id)).where(Message.ticket_id == ticket.id))
    if first == message.id:
        raise MergeError(N_("the mail that opened #%(number)s cannot be split off it"), number=ticket.id)
    subject = re.sub(_TAG.format(prefix=re.escape(settings.subject_tag_prefix)), " ", message.subject or "").strip()
    # An access request is decided on its own request record: what is split off it is an incident to triage.
    kind = TicketKind.INCIDENT if ticket.kind is TicketKind.ACCESS_REQUEST else ticket.kind
    new = tickets.open_ticket(
        session, requester=tickets.contact_for(session, message.from_address), subject=subject or ticket.subject,
        kind=kind, category=ticket.category, impact=ticket.impact, urgency=ticket.urgency, priority=ticket.priority,
        group=ticket.group, linked_ticket_id=ticket.id, actor=actor.email,
        classification=[{"rule": "split", "reason": f"split off #{ticket.id} by {actor.email}"}],
    )
    message.ticket = new  # leaves the old ticket's thread through the relationship
    session.flush()
    sla.start(settings, new)
    audit.record(session, actor=actor.email, action="ticket.split", object_type="ticket", object_id=ticket.id,
                 after={"message": message.id, "new_ticket": new.id}, flush=False)
    _note(session, settings, ticket, f"A mail from {message.from_address} was split off into #{new.id} by {actor.email}.")
    enqueue(session, settings, template="split", ticket=new, to=[new.requester.email], context={"origin": ticket},
            purpose="split", in_reply_to=message.message_id)
    return new


def _fresh(session: Session, *rows: Ticket | Message) -> None:
    """Take the writers' lock, then read ``rows`` again: two agents merging the same tickets at once (say
    A into B and B into A) must not both pass the checks on what they read before."""
    locks.serialise(session)
    for row in rows:
        session.refresh(row)


def _note(session: Session, settings: Settings, ticket: Ticket, text: str) -> Message:
    note = Message(direction=Direction.IN, internal=True, from_address=settings.address, from_name="helpdesk",
                   subject=ticket.subject, text=text, created_at=utcnow())
    return tickets.append_message(session, ticket, note)
