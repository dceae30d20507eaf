"""Who may decide an approval: the policy shared by access requests and catalogue requests.

Enforced here, in the domain, so the console, email commands and the CLI all obey it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.locks import serialise
from helpdesk.core.models import Contact, Message, Role
from helpdesk.core.settings import Settings

APPROVER_ROLE = "approver"  # catalogue `approver` value meaning "anyone with the approver role"

_BENEFICIARY = re.compile(r"\b(?:for|f[üu]r)\s+(?:\S+\s+){0,3}?<?([\w.+-]+@[\w-]+(?:\.[\w-]+)+)>?", re.IGNORECASE)


class PolicyViolation(Refusal):
    """A decision the policy forbids; the message says which rule."""


def named_beneficiary(sender: str, *texts: str) -> str | None:
    """The address a request is for ("access to the CRM for bob@...", "a laptop for bob@..."), if not the sender's."""
    for text in texts:
        found = _BENEFICIARY.search(text)
        if found and found.group(1).lower() != sender.lower():
            return found.group(1).lower()
    return None


def named_beneficiaries(*texts: str) -> set[str]:
    """Every address a request's text names as one it is for."""
    return {m.group(1).lower() for text in texts for m in _BENEFICIARY.finditer(text)}


def mailbox(address: str) -> str:
    """The mailbox an address delivers to: case and a ``+tag`` dropped (sec+x@ reaches sec@)."""
    local, at, domain = address.strip().lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}" if at else address.strip().lower()


def may_be_asked(decider: Contact, requester: Contact, beneficiary: Contact | None, named: Iterable[str] = ()) -> bool:
    """Whether ``decider`` is none of the people a request is made by or for (ensure_may_decide's own rules)."""
    return _conflict(decider, requester, beneficiary, named) is None


def _conflict(
    decider: Contact, requester: Contact, beneficiary: Contact | None, named: Iterable[str]
) -> PolicyViolation | None:
    mine = mailbox(decider.email)
    if decider.id == requester.id or mailbox(requester.email) == mine:
        return PolicyViolation(N_("%(email)s made this request and cannot decide it"), email=decider.email)
    others = [beneficiary.email] if beneficiary is not None else []
    if (beneficiary is not None and decider.id == beneficiary.id) or any(mailbox(a) == mine for a in [*others, *named]):
        return PolicyViolation(N_("this request would give %(email)s access: they cannot decide it"), email=decider.email)
    return None


# Built once: read for every access request that arrives by mail.
_OPENING = select(Message).where(Message.ticket_id == bindparam("ticket"), Message.internal.is_(False)).order_by(Message.id)


def opening_texts(session: Session, ticket_id: int) -> tuple[str, ...]:
    """Subject and text of the mail that opened a ticket: whom the request names is read there."""
    first = session.scalars(_OPENING, {"ticket": ticket_id}).first()
    return (first.subject or "", first.reply_text or first.text or "") if first is not None else ()


def lock_for_decision(session: Session, *rows: object) -> None:
    """Take the writers' lock, then re-read ``rows`` (the request and what holds its status).

    Of two decisions at once (a mail and the console), the second waits here for the first to
    commit and then sees it decided. The lock is the one every audited writer takes (core.locks),
    not a row lock: a row lock taken while holding it could deadlock with a writer that updated
    the row and waits for it.
    """
    serialise(session)
    session.flush()  # a refresh drops changes not yet written
    for row in rows:
        session.refresh(row)


def approvers_for(session: Session, settings: Settings, group: str | None) -> list[Contact]:
    """Approvers for a resource group: its configured approvers, else everyone with the approver role."""
    named = settings.access.approvers_by_group.get(group or "")
    query = select(Contact).where(Contact.role == Role.APPROVER).order_by(Contact.email)
    if named is not None:
        query = query.where(Contact.email.in_([a.lower() for a in named]))
    return list(session.scalars(query))


def ensure_may_decide(
    session: Session,
    settings: Settings,
    decider: Contact,
    *,
    requester: Contact,
    beneficiary: Contact | None = None,
    named: Iterable[str] = (),
    group: str | None = None,
) -> None:
    """Raise PolicyViolation unless ``decider`` may approve or reject this request.

    Addresses are compared as mailboxes (sec+x@ is sec@), and ``named`` (every beneficiary the
    request's text names) counts as much as the recorded beneficiary.
    """
    if decider.role is not Role.APPROVER:
        raise PolicyViolation(N_("%(email)s is not an approver: only approvers decide"), email=decider.email)
    if (conflict := _conflict(decider, requester, beneficiary, named)) is not None:
        raise conflict
    if group and group in settings.access.approvers_by_group and decider not in approvers_for(session, settings, group):
        raise PolicyViolation(N_("%(email)s is not an approver for %(group)r"), email=decider.email, group=group)
