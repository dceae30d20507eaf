"""Command lines at the top of a reply are one block, whatever their mix; none of them ever reaches the user."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest

from helpdesk.core.mailcommands import Verb, split_commands
from helpdesk.core.models import Role
from tests.core.desk import Desk, mail, make_desk

AGENT = "agent@example.org"
APPROVER = "sec@example.org"
ALICE = "alice@example.com"
OUTSIDER = "mallory@example.net"
COMMAND_LINE = re.compile(rb"^#\w", re.MULTILINE)


@pytest.fixture
def desk(sqlite_session_factory, tmp_path) -> Desk:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.add_user(AGENT)
    desk.add_user(APPROVER, Role.APPROVER)
    return desk


def _sent_to(desk: Desk, purpose: str, rcpt: str, number: int) -> EmailMessage:
    found = [m for r, m in desk.sent(purpose) if r == rcpt and m["X-Helpdesk-Ticket"] == str(number)]
    return found[-1]


def _answer(ours: EmailMessage, body: str, *, sender: str) -> bytes:
    return mail(sender, f"Re: {ours['Subject']}", body, to=ours["Reply-To"], in_reply_to=ours["Message-ID"])


def _notes(desk: Desk, number: int, *, priority: str) -> list[str]:
    """The ticket's internal notes, once its priority is as expected."""
    detail = desk.ticket(number)
    assert detail["priority"] == priority
    return [m["text"] for m in detail["messages"] if m["internal"]]


def _no_command_line_reaches(desk: Desk, rcpt: str) -> None:
    rows = [row for row in desk.outbox() if row.recipients == [rcpt]]
    assert rows
    for row in rows:
        assert COMMAND_LINE.search(row.raw.replace(b"\r\n", b"\n")) is None, row.raw.decode(errors="replace")


def test_split_commands_reads_every_kind_of_command_line_as_one_block() -> None:
    text = split_commands("#priority P1\n#approve looks fine\n#done 2\n#fulfilled\n#reject no\n\nThanks,\n#resolve")
    assert [c.verb for c in text.commands] == [Verb.PRIORITY, Verb.APPROVE, Verb.DONE, Verb.FULFILLED, Verb.REJECT]
    assert [c.verb for c in text.ticket_commands] == [Verb.PRIORITY, Verb.DONE, Verb.FULFILLED]
    assert text.approval is not None and text.approval.approve and text.approval.reason == "looks fine"
    assert text.body == "Thanks,\n#resolve" and text.has_commands
    assert split_commands("#reject not now\n#note\nwhy").approval.approve is False  # type: ignore[union-attr]
    assert not split_commands("Hello\n#approve").has_commands


def test_approve_after_a_ticket_command_is_applied_by_its_own_rule_not_mailed(desk: Desk) -> None:
    first = desk.deliver(mail(ALICE, "Access to the finance share for bob@example.com", "Bob joined finance."))
    number = first.ticket_id
    assert desk.ticket(number)["kind"] == "access_request"
    note = _sent_to(desk, "agent notification", AGENT, number)
    # The agent puts #approve second: the policy refuses it (no approver), the priority applies.
    desk.deliver(_answer(note, "#priority P1\n#approve\n\nAll fine from my side.", sender=AGENT))
    notes = _notes(desk, number, priority="P1")
    assert any("#approve from agent@example.org" in n and "only approvers decide" in n for n in notes)
    assert any("priority -> P1" in n for n in notes)
    assert desk.sent("reply") == []  # an approval mail stays internal, text and all

    # The approver writes a ticket command first: the approval counts, the command (not an agent's) does not.
    ask = _sent_to(desk, "approval_request", APPROVER, number)
    desk.deliver(_answer(ask, "#priority P2\n#approve he needs it\nregards", sender=APPROVER))
    notes = _notes(desk, number, priority="P1")
    assert any("#approve he needs it from sec@example.org" in n and ": approved" in n for n in notes)
    assert any("ignored: only agents may use them" in n and "#priority P2" in n for n in notes)
    assert [r for r, _ in desk.sent("access_decision")] == [ALICE, "bob@example.com"]
    _no_command_line_reaches(desk, ALICE)
    _no_command_line_reaches(desk, "bob@example.com")


def test_agent_reply_with_mixed_commands_reaches_the_user_without_any_of_them(desk: Desk) -> None:
    first = desk.deliver(mail())
    note = _sent_to(desk, "agent notification", AGENT, first.ticket_id)
    desk.deliver(_answer(note, "#note\n", sender=AGENT))  # a lone #note: nothing to say, nothing sent
    desk.deliver(_answer(note, "#priority P2\n#done 1\n#category printing\n\nTray 2 is open now.", sender=AGENT))
    detail = desk.ticket(first.ticket_id)
    assert (detail["priority"], detail["category"]) == ("P2", "printing")
    [(rcpt, reply)] = desk.sent("reply")
    assert rcpt == ALICE and reply.get_body(("plain",)).get_content().startswith("Tray 2 is open now.")
    assert any("#done 1: not applied" in m["text"] for m in detail["messages"] if m["internal"])
    _no_command_line_reaches(desk, ALICE)


@pytest.mark.parametrize("body", ["#approve", "#priority P1\nplease hurry", "#reject\n#close"])
def test_a_non_participants_command_mail_makes_no_watcher_and_reaches_nobody(desk: Desk, body: str) -> None:
    first = desk.deliver(mail())
    number = first.ticket_id
    note = _sent_to(desk, "agent notification", AGENT, number)
    desk.clear_outbox()
    # Someone got hold of the agent's notification (its Message-ID threads) and answers it with commands.
    result = desk.deliver(mail(OUTSIDER, f"Re: {note['Subject']}", body, cc="eve@example.net",
                               in_reply_to=note["Message-ID"]))
    assert result.ticket_id == number
    detail = desk.ticket(number)
    assert detail["watchers"] == [] and (detail["status"], detail["priority"]) == ("new", "P4")
    assert all(m["internal"] for m in detail["messages"] if m["from"] == OUTSIDER)
    assert any(OUTSIDER in m["text"] and "ignored" in m["text"] for m in detail["messages"] if m["internal"])
    assert desk.outbox() == []
    # The agent's next reply goes to the requester alone.
    desk.deliver(_answer(note, "We are on it.", sender=AGENT))
    assert [r for r, _ in desk.sent("reply")] == [ALICE]


def test_a_non_participants_plain_reply_still_joins_visibly(desk: Desk) -> None:
    first = desk.deliver(mail())
    note = _sent_to(desk, "agent notification", AGENT, first.ticket_id)
    desk.deliver(mail(OUTSIDER, f"Re: {note['Subject']}", "Same here on floor 4.", in_reply_to=note["Message-ID"]))
    assert desk.ticket(first.ticket_id)["watchers"] == [OUTSIDER]
