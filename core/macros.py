"""Canned replies (macros): reply templates admins keep, which agents send from the console or with ``#macro NAME``.

A macro's body is a Jinja template rendered in an immutable sandbox over a plain dict of strings
(requester name, ticket number, category, agent name, ...): it never sees a model, so a template
cannot read or change anything but those strings. Loops, macros and includes are refused when it
is saved, so rendering one takes time in proportion to its length. A macro may also set the
ticket's status, priority, category and assignee, with the same checks as a change by hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.core import audit, processes, tickets
from helpdesk.core.i18n import N_
from helpdesk.core.models import Contact, Macro, Message, Role, Ticket, TicketStatus
from helpdesk.core.notify import OutboundAttachment
from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.core.settings import Settings

PLACEHOLDERS = {
    "requester_name": N_("the requester's name (or address)"),
    "requester_email": N_("the requester's address"),
    "ticket_number": N_("the ticket's number"),
    "ticket_tag": N_("the ticket's subject tag, e.g. [#12]"),
    "subject": N_("the ticket's subject"),
    "category": N_("the ticket's category"),
    "agent_name": N_("the name of the agent sending it (or address)"),
}
BODY_LIMIT = 20_000
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,79}")
# Canned text needs values and conditions, never repetition or reuse: no loop can make rendering slow.
_REFUSED = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


class MacroError(tickets.TicketError):
    """A macro that cannot be saved or applied, with the reason to show."""


class NoMacro(MacroError):
    """No macro has the name asked for."""


@dataclass(frozen=True)
class Applied:
    reply: Message
    changed: dict[str, Any]
    macro: str  # its name


def context(settings: Settings, ticket: Ticket, agent: Contact) -> dict[str, str]:
    """The only values a macro sees: strings, no models."""
    return {
        "requester_name": ticket.requester.name or ticket.requester.email,
        "requester_email": ticket.requester.email,
        "ticket_number": str(ticket.id),
        "ticket_tag": f"[{settings.subject_tag_prefix}{ticket.id}]",
        "subject": ticket.subject,
        "category": ticket.category,
        "agent_name": agent.name or agent.email,
    }


def _sample() -> dict[str, str]:
    return {name: name.upper() for name in PLACEHOLDERS}


def render_text(body: str, values: dict[str, str]) -> str:
    try:
        return _env.from_string(body).render(values).strip()
    except TemplateError as exc:  # (SecurityError and UndefinedError are TemplateErrors)
        raise MacroError(N_("the macro cannot be rendered: %(error)s"), error=str(exc)) from exc


def check_body(body: str) -> None:
    if not body.strip():
        raise MacroError(N_("a macro needs some text"))
    if len(body) > BODY_LIMIT:
        raise MacroError(N_("a macro's text is at most %(limit)s characters"), limit=BODY_LIMIT)
    try:
        tree = _env.parse(body)
    except TemplateError as exc:
        raise MacroError(N_("the macro's template does not parse: %(error)s"), error=str(exc)) from exc
    refused = next(iter(tree.find_all(_REFUSED)), None)
    if refused is not None:
        raise MacroError(N_("a macro may not use %(block)s blocks, only placeholders and if"),
                         block=type(refused).__name__.lower())
    known = set(PLACEHOLDERS)
    unknown = sorted({n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - known)
    if unknown:
        raise MacroError(N_("unknown placeholder %(unknown)s; use %(known)s"), unknown=", ".join(unknown),
                         known=", ".join(sorted(known)))
    render_text(body, _sample())


def find(session: Session, name: str) -> Macro | None:
    return session.scalars(select(Macro).where(Macro.name == name.strip().lower())).first()


def list_all(session: Session) -> list[Macro]:
    return list(session.scalars(select(Macro).order_by(Macro.name)))


def save(
    session: Session, actor: Contact, name: str, body: str, *, status: TicketStatus | None = None,
    priority: str | None = None, category: str | None = None, assignee: Contact | None = None,
    macro: Macro | None = None,
) -> Macro:
    """Create a macro, or change ``macro``; checked first, audited."""
    name, body = name.strip().lower(), body.replace("\r\n", "\n")  # (a browser's form sends CRLF)
    if not _NAME.fullmatch(name):
        raise MacroError(N_("a macro's name is 1-80 lower-case letters, digits, '.', '_' or '-'"))
    check_body(body)
    if priority is not None and priority not in DESK_PRIORITIES:
        raise MacroError(N_("priority must be P1..P5, not %(priority)r"), priority=priority)
    if status is TicketStatus.AWAITING_APPROVAL:
        raise MacroError(N_("a ticket awaits approval only when its process asks for one"))
    if assignee is not None and assignee.role not in (Role.AGENT, Role.ADMIN):
        raise MacroError(N_("%(email)s is not an agent"), email=assignee.email)
    other = find(session, name)
    if other is not None and other is not macro:
        raise MacroError(N_("there is already a macro named %(name)s"), name=name)
    before = to_json(macro) if macro is not None else None
    macro = macro or Macro(name=name, body=body)
    macro.name, macro.body, macro.status, macro.priority = name, body, status, priority
    macro.category = (category or "").strip().lower()[:80] or None
    macro.assignee = assignee
    session.add(macro)
    session.flush()
    audit.record(session, actor=actor.email, action="macro.update" if before else "macro.create",
                 object_type="macro", object_id=macro.id, before=before, after=to_json(macro))
    return macro


def delete(session: Session, actor: Contact, macro: Macro) -> None:
    audit.record(session, actor=actor.email, action="macro.delete", object_type="macro", object_id=macro.id,
                 before=to_json(macro))
    session.delete(macro)
    session.flush()


def fields_of(macro: Macro) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("status", "priority", "category", "assignee"):
        value = getattr(macro, name)
        if value is not None:
            fields[name] = value
    return fields


def apply(
    session: Session, settings: Settings, macro: Macro, ticket: Ticket, agent: Contact, *, lead: str = "",
    attachments: Sequence[OutboundAttachment] = (),
) -> Applied:
    """Send the macro's reply as ``agent`` and set what it sets; nothing happens if a change is refused.

    ``lead``: the agent's own words, sent in the same reply before the canned text.
    """
    wanted = {k: v for k, v in fields_of(macro).items() if getattr(ticket, k) != v}
    processes.check_staff_change(session, ticket, wanted)  # before anything is sent
    text = "\n\n".join(p for p in (lead.strip(), render_text(macro.body, context(settings, ticket, agent))) if p)
    message = tickets.reply(session, settings, ticket, agent, text, attachments=attachments)
    changed = processes.staff_change(session, settings, ticket, agent, wanted, reason=f"macro {macro.name}") if wanted else {}
    audit.record(session, actor=agent.email, action="ticket.macro", object_type="ticket", object_id=ticket.id,
                 after={"macro": macro.name, "changed": changed})
    return Applied(message, changed, macro.name)


def apply_named(
    session: Session, settings: Settings, name: str, ticket: Ticket, agent: Contact, *, lead: str = "",
    attachments: Sequence[OutboundAttachment] = (),
) -> Applied:
    """The macro called ``name`` (console, API, ``#macro NAME`` by email); MacroError if there is none."""
    found = find(session, name)
    if found is None:
        raise NoMacro(N_("no macro named %(name)r"), name=name.strip())
    return apply(session, settings, found, ticket, agent, lead=lead, attachments=attachments)


def to_json(macro: Macro) -> dict[str, Any]:
    return {
        "name": macro.name,
        "body": macro.body,
        "status": macro.status.value if macro.status else None,
        "priority": macro.priority,
        "category": macro.category,
        "assignee": macro.assignee.email if macro.assignee else None,
    }
