"""A person's data: export it (a data-access request), erase it, and retention of closed tickets.

What erasure keeps: ticket numbers, kinds, categories, priorities, statuses, timestamps and SLA marks,
so reports still count; the contact row stays under a pseudonym (erased-<id>@invalid) so tickets keep
their requester. What it removes: the address and name, every message the person wrote (text, HTML,
subject, sender), every message of the tickets they requested (replies quote and greet them) and
those tickets' subjects, the attachments of those messages (the file too, once no other message has
the same bytes), the raw mail they sent, the bytes of mail sent to them (and any not yet sent is not
sent), their sessions and API token. In tickets they only watched or wrote in, others' messages stay,
with the address taken out of To/Cc and their text.

The audit trail is never rewritten: each entry is chained to the one before by an HMAC, and a chain
re-keyed to hide an address would be one nobody could trust again. Entries written before an erasure
keep the address where they have it (as who acted, or a user's creation); erasure records a new entry
that names only the contact's id and pseudonym, and reports how many older entries name them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any, overload

from sqlalchemy import Text, cast, delete, event, exists, func, or_, select, update
from sqlalchemy.orm import Session

from helpdesk.core import audit
from helpdesk.core.attachments import AttachmentStore, store_for
from helpdesk.core.db import rowcount
from helpdesk.core.files import FILE_MODE
from helpdesk.core.models import (
    AccessGrant,
    AccessRequest,
    Attachment,
    AuditEntry,
    ConsoleSession,
    Contact,
    Event,
    Fulfilment,
    Inbound,
    Message,
    Outbox,
    OutboxStatus,
    PortalLink,
    PortalSession,
    Presence,
    RawMail,
    Role,
    Satisfaction,
    SlaMark,
    Ticket,
    TicketMerge,
    TicketStatus,
    Watcher,
    aware,
    utcnow,
)
from helpdesk.core.settings import RetentionAction, Settings

ERASED = "[erased]"
EXPORT_FORMAT = "helpdesk-export/1"
_ANONYMISE = "ticket.anonymise"


class UnknownPerson(LookupError):
    """No contact has that address."""


def pseudonym(contact_id: int) -> str:
    return f"erased-{contact_id}@invalid"


def find_person(session: Session, email: str) -> Contact:
    address = email.strip().lower()
    contact = session.scalar(select(Contact).where(func.lower(Contact.email) == address))
    if contact is None:
        raise UnknownPerson(f"no contact {address}")
    return contact


# -- export -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    tickets: int
    messages: int
    attachments: int
    mails: int  # raw mails they sent, as .eml


def export_person(session: Session, settings: Settings, email: str, target: Path, *, internal: bool = False) -> Export:
    """Write a zip (new file, owner-only) with person.json, their attachments and the mails they sent.

    Internal notes are left out unless ``internal``: they are the staff's working notes and often name
    other people, whose rights a copy must not harm; an admin who has read them may include them.
    """
    contact = find_person(session, email)
    address = contact.email.lower()
    tickets = _their_tickets(session, contact)
    store = store_for(settings)
    shown: list[dict[str, Any]] = []
    files: dict[str, str] = {}  # name in the zip -> sha256
    inbound_ids: set[int] = set()
    count = 0
    for ticket, relation in tickets:
        messages = []
        for m in ticket.messages:
            own = m.from_address.lower() == address
            if not (own or (relation != "wrote" and (internal or not m.internal))):
                continue
            count += 1
            if own and m.inbound_id is not None:
                inbound_ids.add(m.inbound_id)
            entry = _message(m)
            for a, data in zip(m.attachments, entry["attachments"], strict=True):  # the entry lists them in order
                if a.sha256 is not None and store.path(a.sha256).is_file():
                    data["file"] = f"attachments/{m.id}-{a.id}-{_safe(a.filename)}"
                    files[data["file"]] = a.sha256
            messages.append(entry)
        shown.append({**_ticket(ticket), "relation": relation, "messages": messages})
    person = {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "contact": {"email": contact.email, "name": contact.name, "role": contact.role.value,
                    "created_at": aware(contact.created_at).isoformat(), "undeliverable": contact.undeliverable},
        "internal_notes_included": internal,
        "tickets": shown,
        "access": _access(session, contact),
        "mail_sent_to_them": _mail_to(session, address),
        "their_actions": [_audit(e) for e in session.scalars(
            select(AuditEntry).where(func.lower(AuditEntry.actor) == address).order_by(AuditEntry.id))],
    }
    raws = session.execute(select(Inbound.id, RawMail.data).join(RawMail, Inbound.sha256 == RawMail.sha256)
                           .where(Inbound.id.in_(inbound_ids))).all()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("person.json", json.dumps(person, ensure_ascii=False, indent=1, default=str))
            for name, digest in files.items():
                zf.write(store.path(digest), name)
            for inbound_id, data in raws:
                zf.writestr(f"mails/{inbound_id}.eml", data)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Export(len(shown), count, len(files), len(raws))


def _their_tickets(session: Session, contact: Contact) -> list[tuple[Ticket, str]]:
    address = contact.email.lower()
    requested = select(Ticket.id).where(Ticket.requester_id == contact.id)
    watched = select(Watcher.ticket_id).where(Watcher.contact_id == contact.id)
    wrote = select(Message.ticket_id).where(func.lower(Message.from_address) == address)
    found = session.scalars(select(Ticket).where(or_(Ticket.id.in_(requested), Ticket.id.in_(watched), Ticket.id.in_(wrote)))
                            .order_by(Ticket.id)).all()
    watching = set(session.scalars(watched))
    return [(t, "requester" if t.requester_id == contact.id else "watcher" if t.id in watching else "wrote") for t in found]


def _ticket(t: Ticket) -> dict[str, Any]:
    return {"number": t.id, "kind": t.kind.value, "category": t.category, "priority": t.priority,
            "status": t.status.value, "subject": t.subject, "created_at": aware(t.created_at).isoformat(),
            "closed_at": aware(t.closed_at).isoformat() if t.closed_at else None}


def _message(m: Message) -> dict[str, Any]:
    return {"id": m.id, "direction": m.direction.value, "internal": m.internal, "from": m.from_address,
            "from_name": m.from_name, "to": m.to, "cc": m.cc, "subject": m.subject, "text": m.text,
            "created_at": aware(m.created_at).isoformat(),
            "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size} for a in m.attachments]}


def _access(session: Session, contact: Contact) -> list[dict[str, Any]]:
    requests = session.scalars(select(AccessRequest).where(
        or_(AccessRequest.requester_id == contact.id, AccessRequest.beneficiary_id == contact.id)).order_by(AccessRequest.id))
    grants = {g.request_id: g for g in session.scalars(select(AccessGrant).where(AccessGrant.contact_id == contact.id))}
    return [{"ticket": r.ticket_id, "resource": r.resource, "status": r.status.value,
             "decided_at": aware(r.decided_at).isoformat() if r.decided_at else None,
             "granted_until": aware(grants[r.id].expires_at).isoformat() if r.id in grants else None}
            for r in requests]


def _mail_to(session: Session, address: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(Outbox).where(_to(address)).order_by(Outbox.id))
    return [{"ticket": o.ticket_id, "purpose": o.purpose, "status": o.status.value,
             "created_at": aware(o.created_at).isoformat(), "sent_at": aware(o.sent_at).isoformat() if o.sent_at else None}
            for o in rows]


def _to(address: str) -> Any:
    # recipients is a JSON list: its text holds the quoted address.
    return or_(func.lower(Outbox.rcpt) == address, func.lower(cast(Outbox.recipients, Text)).contains(f'"{address}"'))


def _audit(e: AuditEntry) -> dict[str, Any]:
    return {"at": aware(e.at).isoformat(), "action": e.action, "object": e.object_type, "id": e.object_id, "reason": e.reason}


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100].lstrip(".")
    return cleaned or "file"


# -- erase ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    contact_id: int
    pseudonym: str
    tickets: int  # tickets they requested, all their messages blanked
    messages: int  # messages blanked
    attachments: int  # attachment rows removed
    raw_mails: int  # stored raw mails removed
    outbox: int  # outgoing mails whose bytes were removed
    audit_entries_naming: int  # older audit entries that still carry the address (never rewritten)


def erase_person(session: Session, settings: Settings, email: str, *, actor: str) -> Erasure:
    """Anonymise one person (see the module's docstring for what stays); audited, in the caller's transaction."""
    contact = find_person(session, email)
    address = contact.email.lower()
    alias = pseudonym(contact.id)
    swap = _Swap(address, alias)
    scrub = _Scrub(session, store_for(settings))

    requested = list(session.scalars(select(Ticket).where(Ticket.requester_id == contact.id)))
    for ticket in requested:
        scrub.ticket(ticket, swap, reason=f"erasure of user {contact.id}", actor=actor)
    own = session.scalars(select(Message).where(func.lower(Message.from_address) == address))
    for message in own:
        scrub.message(message, swap)
    # Others' messages in the tickets they watched: the address out of the lists and the text.
    watched = select(Watcher.ticket_id).where(Watcher.contact_id == contact.id)
    for message in session.scalars(select(Message).where(Message.ticket_id.in_(watched))):
        swap.lists(message)
        message.text = swap.text(message.text)
        message.reply_text = swap.text(message.reply_text)
    scrub.raw_from(address)
    scrub.outbox(session.scalars(select(Outbox).where(_to(address))), swap)
    scrub.finish()

    session.execute(delete(Watcher).where(Watcher.contact_id == contact.id))
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == contact.id))
    session.execute(delete(Presence).where(Presence.contact_id == contact.id))
    session.execute(delete(PortalSession).where(PortalSession.contact_id == contact.id))  # requester portal
    session.execute(delete(PortalLink).where(PortalLink.contact_id == contact.id))
    session.execute(update(Fulfilment).where(func.lower(Fulfilment.decided_by) == address).values(decided_by=alias))
    session.execute(update(AccessGrant).where(func.lower(AccessGrant.revoked_by) == address).values(revoked_by=alias))
    session.execute(update(TicketMerge).where(func.lower(TicketMerge.actor) == address).values(actor=alias))
    session.execute(update(TicketMerge).where(func.lower(TicketMerge.undone_by) == address).values(undone_by=alias))
    contact.email, contact.name, contact.role = alias, None, Role.USER
    contact.password_hash = contact.api_token_hash = contact.api_token_scope = None
    contact.undeliverable = True  # nothing is mailed to the pseudonym
    session.flush()

    naming = session.scalar(select(func.count()).select_from(AuditEntry).where(or_(
        func.lower(AuditEntry.actor) == address,
        func.lower(cast(AuditEntry.before, Text)).contains(address),
        func.lower(cast(AuditEntry.after, Text)).contains(address),
        func.lower(AuditEntry.reason).contains(address),
    ))) or 0
    result = Erasure(contact.id, alias, len(requested), len(scrub.blanked), scrub.attachments, scrub.raw_mails,
                     len(scrub.outboxed), naming)
    audit.record(
        session, actor=actor, action="user.erase", object_type="user", object_id=contact.id,
        after={"pseudonym": alias, "tickets": result.tickets, "messages": result.messages,
               "attachments": result.attachments, "raw_mails": result.raw_mails, "outbox": result.outbox,
               "older_entries_naming": naming},
        reason="erasure request",
    )
    return result


class _Swap:
    """One address replaced by another wherever it is written: lists of addresses and free text."""

    def __init__(self, address: str, alias: str) -> None:
        self.address, self.alias = address, alias

    def lists(self, message: Message) -> None:
        message.to = self.addresses(message.to)
        message.cc = self.addresses(message.cc)

    def addresses(self, items: list[Any]) -> list[Any]:
        return [self.alias if isinstance(a, str) and a.lower() == self.address else a for a in items or []]

    @overload
    def text(self, value: str) -> str: ...
    @overload
    def text(self, value: None) -> None: ...
    @overload
    def text(self, value: str | None) -> str | None: ...
    def text(self, value: str | None) -> str | None:
        if not value or not self.address or self.address not in value.lower():
            return value
        lowered, out, start = value.lower(), [], 0
        while (found := lowered.find(self.address, start)) >= 0:
            out += [value[start:found], self.alias]
            start = found + len(self.address)
        return "".join([*out, value[start:]])


_ANONYMOUS = _Swap("", "")  # retention: every address goes


class _Scrub:
    """Blanks messages, tickets, raw mail and outgoing mail; attachment files go once the transaction commits."""

    def __init__(self, session: Session, store: AttachmentStore) -> None:
        self.session, self.store = session, store
        self.attachments = self.raw_mails = 0
        self.blanked: set[int] = set()  # message ids
        self.outboxed: set[int] = set()  # outbox ids
        self.shas: set[str] = set()  # raw mails to remove
        self.files: set[str] = set()  # attachment contents whose rows were removed
        event.listen(session, "after_commit", self._remove_files, once=True)

    def ticket(self, ticket: Ticket, swap: _Swap, *, reason: str, actor: str) -> None:
        ticket.subject = ERASED
        ticket.classification = json.loads(swap.text(json.dumps(ticket.classification)) or "[]")
        for message in ticket.messages:
            self.message(message, swap)
        self.shas.update(self.session.scalars(select(Inbound.sha256).where(Inbound.ticket_id == ticket.id)))
        self.outbox(self.session.scalars(select(Outbox).where(Outbox.ticket_id == ticket.id)), swap)
        # The requester's satisfaction comment is their words; the rating stays, a figure like the others.
        self.session.execute(update(Satisfaction).where(Satisfaction.ticket_id == ticket.id).values(comment=None))
        audit.record(self.session, actor=actor, action=_ANONYMISE, object_type="ticket", object_id=ticket.id,
                     reason=reason, flush=False)

    def message(self, message: Message, swap: _Swap) -> None:
        if message.id in self.blanked:
            return  # done before (a ticket they requested and wrote in)
        mine = swap is _ANONYMOUS or message.from_address.lower() == swap.address
        if mine:
            message.from_address, message.from_name = swap.alias, None
        message.to = [] if swap is _ANONYMOUS else swap.addresses(message.to)
        message.cc = [] if swap is _ANONYMOUS else swap.addresses(message.cc)
        message.subject, message.text, message.reply_text = ERASED, ERASED, None
        message.html = message.html_note = message.html_policy = None
        for a in message.attachments:
            if a.sha256:
                self.files.add(a.sha256)
            self.attachments += 1
        message.attachments.clear()
        if message.inbound_id is not None:
            self.shas.update(self.session.scalars(select(Inbound.sha256).where(Inbound.id == message.inbound_id)))
        self.blanked.add(message.id)

    def raw_from(self, address: str) -> None:
        """Raw mail from them that no message holds (quarantined, ignored): found by its From header."""
        linked = select(Message.inbound_id).where(Message.inbound_id.is_not(None))
        unlinked = select(Inbound.sha256, RawMail.data).join(RawMail, Inbound.sha256 == RawMail.sha256).where(
            Inbound.id.not_in(linked), Inbound.sha256 != _EMPTY_SHA)
        for sha, data in self.session.execute(unlinked):
            headers = BytesHeaderParser().parsebytes(data)
            senders = {a.lower() for _, a in getaddresses([str(v) for v in headers.get_all("from", [])])}
            if address in senders:
                self.shas.add(sha)

    def outbox(self, rows: Iterable[Outbox], swap: _Swap) -> None:
        for row in rows:
            if row.id in self.outboxed:
                continue
            if row.status in (OutboxStatus.PENDING, OutboxStatus.SENDING):
                row.status, row.last_error = OutboxStatus.FAILED, "not sent: the data in it was erased"
            row.raw = b""
            row.recipients = [] if swap is _ANONYMOUS else swap.addresses(row.recipients)
            if row.rcpt is not None and (swap is _ANONYMOUS or row.rcpt.lower() == swap.address):
                row.rcpt = swap.alias or None
            self.outboxed.add(row.id)

    def finish(self) -> None:
        """Point the inbound rows at the empty raw mail, drop raw mails nobody holds, note files to remove."""
        self.session.flush()
        shas = self.shas - {_EMPTY_SHA}
        if shas:
            if self.session.get(RawMail, _EMPTY_SHA) is None:
                self.session.add(RawMail(sha256=_EMPTY_SHA, size=0, data=b""))
                self.session.flush()
            self.session.execute(update(Inbound).where(Inbound.sha256.in_(shas)).values(sha256=_EMPTY_SHA, fingerprint=None))
            self.raw_mails += rowcount(self.session.execute(delete(RawMail).where(RawMail.sha256.in_(shas))))
        kept = set(self.session.scalars(select(Attachment.sha256).where(Attachment.sha256.in_(self.files))))
        self.files -= kept

    def _remove_files(self, session: Session) -> None:
        for digest in self.files:
            self.store.path(digest).unlink(missing_ok=True)


_EMPTY_SHA = hashlib.sha256(b"").hexdigest()  # what an erased mail's inbound row points at


# -- retention --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    anonymised: tuple[int, ...]
    deleted: tuple[int, ...]


def apply_retention(session: Session, settings: Settings, now: datetime, *, actor: str = audit.SYSTEM) -> Retention:
    """Closed tickets past HELPDESK_RETENTION_DAYS: anonymised (or deleted); nothing when the setting is off."""
    days = settings.retention_days
    if not days:
        return Retention((), ())
    cutoff = now - timedelta(days=days)
    done = exists().where(AuditEntry.object_type == "ticket", AuditEntry.object_id == Ticket.id,
                          AuditEntry.action == _ANONYMISE)
    due = list(session.scalars(select(Ticket).where(
        Ticket.status == TicketStatus.CLOSED, Ticket.closed_at < cutoff, ~done).order_by(Ticket.id)))
    scrub = _Scrub(session, store_for(settings))
    reason = f"retention: closed more than {days} days ago"
    anonymised: list[int] = []
    deleted: list[int] = []
    for ticket in due:
        scrub.ticket(ticket, _ANONYMOUS, reason=reason, actor=actor)
        session.execute(delete(Watcher).where(Watcher.ticket_id == ticket.id))
        # Access decisions are evidence of who may do what: such a ticket is anonymised, never deleted.
        if settings.retention_action is RetentionAction.DELETE and not _has_access_rows(session, ticket.id):
            deleted.append(ticket.id)
        else:
            anonymised.append(ticket.id)
    scrub.finish()
    for ticket_id in deleted:
        _delete_ticket(session, ticket_id)
        audit.record(session, actor=actor, action="ticket.delete", object_type="ticket", object_id=ticket_id,
                     reason=reason, flush=False)
    session.flush()
    return Retention(tuple(anonymised), tuple(deleted))


def _has_access_rows(session: Session, ticket_id: int) -> bool:
    return session.scalar(select(exists().where(AccessRequest.ticket_id == ticket_id))) or bool(
        session.scalar(select(exists().where(AccessGrant.fulfilment_ticket_id == ticket_id))))


def _delete_ticket(session: Session, ticket_id: int) -> None:
    session.execute(update(Ticket).where(Ticket.linked_ticket_id == ticket_id).values(linked_ticket_id=None))
    session.execute(update(Ticket).where(Ticket.merged_into_id == ticket_id).values(merged_into_id=None))
    session.execute(delete(TicketMerge).where(or_(TicketMerge.source_id == ticket_id, TicketMerge.target_id == ticket_id)))
    session.execute(update(Event).where(Event.ticket_id == ticket_id).values(ticket_id=None))
    session.execute(update(Inbound).where(Inbound.ticket_id == ticket_id).values(ticket_id=None))
    session.execute(delete(Outbox).where(Outbox.ticket_id == ticket_id))
    session.execute(delete(SlaMark).where(SlaMark.ticket_id == ticket_id))
    session.execute(delete(Fulfilment).where(Fulfilment.ticket_id == ticket_id))
    session.execute(delete(Satisfaction).where(Satisfaction.ticket_id == ticket_id))
    session.execute(delete(Presence).where(Presence.ticket_id == ticket_id))
    ticket = session.get(Ticket, ticket_id)
    if ticket is not None:
        session.delete(ticket)  # its messages, attachments and watchers go with it (cascade)
