"""The ticket queue as people browse it: filters, text search, sorting and pages."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, joinedload, selectinload

from helpdesk.core import fields, search
from helpdesk.core.models import Contact, Role, SlaLevel, SlaMark, Ticket, TicketKind, TicketStatus, Watcher
from helpdesk.core.tickets import OPEN_STATUSES

OPEN = OPEN_STATUSES
# A text search counts at most this many matches (the console says "more than 1,000" and pages to
# it): counting all of a common word's 30,000 matches cost ten times the page itself on PostgreSQL.
COUNT_CAP = 1000


class SlaState(enum.Enum):
    """What the SLA check has recorded on a ticket (its SlaMark rows)."""

    BREACHED = "breached"
    AT_RISK = "at_risk"  # warned (80% of a target used), not breached
    ON_TRACK = "on_track"  # open, no mark


class Sort(enum.Enum):
    NEWEST = "newest"
    OLDEST = "oldest"
    UPDATED = "updated"
    PRIORITY = "priority"
    DUE = "due"
    RELEVANCE = "relevance"  # best match of a search first; the newest without one


_ORDER = {
    Sort.NEWEST: (Ticket.id.desc(),),
    Sort.OLDEST: (Ticket.id.asc(),),
    Sort.UPDATED: (Ticket.updated_at.desc(), Ticket.id.desc()),
    Sort.PRIORITY: (Ticket.priority.asc(), Ticket.id.desc()),
    Sort.DUE: (Ticket.due_at.is_(None), Ticket.due_at.asc(), Ticket.id.desc()),
    Sort.RELEVANCE: (Ticket.id.desc(),),
}


@dataclass(frozen=True)
class QueueQuery:
    kind: TicketKind | None = None
    status: TicketStatus | None = None
    open_only: bool = False
    priority: str | None = None
    category: str | None = None
    assignee: str | None = None  # an email, or "none" for unassigned
    sla: SlaState | None = None
    groups: tuple[str, ...] | None = None  # tickets in any of these groups (a "My groups" view); () matches none
    no_group: bool = False  # tickets in no group
    field: tuple[str, str] | None = None  # (key, value): a custom field holds this value (core.fields)
    first: tuple[str, ...] = ()  # these groups' tickets come first (an agent's own groups), then the sort
    text: str = ""
    sort: Sort = Sort.NEWEST
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class QueuePage:
    query: QueueQuery
    tickets: list[Ticket]
    total: int  # at most the count cap when one was given
    capped: bool = False  # more than ``total`` tickets match (the count stopped at its cap)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.query.per_page))


def sla_state(session: Session, ticket: Ticket) -> SlaState | None:
    return sla_states(session, [ticket]).get(ticket.id)


def sla_states(session: Session, tickets: list[Ticket]) -> dict[int, SlaState]:
    """The SLA state of each listed ticket that has one, in one query."""
    ids = [t.id for t in tickets]
    marks: dict[int, set[SlaLevel]] = {}
    if ids:
        for ticket_id, level in session.execute(
            select(SlaMark.ticket_id, SlaMark.level).where(SlaMark.ticket_id.in_(ids))
        ):
            marks.setdefault(ticket_id, set()).add(level)
    states = {}
    for t in tickets:
        levels = marks.get(t.id, set())
        if SlaLevel.BREACH in levels:
            states[t.id] = SlaState.BREACHED
        elif SlaLevel.WARNING in levels:
            states[t.id] = SlaState.AT_RISK
        elif t.status in OPEN:
            states[t.id] = SlaState.ON_TRACK
    return states


def _marked(level: SlaLevel) -> ColumnElement[bool]:
    return exists().where(SlaMark.ticket_id == Ticket.id, SlaMark.level == level)


def _sla_condition(state: SlaState) -> ColumnElement[bool]:
    if state is SlaState.BREACHED:
        return _marked(SlaLevel.BREACH)
    if state is SlaState.AT_RISK:
        return and_(_marked(SlaLevel.WARNING), ~_marked(SlaLevel.BREACH))
    return and_(Ticket.status.in_(OPEN), ~exists().where(SlaMark.ticket_id == Ticket.id))


def conditions(session: Session, query: QueueQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.kind is not None:
        where.append(Ticket.kind == query.kind)
    if query.status is not None:
        where.append(Ticket.status == query.status)
    elif query.open_only:
        where.append(Ticket.status.in_(OPEN))
    if query.priority:
        where.append(Ticket.priority == query.priority)
    if query.category:
        where.append(Ticket.category == query.category)
    if query.assignee == "none":
        where.append(Ticket.assignee_id.is_(None))
    elif query.assignee:
        assignee = select(Contact.id).where(Contact.email == query.assignee.lower()).scalar_subquery()
        where.append(Ticket.assignee_id == assignee)
    if query.sla is not None:
        where.append(_sla_condition(query.sla))
    if query.groups is not None:
        where.append(Ticket.group.in_(query.groups))
    if query.no_group:
        where.append(Ticket.group.is_(None))
    if query.field is not None:
        where.append(fields.matching(*query.field))
    if query.text.strip():
        where.append(search.matches(session, query.text))
    return where


def list_tickets(
    session: Session,
    query: QueueQuery,
    *,
    with_watchers: bool = False,
    only: ColumnElement[bool] | None = None,
    count_cap: int | None = None,
) -> QueuePage:
    """One page of tickets with requester and assignee; ``with_watchers``: theirs too (the API lists them);
    ``only``: no ticket outside this condition (what the viewer may read, core.visibility); ``count_cap``:
    a text search counts at most this many matches (the rest of the queue is always counted exactly)."""
    where = conditions(session, query) + ([only] if only is not None else [])
    cap = count_cap if query.text.strip() else None
    page = max(1, query.page)
    options = [joinedload(Ticket.requester), joinedload(Ticket.assignee)]
    if with_watchers:
        options.append(selectinload(Ticket.watchers).joinedload(Watcher.contact))
    hits = _hits(session, query, only)
    if hits is not None:
        return _hit_page(session, hits, replace(query, page=page), options, where, cap)
    offset = (page - 1) * query.per_page
    ranking = search.relevance(session, query.text) if query.sort is Sort.RELEVANCE else None
    if ranking is not None:
        tickets, total, capped = _ranked(session, where, ranking, query.first, query.per_page, offset, options, cap)
        return QueuePage(query=replace(query, page=page), tickets=tickets, total=total, capped=capped)
    order: tuple[ColumnElement[Any], ...] = _ORDER[query.sort]
    if query.first:
        order = (case((Ticket.group.in_(query.first), 0), else_=1), *order)
    total, capped = _count(session, where, cap)
    tickets = list(session.scalars(
        select(Ticket).where(*where).options(*options).order_by(*order).limit(query.per_page).offset(offset)
    ))
    return QueuePage(query=replace(query, page=page), tickets=tickets, total=total, capped=capped)


def _ranked(
    session: Session,
    where: list[ColumnElement[bool]],
    ranking: search.Ranking,
    first: tuple[str, ...],
    limit: int,
    offset: int,
    options: list[Any],
    cap: int | None,
) -> tuple[list[Ticket], int, bool]:
    """A page sorted by relevance (``first``: these groups' tickets first), its count and whether the
    count is capped. The sort scores every match: the page's numbers are picked first, with the count
    of the matches the sort reads anyway, then only those tickets are read with their contacts (joined
    before the sort, every match's contacts were looked up: 7 ms of 5,000 matches; the count on its
    own read the matches again)."""
    # A ticket found by its number has no score: it comes first; then the newest among equals.
    columns: list[ColumnElement[Any]] = [Ticket.id.label("id"), func.coalesce(ranking.score, -1e9).label("score")]
    if first:
        columns.append(case((Ticket.group.in_(first), 0), else_=1).label("first"))
    scored = select(*columns).where(*where)
    if ranking.scores is not None:
        scored = scored.outerjoin(ranking.scores, ranking.scores.c.ticket_id == Ticket.id)
    # OFFSET 0 keeps the scoring inside: merged into the outer query, the count's window kept every
    # match's row with its ranking vector (3 MB for 4,900 matches: spilled to disk, 15 ms or more).
    inner = scored.offset(0).subquery("scored")
    order = ((inner.c.first,) if first else ()) + (inner.c.score, inner.c.id.desc())
    found = session.execute(select(inner.c.id, func.count().over()).order_by(*order).limit(limit).offset(offset)).all()
    if not found:  # a page past the last one
        return [], *_count(session, where, cap)
    numbers = [number for number, _ in found]
    by_number = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(numbers)).options(*options))}
    return [by_number[n] for n in numbers], *_capped(found[0][1], cap)


def _capped(matches: int, cap: int | None) -> tuple[int, bool]:
    """The count to show for this many matches, and whether it stopped at the cap."""
    return (matches, False) if cap is None else (min(matches, cap), matches > cap)


def _count(
    session: Session, where: list[ColumnElement[bool]], cap: int | None, matching: Select[Any] | None = None
) -> tuple[int, bool]:
    """How many tickets match, and whether there are more than the cap (then the count is the cap);
    ``matching``: the matching tickets' numbers to count to the cap, if not those ``where`` selects."""
    if cap is None:
        return session.scalar(select(func.count()).select_from(Ticket).where(*where)) or 0, False
    matching = select(Ticket.id).where(*where) if matching is None else matching
    if session.get_bind().dialect.name == "postgresql":
        # Planned for a LIMIT, PostgreSQL scans the table and tests each row's out-of-line search vector
        # (search1: 74 ms against 39 ms for the whole count); a materialized CTE is planned for all
        # matches (the GIN index, no vector read) and still read only as far as the cap (8 ms).
        matches = matching.cte("matching").prefix_with("MATERIALIZED")
        matching = select(matches.c.id)
    first = matching.limit(cap + 1).subquery()
    return _capped(session.scalar(select(func.count()).select_from(first)) or 0, cap)


def _hits(session: Session, query: QueueQuery, only: ColumnElement[bool] | None) -> Select[Any] | None:
    """A text search sorted by number or relevance on SQLite: the search index's matches joined to the
    tickets that pass the other filters (ticket, key, and score when ranked; one row per matching
    message or subject, core.search.hits). Read in the index's order, a common word's page or capped
    count stops after its first matches instead of collecting all of them (some 30,000) first; ranked,
    only the matches of tickets that pass the filters are scored. None: the text is a condition like
    any other (another database or sort, a ticket number)."""
    if query.sort not in (Sort.NEWEST, Sort.OLDEST, Sort.RELEVANCE):
        return None
    hit = search.hits(session, query.text, scored=query.sort is Sort.RELEVANCE)
    if hit is None:
        return None
    where = conditions(session, replace(query, text="")) + ([only] if only is not None else [])
    return select(Ticket.id, *hit.c).select_from(hit).join(Ticket, Ticket.id == hit.c.ticket_id).where(*where)


def _hit_page(
    session: Session, hits: Select[Any], query: QueueQuery, options: list[Any], where: list[ColumnElement[bool]],
    cap: int | None,
) -> QueuePage:
    """The page and count of a search from the matches `_hits` joined (``where``: the same conditions
    for an exact count)."""
    offset = (query.page - 1) * query.per_page
    theirs = Ticket.group.in_(query.first)
    first = (case((theirs, 0), else_=1),) if query.first else ()
    if query.sort is Sort.RELEVANCE:
        # A ticket's best match, the newest first among equals as the queue orders them. Every match is
        # scored to find the best, so the same statement counts the matching tickets.
        score = func.min(hits.selected_columns.score)
        best = (
            hits.with_only_columns(
                Ticket.id, score.label("score"), *(f.label("first") for f in first), func.count().over().label("matches")
            )
            .group_by(Ticket.id).order_by(*first, score, Ticket.id.desc()).limit(query.per_page).offset(offset)
            .subquery("best")
        )
        rows = session.execute(
            select(Ticket, best.c.matches).join(best, best.c.id == Ticket.id).options(*options)
            .order_by(*((best.c.first,) if first else ()), best.c.score, Ticket.id.desc())
        ).all()
        if rows:
            total, capped = _capped(rows[0][1], cap)
            return QueuePage(query=query, tickets=[row[0] for row in rows], total=total, capped=capped)
        listed: list[Ticket] = []
    else:
        ids = _hit_ids(session, hits, query, offset, theirs)
        listed = list(session.scalars(
            select(Ticket).where(Ticket.id.in_(ids)).options(*options).order_by(*first, *_ORDER[query.sort])
        )) if ids else []
    total, capped = _count(session, where, cap, hits.with_only_columns(Ticket.id).distinct())
    return QueuePage(query=query, tickets=listed, total=total, capped=capped)


def _hit_ids(session: Session, hits: Select[Any], query: QueueQuery, offset: int, theirs: ColumnElement[bool]) -> list[int]:
    """The page's ticket numbers in the index's order (ticket, then message: one ticket per run of its
    matches); with ``query.first``, those groups' tickets first, each part read in that order."""
    key = hits.selected_columns.key
    ordered = hits.with_only_columns(Ticket.id).distinct().order_by(key.desc() if query.sort is Sort.NEWEST else key)
    if not query.first:
        return list(session.scalars(ordered.limit(query.per_page).offset(offset)))
    found = list(session.scalars(ordered.where(theirs).limit(query.per_page).offset(offset)))
    if len(found) == query.per_page:
        return found
    # The groups' tickets end on this page or before it: the others follow them.
    if found or not offset:
        before = offset + len(found)
    else:
        before = session.scalar(select(func.count()).select_from(ordered.where(theirs).subquery())) or 0
    others = ordered.where(or_(Ticket.group.is_(None), ~theirs))
    return found + list(session.scalars(others.limit(query.per_page - len(found)).offset(offset - before + len(found))))


def categories(session: Session) -> list[str]:
    return list(session.scalars(select(Ticket.category).distinct().order_by(Ticket.category)))


def agents(session: Session) -> list[Contact]:
    return list(
        session.scalars(
            select(Contact).where(Contact.role.in_((Role.AGENT, Role.ADMIN))).order_by(Contact.email)
        )
    )
