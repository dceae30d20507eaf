"""Who may decide an approval: the policy shared by access requests and catalogue requests.

Enforced here, in the domain, so the console, email commands and the CLI all obey it.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.locks import serialise
from core.models import Contact, Role
from core.settings import Settings

APPROVER_ROLE = "approver"  # catalogue `approver` value meaning "anyone with the approver role"

_BENEFICIARY = re.compile(r"\b(?:for|f[üu]r)\s+(?:\S+\s+){0,3}?<?([\w.+-]+@[\w-]+(?:\.[\w-]+)+)>?", re.IGNORECASE)


class PolicyViolation(Exception):
    """A decision the policy forbids; the message says which rule."""


def named_beneficiary(sender: str, *texts: str) -> str | None:
    """The address a request is for ("access to the CRM for bob@...", "a laptop for bob@..."), if not the sender's."""
    for text in texts:
        found = _BENEFICIARY.search(text)
        if found and found.group(1).lower() != sender.lower():
            return found.group(1).lower()
    return None


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
    group: str | None = None,
) -> None:
    """Raise PolicyViolation unless ``decider`` may approve or reject this request."""
    if decider.role is not Role.APPROVER:
        raise PolicyViolation(f"{decider.email} is not an approver: only approvers decide")
    if decider.id == requester.id:
        raise PolicyViolation(f"{decider.email} made this request and cannot decide it")
    if beneficiary is not None and decider.id == beneficiary.id:
        raise PolicyViolation(f"this request would give {decider.email} access: they cannot decide it")
    if group and group in settings.access.approvers_by_group:
        if decider not in approvers_for(session, settings, group):
            raise PolicyViolation(f"{decider.email} is not an approver for {group!r}")
