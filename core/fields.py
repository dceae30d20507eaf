"""Custom fields: admins define ticket fields per kind (text, choice, date, user); agents set their values.

A value is kept as text in a checked form (a choice as the admin wrote it, a date as YYYY-MM-DD,
a user as an agent's address), so the queue can filter by equality. Every definition change and
every value set on a ticket is audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from helpdesk.core import audit
from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.models import (
    Contact,
    Event,
    FieldDef,
    FieldType,
    FieldValue,
    Role,
    Ticket,
    TicketKind,
    utcnow,
)

# What a field applies to: a ticket kind, "event" (an incident a monitoring alert opened) or all tickets.
APPLIES_TO = ("all", "incident", "request", "access", "event")
VALUE_LIMIT = 500  # the column's length
CHOICES_LIMIT = 100
_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_KIND_NAMES = {
    TicketKind.INCIDENT: "incident",
    TicketKind.SERVICE_REQUEST: "request",
    TicketKind.ACCESS_REQUEST: "access",
}


class FieldError(Refusal):
    """A field definition or value that is refused, with the reason to show."""


@dataclass(frozen=True)
class Shown:
    """A field as a ticket shows it: its definition and the ticket's value ("" when unset)."""

    field: FieldDef
    value: str


def kind_of(session: Session, ticket: Ticket) -> str:
    """The APPLIES_TO name of this ticket's kind: an incident opened by a monitoring alert is an "event"."""
    if ticket.kind is TicketKind.INCIDENT and session.scalar(select(exists().where(Event.ticket_id == ticket.id))):
        return "event"
    return _KIND_NAMES[ticket.kind]


def list_all(session: Session) -> list[FieldDef]:
    return list(session.scalars(select(FieldDef).order_by(FieldDef.position, FieldDef.key)))


def find(session: Session, key: str) -> FieldDef | None:
    return session.scalars(select(FieldDef).where(FieldDef.key == key.strip().lower())).first()


def applicable(session: Session, ticket: Ticket) -> list[FieldDef]:
    kinds = ("all", kind_of(session, ticket))
    return [f for f in list_all(session) if f.applies_to in kinds]


def _choices(type_: FieldType, choices: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for choice in choices:
        text = " ".join(choice.split())
        if text and text.lower() not in {c.lower() for c in cleaned}:
            cleaned.append(text[:VALUE_LIMIT])
    if type_ is FieldType.CHOICE and not cleaned:
        raise FieldError(N_("a choice field needs at least one choice"))
    if type_ is not FieldType.CHOICE and cleaned:
        raise FieldError(N_("only a choice field has choices"))
    if len(cleaned) > CHOICES_LIMIT:
        raise FieldError(N_("a field has at most %(limit)s choices"), limit=CHOICES_LIMIT)
    return cleaned


def define(
    session: Session, actor: Contact, key: str, label: str, type_: FieldType, *, applies_to: str = "all",
    choices: Sequence[str] = (), required: bool = False, position: int = 0, field: FieldDef | None = None,
) -> FieldDef:
    """Create a field, or change ``field``; checked, audited. A field with values keeps its type."""
    key, label, applies_to = key.strip().lower(), " ".join(label.split()), applies_to.strip().lower()
    if not _KEY.fullmatch(key):
        raise FieldError(N_("a field's key is 1-40 lower-case letters, digits or '_', starting with a letter"))
    if not label or len(label) > 80:
        raise FieldError(N_("a field's label is 1-80 characters"))
    if applies_to not in APPLIES_TO:
        raise FieldError(N_("a field applies to one of %(known)s, not %(value)r"), known=", ".join(APPLIES_TO),
                         value=applies_to)
    cleaned = _choices(type_, choices)
    other = find(session, key)
    if other is not None and other is not field:
        raise FieldError(N_("there is already a field %(key)s"), key=key)
    if field is not None and field.type is not type_ and _has_values(session, field):
        raise FieldError(N_("field %(key)s has values: its type stays %(type)s"), key=field.key, type=field.type.value)
    before = to_json(field) if field is not None else None
    field = field or FieldDef(key=key, label=label, type=type_)
    field.key, field.label, field.type, field.applies_to = key, label, type_, applies_to
    field.choices, field.required, field.position = cleaned, required, position
    session.add(field)
    session.flush()
    audit.record(session, actor=actor.email, action="field.update" if before else "field.create",
                 object_type="field", object_id=field.id, before=before, after=to_json(field))
    return field


def _has_values(session: Session, field: FieldDef) -> bool:
    return bool(session.scalar(select(exists().where(FieldValue.field_id == field.id))))


def delete(session: Session, actor: Contact, field: FieldDef) -> int:
    """Delete a field and its values on every ticket; returns how many values went, audited."""
    gone = session.scalar(select(func.count()).where(FieldValue.field_id == field.id)) or 0
    session.execute(sql_delete(FieldValue).where(FieldValue.field_id == field.id))
    audit.record(session, actor=actor.email, action="field.delete", object_type="field", object_id=field.id,
                 before=to_json(field), after={"values_deleted": gone})
    session.delete(field)
    session.flush()
    return gone


def check_value(session: Session, field: FieldDef, text: str) -> str:
    """The stored form of ``text`` for this field, or FieldError saying what is allowed."""
    text = " ".join(text.split())
    if len(text) > VALUE_LIMIT:
        raise FieldError(N_("%(key)s: at most %(limit)s characters"), key=field.key, limit=VALUE_LIMIT)
    if field.type is FieldType.CHOICE:
        found = next((c for c in field.choices if c.lower() == text.lower()), None)
        if found is None:
            raise FieldError(N_("%(key)s: %(value)r is not one of %(choices)s"), key=field.key, value=text,
                             choices=", ".join(field.choices))
        return str(found)
    if field.type is FieldType.DATE:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError(text)
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise FieldError(N_("%(key)s: %(value)r is not a date (YYYY-MM-DD)"), key=field.key, value=text) from None
    if field.type is FieldType.USER:
        agent = session.scalars(
            select(Contact).where(Contact.email == text.lower(), Contact.role.in_((Role.AGENT, Role.ADMIN)))
        ).first()
        if agent is None:
            raise FieldError(N_("%(key)s: %(value)r is not an agent"), key=field.key, value=text)
        return agent.email
    return text


def values_of(session: Session, ticket_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Each listed ticket's values by field key, in one query."""
    found: dict[int, dict[str, str]] = {i: {} for i in ticket_ids}
    if ticket_ids:
        rows = session.execute(
            select(FieldValue.ticket_id, FieldDef.key, FieldValue.value)
            .join(FieldDef, FieldDef.id == FieldValue.field_id)
            .where(FieldValue.ticket_id.in_(ticket_ids))
        )
        for ticket_id, key, value in rows:
            found[ticket_id][key] = value
    return found


def ticket_values(ticket: Ticket) -> dict[str, str]:
    """The ticket's values by key (for its JSON), as loaded with it."""
    return {v.field.key: v.value for v in ticket.field_values}


def shown(session: Session, ticket: Ticket) -> list[Shown]:
    """The fields for this ticket's kind with its values, in the admin's order."""
    values = values_of(session, [ticket.id])[ticket.id]
    return [Shown(f, values.get(f.key, "")) for f in applicable(session, ticket)]


def set_value(session: Session, ticket: Ticket, actor: str, key: str, text: str) -> bool:
    """Set (or with blank ``text`` clear) field ``key`` on the ticket; checked, audited. True if it changed."""
    field = find(session, key)
    if field is None:
        known = ", ".join(f.key for f in applicable(session, ticket)) or "none defined"
        raise FieldError(N_("no field %(key)r (fields: %(known)s)"), key=key, known=known)
    if field.applies_to not in ("all", kind_of(session, ticket)):
        raise FieldError(N_("field %(key)s is for %(kind)s tickets"), key=field.key, kind=field.applies_to)
    value = check_value(session, field, text) if text.strip() else None
    if value is None and field.required:
        raise FieldError(N_("field %(key)s is required"), key=field.key)
    row = session.scalars(
        select(FieldValue).where(FieldValue.ticket_id == ticket.id, FieldValue.field_id == field.id)
    ).first()
    before = row.value if row is not None else None
    if before == value:
        return False
    if value is None:
        session.delete(row)
    elif row is None:
        session.add(FieldValue(ticket_id=ticket.id, field_id=field.id, value=value))
    else:
        row.value = value
    ticket.updated_at = utcnow()
    session.flush()
    session.expire(ticket, ["field_values"])  # (read-only to the ORM: loaded again when next read)
    audit.record(session, actor=actor, action="ticket.field", object_type="ticket", object_id=ticket.id,
                 before={field.key: before}, after={field.key: value})
    session.flush()
    return True


def set_values(session: Session, ticket: Ticket, actor: str, values: dict[str, str]) -> list[str]:
    """Several fields at once (a console form, an API call): all checked before any is set. The keys changed."""
    for key, text in values.items():
        field = find(session, key)
        if field is not None and text.strip():
            check_value(session, field, text)
    return [key for key, text in values.items() if set_value(session, ticket, actor, key, text)]


def matching(key: str, value: str) -> ColumnElement[bool]:
    """Queue condition: the ticket's field ``key`` holds ``value`` as stored."""
    return exists().where(
        FieldValue.ticket_id == Ticket.id,
        FieldValue.field_id == select(FieldDef.id).where(FieldDef.key == key.strip().lower()).scalar_subquery(),
        FieldValue.value == " ".join(value.split()),
    )


def to_json(field: FieldDef) -> dict[str, Any]:
    return {
        "key": field.key,
        "label": field.label,
        "type": field.type.value,
        "applies_to": field.applies_to,
        "choices": list(field.choices),
        "required": field.required,
        "position": field.position,
    }
