"""Agents work a service request's checklist by email: ``#done N`` per step, then ``#fulfilled``."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from helpdesk.core.mailcommands import Verb, split_commands
from tests.core.desk import Desk, make_desk, mail

AGENT = "agent@example.org"
USER = "alice@example.com"


@pytest.fixture
def desk(sqlite_session_factory, tmp_path) -> Desk:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.add_user(AGENT)
    return desk


def _answer(desk: Desk, number: int, body: str) -> bytes:
    note: EmailMessage = [m for rcpt, m in desk.sent("agent notification")
                          if rcpt == AGENT and m["X-Helpdesk-Ticket"] == str(number)][-1]
    return mail(AGENT, f"Re: {note['Subject']}", body, to=note["Reply-To"], in_reply_to=note["Message-ID"])


def _notes(desk: Desk, number: int) -> list[str]:
    return [m["text"] for m in desk.ticket(number)["messages"] if m["internal"]]


def test_done_and_fulfilled_are_read_as_commands() -> None:
    text = split_commands("#done 2\n#DONE: 3\n#fulfilled\nThanks")
    assert [(c.verb, c.argument) for c in text.commands] == [(Verb.DONE, "2"), (Verb.DONE, "3"), (Verb.FULFILLED, "")]
    assert text.body == "Thanks"


def test_agent_ticks_off_steps_and_fulfils_the_request_by_email(desk: Desk) -> None:
    number = desk.deliver(mail(USER, "Password reset please", "I forgot my password.")).ticket_id
    assert number is not None
    assert desk.ticket(number)["status"] == "in_progress"  # the catalogue item needs no approval
    told_before = len(desk.sent("request_fulfilled"))

    desk.deliver(_answer(desk, number, "#done 1\n#done 1\n#done 7\n#fulfilled\n"))
    [log] = _notes(desk, number)
    assert "#done 1: step 1 (Verify the caller's identity) done, 2 left" in log
    assert "#done 1: not applied, step 1 is already done (by agent@example.org)" in log
    assert "#done 7: not applied" in log and "no checklist step 7" in log
    assert "#fulfilled: not applied, checklist not done" in log
    assert desk.ticket(number)["status"] == "in_progress" and len(desk.sent("request_fulfilled")) == told_before

    desk.deliver(_answer(desk, number, "#done 2\n#done 3\n#fulfilled\n\nAll set, you can log in now."))
    assert desk.ticket(number)["status"] == "resolved"
    assert "#fulfilled: request fulfilled, the requester is told" in _notes(desk, number)[-1]
    [(rcpt, told)] = desk.sent("request_fulfilled")
    body = told.get_body(("plain",)).get_content()
    assert rcpt == USER and "is now: fulfilled" in body and "[x] Tell the user how to log in" in body
    assert "#done" not in body
    assert [r for r, _ in desk.sent("reply")] == [USER]  # the text below the commands still goes out


def test_fulfilled_on_an_incident_is_refused(desk: Desk) -> None:
    number = desk.deliver(mail(USER, "Printer on floor 3 is jammed")).ticket_id
    assert number is not None
    desk.deliver(_answer(desk, number, "#done 1\n#fulfilled"))
    [log] = _notes(desk, number)
    assert f"#done 1: not applied, request #{number} has no checklist step 1" in log
    assert f"#fulfilled: not applied, #{number} is not a service request with a checklist" in log
    assert desk.ticket(number)["status"] == "new"


def test_resolve_by_email_cannot_skip_the_checklist(desk: Desk) -> None:
    number = desk.deliver(mail(USER, "Password reset please", "I forgot my password.")).ticket_id
    assert number is not None
    desk.deliver(_answer(desk, number, "#resolve\n"))
    assert "#resolve: not applied, checklist not done" in _notes(desk, number)[-1]
    assert desk.ticket(number)["status"] == "in_progress"
