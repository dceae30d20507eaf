"""Agent collision: who else has a ticket open or is typing a reply, and replies written on a stale view.

Pages poll (every few seconds) to say "I am here, viewing or typing"; whoever polled within
FRESH counts as present. Kept in the database so that every console process sees every agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from helpdesk.core.models import Contact, Message, Presence, PresenceState, Ticket, utcnow

POLL_SECONDS = 5
FRESH = timedelta(seconds=3 * POLL_SECONDS)  # three missed polls: the page is gone
KEEP = timedelta(hours=1)


class NewerReply(Exception):
    """A reply written on a view of the thread older than its newest public message: ask before sending."""

    def __init__(self, newer: Sequence[Message]) -> None:
        self.newer = list(newer)
        who = ", ".join(dict.fromkeys(m.from_name or m.from_address for m in self.newer))
        super().__init__(f"{len(self.newer)} newer message(s) arrived since you opened the ticket (from {who})")


@dataclass(frozen=True)
class Here:
    email: str
    name: str | None
    state: PresenceState
    seen_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"email": self.email, "name": self.name, "state": self.state.value, "seen_at": self.seen_at.isoformat()}


def beat(session: Session, ticket: Ticket, user: Contact, state: PresenceState, *, now: datetime | None = None) -> None:
    """Record that ``user`` is on the ticket now: one row per user and ticket, written in one statement.

    Rows older than KEEP go at the same time, so the table holds only the last hour's pages.
    """
    seen_at = now or utcnow()
    values = {"ticket_id": ticket.id, "contact_id": user.id, "state": state, "seen_at": seen_at}
    session.execute(delete(Presence).where(Presence.seen_at < seen_at - KEEP))
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Presence).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=["ticket_id", "contact_id"], set_={"state": state, "seen_at": values["seen_at"]},
    ))


def others(session: Session, ticket: Ticket, user: Contact, *, now: datetime | None = None) -> list[Here]:
    """Everyone but ``user`` who polled on this ticket within FRESH, typing first."""
    since = (now or utcnow()) - FRESH
    rows = session.execute(
        select(Contact.email, Contact.name, Presence.state, Presence.seen_at)
        .join(Contact, Contact.id == Presence.contact_id)
        .where(Presence.ticket_id == ticket.id, Presence.contact_id != user.id, Presence.seen_at >= since)
        .order_by(Contact.email)
    ).all()
    found = [Here(email, name, state, seen_at) for email, name, state, seen_at in rows]
    return sorted(found, key=lambda h: h.state is not PresenceState.TYPING)


def newest_public_id(messages: Sequence[Message]) -> int:
    """The id a reply form carries: the newest message of the thread the requester sees (0: none)."""
    return max((m.id for m in messages if not m.internal and m.id is not None), default=0)


def refuse_stale(ticket: Ticket, seen: int | None) -> None:
    """NewerReply when the thread has public messages newer than ``seen`` (None: the caller did not say; no check)."""
    if seen is None:
        return
    newer = [m for m in ticket.messages if not m.internal and m.id is not None and m.id > seen]
    if newer:
        raise NewerReply(newer)
