"""Canned replies: sandboxed rendering over plain strings, the fields a macro sets, and ``#macro NAME`` by mail."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import select

from helpdesk.core import macros
from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Contact, Role, TicketStatus
from tests.core.desk import Desk, mail, make_desk

AGENT = "agent@example.org"
ADMIN = "admin@example.org"
ALICE = "alice@example.com"


@pytest.fixture
def desk(session_factory, tmp_path) -> Desk:
    desk = make_desk(session_factory, tmp_path)
    desk.add_user(AGENT)
    with transaction(desk.factory) as session:
        session.scalars(select(Contact).where(Contact.email == AGENT)).one().name = "Dana Agent"
    desk.add_user(ADMIN, Role.ADMIN)
    return desk


def _contact(session, email: str) -> Contact:  # type: ignore[no-untyped-def]
    return session.scalars(select(Contact).where(Contact.email == email)).one()


def _save(desk: Desk, name: str, body: str, **fields) -> None:  # type: ignore[no-untyped-def]
    with transaction(desk.factory) as session:
        macros.save(session, _contact(session, ADMIN), name, body, **fields)


def _notification(desk: Desk, number: int) -> EmailMessage:
    return [m for rcpt, m in desk.sent("agent notification") if rcpt == AGENT and m["X-Helpdesk-Ticket"] == str(number)][-1]


@pytest.mark.parametrize("body, why", [
    ("{{ ticket.requester.password_hash }}", "unknown placeholder ticket"),
    ("{{ requester_name.__class__.__mro__ }}", "cannot be rendered"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}", "may not use for"),
    ("{% include 'web/base.html' %}", "may not use include"),
    ("{{ requester_name", "does not parse"),
    ("  ", "needs some text"),
])
def test_a_macro_that_could_reach_past_its_strings_is_refused_when_saved(desk: Desk, body: str, why: str) -> None:
    with pytest.raises(macros.MacroError, match=why), transaction(desk.factory) as session:
        macros.save(session, _contact(session, ADMIN), "bad", body)
    with desk.factory() as session:
        assert macros.list_all(session) == []


def test_macro_by_mail_sends_the_rendered_reply_and_sets_its_fields(desk: Desk) -> None:
    _save(desk, "password-reset",
          "Hello {{ requester_name }},\n\nyour ticket {{ ticket_tag }} ({{ category }}): the password is reset.\n"
          "{% if agent_name %}{{ agent_name }}{% endif %}",
          status=TicketStatus.RESOLVED, priority="P3", category="accounts")
    number = desk.deliver(mail(f"Alice Example <{ALICE}>", "VPN drops every hour", "Since Monday.")).ticket_id
    note = _notification(desk, number)
    desk.deliver(mail(AGENT, f"Re: {note['Subject']}", "#macro Password-Reset", to=note["Reply-To"],
                      in_reply_to=note["Message-ID"]))
    detail = desk.ticket(number)
    assert (detail["status"], detail["priority"], detail["category"]) == ("resolved", "P3", "accounts")
    [(rcpt, reply)] = desk.sent("reply")
    body = reply.get_body(("plain",)).get_content()
    assert rcpt == ALICE
    # The category is the ticket's when the reply is written; the macro sets "accounts" after it.
    assert f"Hello Alice Example,\n\nyour ticket [#{number}] (" in body and "the password is reset." in body
    assert "Dana Agent" in body
    assert [rcpt for rcpt, _ in desk.sent("resolution")] == [ALICE]
    with desk.factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.macro")).all()
        assert entry.actor == AGENT and entry.after["macro"] == "password-reset"


def test_an_unknown_macro_or_a_refused_change_sends_nothing(desk: Desk) -> None:
    _save(desk, "done", "Done, {{ requester_name }}.", status=TicketStatus.CLOSED)
    number = desk.deliver(mail(ALICE, "Access to CRM", "Please grant me access to the CRM.")).ticket_id
    note = _notification(desk, number)
    desk.deliver(mail(AGENT, f"Re: {note['Subject']}", "#macro nosuch\n#macro done", to=note["Reply-To"],
                      in_reply_to=note["Message-ID"]))
    said = desk.ticket(number)["messages"][-1]["text"]
    assert "#macro nosuch: not applied, no macro named 'nosuch'" in said
    assert f"#macro done: not applied, #{number} is awaiting approval" in said
    assert desk.sent("reply") == [] and desk.ticket(number)["status"] == "awaiting_approval"
    # A service request is resolved when its checklist is done: a macro cannot skip that either.
    _save(desk, "solved", "Solved.", status=TicketStatus.RESOLVED)
    request = desk.deliver(mail(ALICE, "I forgot my password", "Locked out.")).ticket_id
    note = _notification(desk, request)
    desk.deliver(mail(AGENT, f"Re: {note['Subject']}", "#macro solved", to=note["Reply-To"],
                      in_reply_to=note["Message-ID"]))
    assert "#macro solved: not applied, checklist not done" in desk.ticket(request)["messages"][-1]["text"]
    assert desk.sent("reply") == []


def test_text_written_under_macro_goes_in_the_same_reply_before_the_canned_text(desk: Desk) -> None:
    _save(desk, "vpn-known", "The VPN outage {{ ticket_tag }} is known; we are on it.", priority="P2")
    number = desk.deliver(mail(ALICE, "VPN drops every hour", "Since Monday.")).ticket_id
    note = _notification(desk, number)
    desk.deliver(mail(AGENT, f"Re: {note['Subject']}", "#macro vpn-known\n\nHi Alice, thanks for the details.",
                      to=note["Reply-To"], in_reply_to=note["Message-ID"]))
    [(rcpt, reply)] = desk.sent("reply")
    body = reply.get_body(("plain",)).get_content()
    assert rcpt == ALICE
    assert body.index("thanks for the details.") < body.index(f"The VPN outage [#{number}] is known")
    assert desk.ticket(number)["priority"] == "P2"
    said = desk.ticket(number)["messages"][-1]["text"]
    assert "#macro vpn-known: reply sent" in said and "priority -> P2" in said


def test_a_macro_that_sets_a_status_still_keeps_the_agents_attachment_on_its_reply(desk: Desk) -> None:
    _save(desk, "solved", "Solved, {{ requester_name }}.", status=TicketStatus.RESOLVED)
    number = desk.deliver(mail(ALICE, "VPN drops every hour", "Since Monday.")).ticket_id
    note = _notification(desk, number)
    answer = EmailMessage()
    answer["From"], answer["To"], answer["Subject"] = AGENT, note["Reply-To"], f"Re: {note['Subject']}"
    answer["In-Reply-To"] = note["Message-ID"]
    answer.set_content("#macro solved\n\nThe new profile is attached.")
    answer.add_attachment(b"[vpn]\nserver=vpn2\n", maintype="text", subtype="plain", filename="vpn.conf")
    desk.deliver(answer.as_bytes())
    [(_, reply)] = desk.sent("reply")
    assert "The new profile is attached." in reply.get_body(("plain",)).get_content()
    assert [a.get_filename() for a in reply.iter_attachments()] == ["vpn.conf"]
    detail = desk.ticket(number)
    assert detail["status"] == "resolved"
    [stored] = [m for m in detail["messages"] if m["attachments"]]
    assert stored["direction"] == "out" and stored["authenticated"] is True
