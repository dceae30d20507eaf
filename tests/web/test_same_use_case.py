"""Console, API and email commands do a ticket use case through one core function: the same outcome each way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import macros, mailcommands, processes
from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Contact, Outbox, Role, Ticket, TicketStatus
from helpdesk.core.priority import PriorityMatrix
from helpdesk.core.settings import Settings
from helpdesk.core.users import issue_api_token
from tests.web.conftest import STAFF, csrf_token, login, make_ticket

AGENT = STAFF[Role.AGENT]
Surface = Callable[[Flask, sessionmaker[Session], Settings, int, str], None]


def _agent(session: Session) -> Contact:
    return session.scalars(select(Contact).where(Contact.email == AGENT)).one()


def _console(path: str, form: dict[str, str]) -> Surface:
    def act(app: Flask, factory: sessionmaker[Session], settings: Settings, number: int, arg: str) -> None:
        client = login(app.test_client(), Role.AGENT)
        data = {k: v.format(arg=arg) for k, v in form.items()}
        client.post(path.format(number=number), data={"csrf_token": csrf_token(client, f"/tickets/{number}"), **data})
    return act


def _api(path: str, body: dict[str, Any]) -> Surface:
    def act(app: Flask, factory: sessionmaker[Session], settings: Settings, number: int, arg: str) -> None:
        with transaction(factory) as session:
            token = issue_api_token(session, _agent(session))
        json = {k: (int(arg) if v == "{int}" else v.format(arg=arg)) for k, v in body.items()}
        app.test_client().post(path.format(number=number), json=json, headers={"Authorization": f"Bearer {token}"})
    return act


def _email(line: str) -> Surface:
    def act(app: Flask, factory: sessionmaker[Session], settings: Settings, number: int, arg: str) -> None:
        with transaction(factory) as session:
            ticket = session.get(Ticket, number)
            assert ticket is not None
            commands = mailcommands.split_commands(line.format(arg=arg)).commands
            mailcommands.apply_commands(session, settings, ticket, _agent(session), commands)
    return act


def _outcome(factory: sessionmaker[Session], number: int, *others: int) -> tuple[object, ...]:
    """What a use case leaves: the ticket's fields, its audit trail and the mail it queued (numbers made relative)."""
    ids = {number: "T", **{n: f"O{i}" for i, n in enumerate(others)}}
    with factory() as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        audit = [(e.action, ids.get(int(e.object_id or 0)), e.before, _relative(e.after, ids)) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.object_type == "ticket", AuditEntry.action != "ticket.open")
            .order_by(AuditEntry.id))]
        mail = sorted((r.purpose, r.rcpt) for r in session.scalars(select(Outbox)))
        return ticket.status, ticket.priority, ticket.merged_into_id is not None, audit, mail


def _relative(values: dict[str, Any] | None, ids: dict[int, str]) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: ids.get(v, v) if k in ("source", "target") else v for k, v in values.items()}


def _fresh(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        for table in (AuditEntry, Outbox):
            for row in session.scalars(select(table)):
                session.delete(row)


CASES: dict[str, list[Surface]] = {
    "resolve": [
        _console("/tickets/{number}/change", {"status": "resolved", "reason": "{arg}"}),
        _api("/api/tickets/{number}/status", {"status": "resolved", "reason": "{arg}"}),
        _email("#resolve"),
    ],
    "macro": [
        _console("/tickets/{number}/macro", {"macro": "{arg}"}),
        _api("/api/tickets/{number}/macro", {"name": "{arg}"}),
        _email("#macro {arg}"),
    ],
    "merge": [
        _console("/tickets/{number}/merge", {"into": "{arg}"}),
        _api("/api/tickets/{number}/merge", {"into": "{int}"}),
        _email("#merge {arg}"),
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_console_api_and_email_give_the_same_outcome(app: Flask, factory, settings: Settings, case: str) -> None:
    with transaction(factory) as session:
        admin = session.scalars(select(Contact).where(Contact.email == STAFF[Role.ADMIN])).one()
        macros.save(session, admin, "fixed", "Fixed, {{ requester_name }}.", status=TicketStatus.RESOLVED, priority="P3")
    outcomes = []
    for surface in CASES[case]:
        _fresh(factory)
        number = make_ticket(factory, "Printer jammed").number
        target = make_ticket(factory, "Printer jammed again").number
        arg = {"resolve": "", "macro": "fixed", "merge": str(target)}[case]
        surface(app, factory, settings, number, arg)
        outcomes.append(_outcome(factory, number, target))
    assert outcomes[0][3], "the use case did nothing"
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_a_new_impact_or_urgency_sets_the_priority_of_the_configured_matrix(factory, settings: Settings) -> None:
    """In core, not in the console's form: whichever surface changes impact or urgency gets the desk's matrix."""
    all_p5 = PriorityMatrix(rows=(("P5",) * 3,) * 3)
    desk = replace(settings, rulebook=replace(settings.rulebook, matrix=all_p5))
    number = make_ticket(factory, "Slow laptop", priority="P4").number
    with transaction(factory) as session:
        ticket = session.get(Ticket, number)
        assert ticket is not None
        changed = processes.staff_change(session, desk, ticket, _agent(session), {"impact": 1, "urgency": 1}, reason=None)
        assert changed["priority"] == "P5"  # not the ITIL P1
        chosen = processes.staff_change(session, desk, ticket, _agent(session), {"urgency": 2, "priority": "P2"},
                                        reason=None)
        assert chosen["priority"] == "P2"  # a priority chosen with them stands
