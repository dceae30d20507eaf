"""Groups: teams of agents. A ticket's ``group`` names one; rules route mail to it; agents see their groups first.

A ticket keeps the group's name (as rules, the catalogue and SLA escalation name it), so a rename
moves the tickets along and a delete leaves them without a group. Every change is audited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from helpdesk.core import audit, tickets
from helpdesk.core.catalogue import Catalogue
from helpdesk.core.classify import RuleSet
from helpdesk.core.i18n import N_
from helpdesk.core.models import Contact, Group, GroupMember, Role, Ticket

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class GroupError(tickets.TicketError):
    """A group change that is refused, with the reason to show."""


def list_all(session: Session) -> list[Group]:
    return list(session.scalars(select(Group).order_by(Group.name)))


def names(session: Session) -> list[str]:
    return list(session.scalars(select(Group.name).order_by(Group.name)))


def find(session: Session, name: str) -> Group | None:
    return session.scalars(select(Group).where(Group.name == name.strip())).first()


def of_agent(session: Session, agent: Contact) -> list[str]:
    """The names of the groups ``agent`` is a member of."""
    return list(
        session.scalars(
            select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.contact_id == agent.id).order_by(Group.name)
        )
    )


def _json(group: Group) -> dict[str, object]:
    return {"name": group.name, "email": group.email, "members": [m.email for m in group.members]}


def save(
    session: Session, actor: Contact, name: str, *, email: str | None = None, group: Group | None = None,
) -> Group:
    """Create a group, or rename/change ``group`` (its tickets follow a rename); checked, audited."""
    name, email = " ".join(name.split()), (email or "").strip().lower() or None
    if not _NAME.fullmatch(name):
        raise GroupError(N_("a group's name is 1-80 letters, digits, spaces, '.', '_' or '-'"))
    if email is not None and (len(email) > 320 or not _EMAIL.fullmatch(email)):
        raise GroupError(N_("%(email)r is not an email address"), email=email)
    other = session.scalars(select(Group).where(func.lower(Group.name) == name.lower())).first()
    if other is not None and other is not group:
        raise GroupError(N_("there is already a group %(name)s"), name=other.name)
    before = _json(group) if group is not None else None
    if group is not None and group.name != name:
        session.execute(update(Ticket).where(Ticket.group == group.name).values(group=name))
    group = group or Group(name=name)
    group.name, group.email = name, email
    session.add(group)
    session.flush()
    audit.record(session, actor=actor.email, action="group.update" if before else "group.create",
                 object_type="group", object_id=group.id, before=before, after=_json(group))
    return group


def delete(session: Session, actor: Contact, group: Group) -> None:
    """Delete a group: its tickets keep no group, its members none of it; audited."""
    moved = session.scalar(select(func.count()).where(Ticket.group == group.name)) or 0
    session.execute(update(Ticket).where(Ticket.group == group.name).values(group=None))
    audit.record(session, actor=actor.email, action="group.delete", object_type="group", object_id=group.id,
                 before=_json(group), after={"tickets_without_group": moved})
    group.members = []
    session.flush()
    session.delete(group)
    session.flush()


def set_members(session: Session, actor: Contact, group: Group, emails: Sequence[str]) -> None:
    """The group's members are exactly these agents (addresses); an address that is no agent is refused."""
    wanted = sorted({e.strip().lower() for e in emails if e.strip()})
    found = list(session.scalars(
        select(Contact).where(Contact.email.in_(wanted), Contact.role.in_((Role.AGENT, Role.ADMIN)))
    ))
    missing = sorted(set(wanted) - {c.email for c in found})
    if missing:
        raise GroupError(N_("not an agent: %(emails)s"), emails=", ".join(missing))
    before = [m.email for m in group.members]
    if before == wanted:
        return
    group.members = sorted(found, key=lambda c: c.email)
    session.flush()
    audit.record(session, actor=actor.email, action="group.members", object_type="group", object_id=group.id,
                 before={"members": before}, after={"members": wanted})


def assign(session: Session, ticket: Ticket, actor: str, name: str | None, *, reason: str | None = None) -> bool:
    """Put the ticket in group ``name`` (None or blank: no group), audited; True if it changed."""
    found = find(session, name) if name and name.strip() else None
    if name and name.strip() and found is None:
        raise GroupError(N_("no group %(name)r (groups: %(groups)s)"), name=name.strip(),
                         groups=", ".join(names(session)) or "none")
    return bool(tickets.change(session, ticket, actor, group=found.name if found else None, reason=reason))


def unknown_in_rules(session: Session, rules: RuleSet) -> list[str]:
    """One line per rule (or the defaults) that routes to a group that does not exist; empty when all do."""
    known = set(names(session))
    named = [("defaults", rules.defaults.group)] + [(f"rule `{r.name}`", r.then.group) for r in rules.rules]
    return [f"{where} sets group {group!r}" for where, group in named if group and group not in known]


def unknown_in_catalogue(session: Session, catalogue: Catalogue) -> list[str]:
    """One line per catalogue item fulfilled by a group that does not exist; empty when all are."""
    known = set(names(session))
    return [f"item `{i.code}` sets group {i.group!r}" for i in catalogue.items if i.group and i.group not in known]


def adopt(session: Session, rules: RuleSet, catalogue: Catalogue | None = None) -> list[str]:
    """A desk with no groups yet (new, or from before groups) gets the groups its rules, its catalogue and its
    tickets name; audited.

    Returns the names created. Once any group exists nothing is adopted: a rule naming another is an error.
    """
    if session.scalar(select(func.count()).select_from(Group)):
        return []
    named = {rules.defaults.group, *(r.then.group for r in rules.rules)}
    named |= {item.group for item in catalogue.items} if catalogue else set()
    named |= set(session.scalars(select(Ticket.group).where(Ticket.group.is_not(None)).distinct()))
    created = sorted(n for n in named if n)
    for name in created:
        group = Group(name=name)
        session.add(group)
        session.flush()
        audit.record(session, actor=audit.SYSTEM, action="group.create", object_type="group", object_id=group.id,
                     after=_json(group), reason="named by the rules, the catalogue or a ticket before groups existed")
    return created


def check_rules(session: Session, rules: RuleSet) -> None:
    """At start: every group the rules route to exists, else GroupError naming the rules file and the rules."""
    unknown = unknown_in_rules(session, rules)
    if unknown:
        raise GroupError(
            f"{rules.source}: {'; '.join(unknown)}, which is no group; add it (console Groups page, "
            f"API POST /api/groups) or change the rule. Groups: {', '.join(names(session)) or 'none'}"
        )


def check_catalogue(session: Session, catalogue: Catalogue, source: str) -> None:
    """At start: every group a catalogue item is fulfilled by exists, else GroupError naming the file and items."""
    unknown = unknown_in_catalogue(session, catalogue)
    if unknown:
        raise GroupError(
            f"{source}: {'; '.join(unknown)}, which is no group; add it (console Groups page, "
            f"API POST /api/groups) or change the item. Groups: {', '.join(names(session)) or 'none'}"
        )
