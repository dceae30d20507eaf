"""Threading: which ticket a mail belongs to, and the marks we put on our own mail to find it again.

Order of evidence (strongest first): In-Reply-To/References against stored and signed Message-IDs,
then the subject tag ``[#N]``, then a reply token in the recipient address ``help+N-TOKEN@domain``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.core.identity import list_id, list_marks
from helpdesk.core.locks import transaction_memo
from helpdesk.core.loopguard import Verdicts
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import (
    MAX_ID,
    Contact,
    Inbound,
    Message,
    Outbox,
    Role,
    Ticket,
    TicketStatus,
    Watcher,
    aware,
    utcnow,
)
from helpdesk.core.settings import Settings

_OUR_MID = re.compile(r"^hd\.(\d+)\.([0-9a-z]+)\.([0-9a-f]{12})@(.+)$")


class MatchVia(enum.Enum):
    REFERENCES = "references"  # to a stored mail that is not ours (e.g. the requester's own)
    SIGNED_MESSAGE_ID = "signed message-id"  # to one of our own mails about this ticket
    SUBJECT_TAG = "subject tag"
    REPLY_TOKEN = "reply token"


@dataclass(frozen=True)
class ThreadMatch:
    ticket: Ticket
    via: MatchVia
    token_valid: bool  # the recipient address carried a token valid for this sender
    participant: bool  # the sender already takes part in the ticket
    # List mail answering a mail that reached us through the same list (same List-Id); anyone can
    # write a List-Id, so only that lets a list member's answer continue the thread.
    same_list: bool = False

    @property
    def vouched(self) -> bool:
        """The sender may join the ticket as a watcher: takes part, holds a token, or answers our signed mail."""
        return self.participant or self.token_valid or self.via in _STRONG


def _sign(settings: Settings, text: str, length: int) -> str:
    return hmac.new(settings.secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()[:length]


def make_message_id(settings: Settings, ticket_id: int | None) -> str:
    """A Message-ID (without brackets) that names its ticket and is signed with the secret key."""
    nonce = secrets.token_hex(6)
    number = ticket_id or 0
    return f"hd.{number}.{nonce}.{_sign(settings, f'{number}.{nonce}', 12)}@{settings.help_domain}"


def ticket_from_message_id(settings: Settings, message_id: str) -> int | None:
    """The ticket number inside one of our signed Message-IDs (None for forged or foreign ones)."""
    if not is_our_message_id(settings, message_id):
        return None
    return int(message_id.strip().split(".")[1]) or None


def is_our_message_id(settings: Settings, message_id: str) -> bool:
    """Generated here: our pattern, our domain and a valid signature (so nobody can fake one)."""
    m = _OUR_MID.match(message_id.strip().lower())
    if not m or m.group(4) != settings.help_domain.lower():
        return False
    return hmac.compare_digest(m.group(3), _sign(settings, f"{m.group(1)}.{m.group(2)}", 12))


def subject_tag(settings: Settings, ticket_id: int) -> str:
    return f"[{settings.subject_tag_prefix}{ticket_id}]"


def _ticket_number(digits: str) -> int | None:
    """The ticket a number in a tag or address can name, None when no ticket can have it."""
    if len(digits) > 18:  # (also spares int() a string of thousands of digits)
        return None
    number = int(digits)
    return number if number <= MAX_ID else None  # names no ticket, and must not reach a query


def find_subject_tag(settings: Settings, subject: str) -> int | None:
    pattern = r"\[" + re.escape(settings.subject_tag_prefix) + r"(\d+)\]"
    m = re.search(pattern, subject or "")
    return _ticket_number(m.group(1)) if m else None


def reply_token(settings: Settings, ticket_id: int, address: str) -> str:
    return _sign(settings, f"reply.{ticket_id}.{address.lower()}", 10)


def reply_address(settings: Settings, ticket_id: int, recipient: str) -> str:
    """``help+N-TOKEN@domain``: a reply to it proves the sender got our mail about ticket N."""
    return f"{settings.help_local}+{ticket_id}-{reply_token(settings, ticket_id, recipient)}@{settings.help_domain}"


def parse_reply_address(settings: Settings, address: str) -> tuple[int | None, str] | None:
    """(ticket, token) of one of our reply addresses; the ticket is None for a number no ticket can have."""
    local, _, domain = address.lower().rpartition("@")
    if domain != settings.help_domain.lower():
        return None
    m = re.fullmatch(re.escape(settings.help_local.lower()) + r"\+(\d+)-([0-9a-f]+)", local)
    return (_ticket_number(m.group(1)), m.group(2)) if m else None


def participants(session: Session, ticket: Ticket) -> set[str]:
    """Addresses allowed to continue a ticket by a subject tag alone: requester, watchers, agents and admins.

    An approver is none of these by role: approvals come back on their own (tokened) mail.
    """
    people = {ticket.requester.email}
    people.update(
        session.scalars(
            select(Contact.email).join(Watcher, Watcher.contact_id == Contact.id).where(Watcher.ticket_id == ticket.id)
        )
    )
    people.update(session.scalars(select(Contact.email).where(Contact.role.in_(STAFF_ROLES))))
    return people


_MERGE_HOPS = 20  # a chain of merges longer than this is cut short (it cannot loop: a merged ticket takes none)


def follow_merges(session: Session, ticket: Ticket) -> tuple[Ticket, set[int]]:
    """The ticket mail for ``ticket`` goes to (itself, or the one it was merged into), and every number on the way."""
    seen = {ticket.id}
    while ticket.merged_into_id is not None and len(seen) < _MERGE_HOPS:
        target = session.get(Ticket, ticket.merged_into_id)
        if target is None or target.id in seen:
            break
        ticket = target
        seen.add(ticket.id)
    return ticket, seen


def find_ticket(session: Session, settings: Settings, mail: ParsedMail) -> ThreadMatch | None:
    sender = mail.sender
    token_ticket = _token_ticket(settings, mail)

    def match(ticket: Ticket | None, via: MatchVia) -> ThreadMatch | None:
        if ticket is None:
            return None
        ticket, merged = follow_merges(session, ticket)
        valid = token_ticket is not None and token_ticket in merged  # a token for a merged ticket still counts
        return ThreadMatch(ticket, via, valid, sender in participants(session, ticket))

    refs = [r for r in [mail.in_reply_to, *reversed(mail.references)] if r]
    if refs:
        row = session.execute(
            select(Message.ticket_id, Message.inbound_id)
            .where(Message.message_id.in_(refs)).order_by(Message.id.desc()).limit(1)
        ).first()
        found = row.ticket_id if row is not None else None
        if found is None:  # our mail that is not in a thread, e.g. an agent notification
            found = session.scalars(
                select(Outbox.ticket_id).where(Outbox.message_id.in_(refs), Outbox.ticket_id.is_not(None)).limit(1)
            ).first()
        if found is not None:
            # Everyone on Bcc or on a list knows the requester's Message-ID; only ours for this
            # ticket show that the sender got our mail about it.
            ours = any(ticket_from_message_id(settings, ref) == found for ref in refs)
            threaded = match(session.get(Ticket, found), MatchVia.SIGNED_MESSAGE_ID if ours else MatchVia.REFERENCES)
            # Only a sender who may not join otherwise needs the list check, which reads the stored raw mail:
            # a participant's or token holder's reply (nearly every reply) skips it.
            if threaded is not None and not threaded.vouched and row is not None and row.inbound_id is not None:
                threaded = replace(threaded, same_list=_same_list(session, settings, mail, row.inbound_id))
            return threaded
        for ref in refs:
            number = ticket_from_message_id(settings, ref)
            if number is not None:
                return match(session.get(Ticket, number), MatchVia.SIGNED_MESSAGE_ID)
    number = find_subject_tag(settings, mail.subject)
    if number is not None:
        return match(session.get(Ticket, number), MatchVia.SUBJECT_TAG)
    if token_ticket is not None:
        return match(session.get(Ticket, token_ticket), MatchVia.REPLY_TOKEN)
    # A reply address made for someone else (a forwarded acknowledgement): evidence, not permission.
    for rcpt in [*mail.to, *mail.cc]:
        parsed = parse_reply_address(settings, rcpt.address)
        if parsed is not None:
            return match(session.get(Ticket, parsed[0]) if parsed[0] is not None else None, MatchVia.REPLY_TOKEN)
    return None


def _same_list(session: Session, settings: Settings, mail: ParsedMail, inbound_id: int) -> bool:
    """Whether ``mail`` came through the list that brought us the stored mail it answers.

    Both carry the same List-Id; or, where a list strips its headers, the stored mail was addressed
    to none of our addresses (so a list brought it) and both went to the same list address.
    """
    inbound = session.get(Inbound, inbound_id)
    if inbound is None:
        return False
    stored_id, stored_rcpts = list_marks(inbound.raw.data)
    this_id = list_id(mail.header("list-id"))
    if this_id is not None and stored_id is not None:
        return this_id == stored_id
    own = own_addresses(settings)
    if any(_is_own(settings, a, own) for a in stored_rcpts):
        return False
    return bool(stored_rcpts & {a.address.lower() for a in [*mail.to, *mail.cc]})


def _token_ticket(settings: Settings, mail: ParsedMail) -> int | None:
    """The ticket named by a reply token that is valid for this sender, if any."""
    for rcpt in [*mail.to, *mail.cc]:
        parsed = parse_reply_address(settings, rcpt.address)
        if parsed is None or parsed[0] is None:
            continue
        if hmac.compare_digest(parsed[1], reply_token(settings, parsed[0], mail.sender)):
            return parsed[0]
    return None


# -- routing: append, open (linked), or only record ------------------------------------------------

_STRONG = (MatchVia.SIGNED_MESSAGE_ID,)  # lets a non-participant join (visibly, as a watcher)
_ANSWERS = (MatchVia.REFERENCES, MatchVia.SIGNED_MESSAGE_ID)  # answers a mail of the thread
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|fw|wg|tr|rv|doorst|vs|vb|i)\s*:", re.IGNORECASE)
# Forward in one language, reply in another: "VS:" forwards in Norwegian and Danish, answers in Finnish.
_AMBIGUOUS_PREFIXES = {"vs"}


class Action(enum.Enum):
    APPEND = "append"
    OPEN = "open"  # a new ticket, linked to `ticket` when there is one
    RECORD = "record"  # automatic mail that answers nothing: recorded, no ticket


@dataclass(frozen=True)
class Routing:
    action: Action
    ticket: Ticket | None  # the ticket to append to, or the one a new ticket links to
    reason: str


def is_forward(mail: ParsedMail, *, answers_ours: bool = False) -> bool:
    """A forwarded mail: ``Fwd:`` in front of the subject, or a whole mail attached to a fresh message.

    ``answers_ours``: In-Reply-To/References name one of our mails, so an ambiguous prefix is a reply.
    """
    attached = any(p.content_type == "message/rfc822" for p in mail.attachments)
    prefix = _FORWARD_SUBJECT.match(mail.subject or "")
    if prefix:
        return not (prefix.group(1).lower() in _AMBIGUOUS_PREFIXES and answers_ours and not attached)
    return attached and not mail.in_reply_to


def route(settings: Settings, mail: ParsedMail, match: ThreadMatch | None, verdicts: Verdicts,
          now: datetime | None = None) -> Routing:
    """Where a mail goes. A match only joins its ticket when the sender may join it (no hijacking)."""
    ticket = match.ticket if match is not None else None
    # List mail answering a mail that came through the same list still threads, but never makes its
    # sender a watcher.
    may_join = match is not None and (
        match.vouched or (match.via is MatchVia.REFERENCES and verdicts.mailing_list and match.same_list))
    if is_forward(mail, answers_ours=match is not None and match.via in _ANSWERS):
        routing = Routing(Action.OPEN, ticket, "forwarded mail starts a new ticket")
    elif match is None:
        routing = Routing(Action.OPEN, None, "no ticket matched")
    elif not may_join:
        routing = Routing(Action.OPEN, ticket, f"{match.via.value} from a non-participant without a valid token")
    elif _closed_too_long(settings, match.ticket, now or utcnow()):
        routing = Routing(Action.OPEN, ticket, f"ticket #{match.ticket.id} is closed")
    else:
        return Routing(Action.APPEND, ticket, f"threaded via {match.via.value}")
    if verdicts.automatic and not verdicts.mailing_list:
        # An automatic mail opens nothing (that is how loops start); it is only recorded.
        return Routing(Action.RECORD, ticket, "automatic mail: " + "; ".join(verdicts.reasons))
    return routing


_LIST_TAG = re.compile(r"^\s*((re|aw|sv|fwd?)\s*:\s*)*\[([^\]\[#]{1,40})\]", re.IGNORECASE)


def list_copy(settings: Settings, mail: ParsedMail, own_addresses: set[str]) -> str | None:
    """Why a mail looks like a mailing-list copy whose list headers were stripped, if it does.

    It carries a ``[list]`` subject tag (not our ``[#N]``) and is addressed to none of our
    addresses: it reached us through a list subscription, not because someone wrote to us.
    Such mail still threads; it is never answered automatically, and its To/Cc (the list)
    never become watchers.
    """
    m = _LIST_TAG.match(mail.subject or "")
    if m is None or m.group(3).startswith(settings.subject_tag_prefix):
        return None
    ours = [a for a in [*mail.to, *mail.cc] if _is_own(settings, a.address, own_addresses)]
    return None if ours else f"list tag [{m.group(3)}] and not addressed to us"


def own_addresses(settings: Settings) -> set[str]:
    """The help address, the comment address and every mailbox's address, lower-cased."""
    own = {settings.address.lower(), settings.comment_address}
    own.update(m.address.lower() for m in settings.mailboxes if m.address)
    return own


def _is_own(settings: Settings, address: str, own_addresses: set[str]) -> bool:
    return address.lower() in own_addresses or parse_reply_address(settings, address) is not None


def _closed_too_long(settings: Settings, ticket: Ticket, now: datetime) -> bool:
    if ticket.status is not TicketStatus.CLOSED:
        return False
    closed = ticket.closed_at or ticket.updated_at
    if closed is None:
        return True
    closed = aware(closed)
    return now - closed > timedelta(days=settings.conversation.closed_reopen_days)


# -- who is who ----------------------------------------------------------------------------------

STAFF_ROLES = (Role.AGENT, Role.ADMIN)


def staff_contact(session: Session, settings: Settings, address: str) -> Contact | None:
    """The agent (or admin) writing from ``address``, if it is one."""
    address = address.lower()
    contact = session.scalars(select(Contact).where(Contact.email == address)).first()
    if contact is not None and contact.role in STAFF_ROLES:
        return contact
    if address in {a.lower() for a in settings.agent_addresses}:
        if contact is None:
            contact = Contact(email=address, role=Role.AGENT)
            session.add(contact)
            session.flush()
            forget_agents(session)
        return contact
    return None


def agent_addresses(session: Session, settings: Settings) -> list[str]:
    """Everyone who gets agent notifications: contacts with the agent role, plus configured addresses.

    Read once per transaction (intake notifies agents of every new ticket in a batch).
    """
    memo = transaction_memo(session)
    if _AGENTS not in memo:
        found = session.scalars(select(Contact.email).where(Contact.role == Role.AGENT).order_by(Contact.id)).all()
        memo[_AGENTS] = list(dict.fromkeys([*found, *(a.lower() for a in settings.agent_addresses)]))
    return list(memo[_AGENTS])


_AGENTS = "agent_addresses"


def forget_agents(session: Session) -> None:
    """A contact's role changed in this transaction: read the agents again."""
    transaction_memo(session).pop(_AGENTS, None)


def is_comment_address(settings: Settings, address: str) -> bool:
    return address.lower() == settings.comment_address
