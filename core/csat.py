"""Customer satisfaction (CSAT): one-click good/bad links in the resolution mail, and the figures.

A link carries a signed token (HMAC with the secret key over the ticket, its requester and an
expiry): whoever holds the mail may answer, without a login, and nothing else can be forged from
it. A ticket has one answer; a later click or comment changes it (audited each time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from helpdesk.core import audit, i18n
from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.models import Contact, Event, Rating, Satisfaction, Ticket, utcnow
from helpdesk.core.settings import Settings

LINK_LIFETIME = timedelta(days=30)
COMMENT_LIMIT = 2000
AUTOMATIC_SENDER = "opened by an automatic sender"


class BadToken(Refusal):
    """A satisfaction link that is not ours, was altered, or has expired."""


@dataclass(frozen=True)
class Survey:
    """What the resolution mail to the requester offers."""

    good_url: str
    bad_url: str


@dataclass(frozen=True)
class Answer:
    ticket_id: int
    subject: str
    rating: Rating | None
    comment: str | None


@dataclass(frozen=True)
class ResultRow:
    month: str  # YYYY-MM, of the answer
    agent: str | None  # the assignee when answered
    category: str
    good: int
    bad: int

    @property
    def score(self) -> float:
        """Share of good answers, in percent."""
        return round(100 * self.good / (self.good + self.bad), 1) if self.good + self.bad else 0.0


def _sign(settings: Settings, payload: str) -> str:
    mac = hmac.new(settings.secret_key.encode(), f"csat:{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def make_token(settings: Settings, ticket: Ticket, *, now: datetime | None = None) -> str:
    expires = int(((now or utcnow()) + LINK_LIFETIME).timestamp())
    payload = f"{ticket.id}.{ticket.requester_id}.{expires}"
    return f"{payload}.{_sign(settings, payload)}"


def read_token(session: Session, settings: Settings, token: str, *, now: datetime | None = None) -> Ticket:
    """The ticket a token names; BadToken if it is forged, altered, expired, or its requester changed."""
    parts = token.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        raise BadToken(N_("this satisfaction link is not valid"))
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(_sign(settings, payload), parts[3]):
        raise BadToken(N_("this satisfaction link is not valid"))
    ticket_id, requester_id, expires = (int(p) for p in parts[:3])
    if datetime.fromtimestamp(expires, UTC) < (now or utcnow()):
        raise BadToken(N_("this satisfaction link has expired"))
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or ticket.requester_id != requester_id:
        raise BadToken(N_("this satisfaction link is not valid"))
    return ticket


def exclude(session: Session, ticket: Ticket, reason: str) -> None:
    """Never survey this ticket (it was opened by an automatic sender)."""
    row = session.get(Satisfaction, ticket.id) or Satisfaction(ticket_id=ticket.id)
    row.excluded = reason[:80]
    session.add(row)


def why_not(session: Session, ticket: Ticket) -> str | None:
    """Why the ticket's requester gets no links, or None: they do."""
    if ticket.requester.undeliverable:
        return "the requester's address bounces"
    row = session.get(Satisfaction, ticket.id)
    if row is not None and row.excluded:
        return row.excluded
    if session.scalar(select(exists().where(Event.ticket_id == ticket.id))):
        return "an alert incident"
    return None


def survey(session: Session, settings: Settings, ticket: Ticket) -> Survey | None:
    """The links for the requester's resolution mail, or None when this ticket is not surveyed."""
    if why_not(session, ticket) is not None:
        return None
    base = f"{settings.console_url}/satisfaction/{make_token(settings, ticket)}"
    return Survey(good_url=f"{base}/good", bad_url=f"{base}/bad")


def record(
    session: Session, ticket: Ticket, *, rating: Rating | None = None, comment: str | None = None
) -> Answer:
    """The requester's answer (a rating, a comment, or both): one per ticket, changed by a later one, audited."""
    if rating is None and comment is None:
        raise i18n.Invalid(N_("an answer needs a rating or a comment"))
    # (A ticket reopened since keeps the answer: it is about the resolution the mail announced.)
    row = session.get(Satisfaction, ticket.id)
    if row is None:
        row = Satisfaction(ticket_id=ticket.id)
        session.add(row)
    before = {"rating": row.rating.value if row.rating else None, "comment": row.comment}
    if rating is not None:
        row.rating = rating
    if comment is not None:
        row.comment = comment.strip()[:COMMENT_LIMIT] or None
    row.agent_id = ticket.assignee_id
    row.category = ticket.category
    row.rated_at = utcnow()
    after = {"rating": row.rating.value if row.rating else None, "comment": row.comment}
    audit.record(
        session, actor=ticket.requester.email, action="ticket.satisfaction", object_type="ticket",
        object_id=ticket.id, before=before if any(before.values()) else None, after=after,
    )
    return Answer(ticket.id, ticket.subject, row.rating, row.comment)


def _month(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m", column)
    return func.to_char(func.timezone("UTC", column), "YYYY-MM")


def results(session: Session, *, since: datetime | None = None) -> list[ResultRow]:
    """Answers per month, agent and category, counted by the database; newest month first."""
    month = _month(session, Satisfaction.rated_at).label("month")
    query = (
        select(
            month, Contact.email, Satisfaction.category,
            func.sum(case((Satisfaction.rating == Rating.GOOD, 1), else_=0)),
            func.sum(case((Satisfaction.rating == Rating.BAD, 1), else_=0)),
        )
        .outerjoin(Contact, Contact.id == Satisfaction.agent_id)
        .where(Satisfaction.rating.is_not(None))
        .group_by(month, Contact.email, Satisfaction.category)
        .order_by(month.desc(), Contact.email, Satisfaction.category)
    )
    if since is not None:
        query = query.where(Satisfaction.rated_at >= since)
    return [ResultRow(m, agent, category or "general", int(good or 0), int(bad or 0))
            for m, agent, category, good, bad in session.execute(query)]


def results_json(rows: list[ResultRow]) -> list[dict[str, Any]]:
    return [
        {"month": r.month, "agent": r.agent, "category": r.category, "good": r.good, "bad": r.bad, "score": r.score}
        for r in rows
    ]
