"""Agents by email: notifications, replies, notes and commands, and when commands are refused."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from helpdesk.core.mailcommands import Verb, split_commands
from helpdesk.core.models import Role
from tests.core.desk import Desk, make_desk, mail

AGENT = "agent@example.org"


@pytest.fixture
def desk(sqlite_session_factory, tmp_path) -> Desk:
    desk = make_desk(sqlite_session_factory, tmp_path)
    desk.add_user(AGENT)
    desk.add_user("second@example.org")
    return desk


def _notification(desk: Desk, number: int, to: str = AGENT) -> EmailMessage:
    found = [m for rcpt, m in desk.sent("agent notification") if rcpt == to and m["X-Helpdesk-Ticket"] == str(number)]
    return found[-1]


def _answer(note: EmailMessage, body: str, *, sender: str = AGENT, to: str | None = None, **headers: str) -> bytes:
    return mail(sender, f"Re: {note['Subject']}", body, to=to or note["Reply-To"], in_reply_to=note["Message-ID"],
                headers=headers)


def test_split_commands_reads_only_the_top_lines() -> None:
    text = split_commands("#priority p2\n\n#assign me\nHello,\n#resolve is not a command here\n")
    assert [(c.verb, c.argument) for c in text.commands] == [(Verb.PRIORITY, "p2"), (Verb.ASSIGN, "me")]
    assert text.body == "Hello,\n#resolve is not a command here" and not text.note
    note = split_commands("#note the disk was replaced\nmore")
    assert note.note and note.body == "the disk was replaced\nmore" and note.commands == []
    assert split_commands("#resolve").body == ""


def test_new_ticket_notifies_every_agent_with_their_own_reply_token(desk: Desk) -> None:
    first = desk.deliver(mail())
    sent = desk.sent("agent notification")
    assert sorted(rcpt for rcpt, _ in sent) == [AGENT, "second@example.org"]
    for rcpt, note in sent:
        assert note["Auto-Submitted"] == "auto-generated"
        assert note["X-Auto-Response-Suppress"] == "All"
        assert f"[#{first.ticket_id}]" in note["Subject"]
        assert note["Reply-To"] != sent[0][1]["Reply-To"] or rcpt == sent[0][0]
        assert note.get_body(("html",)) is not None
        assert "error 42" in note.get_body(("plain",)).get_content()
    # The notification is not part of the requester's thread.
    assert [m["direction"] for m in desk.ticket(first.ticket_id)["messages"]] == ["in", "out"]


def test_agent_reply_with_commands_goes_to_requester_and_watchers_without_the_commands(desk: Desk) -> None:
    first = desk.deliver(mail(cc="boss@example.com"))
    user_mid = desk.ticket(first.ticket_id)["messages"][0]["message_id"]
    desk.clear_outbox()
    note = _notification(desk, first.ticket_id) if desk.sent("agent notification") else None
    assert note is None  # cleared; take a fresh one from a user update
    desk.deliver(mail(subject=f"[#{first.ticket_id}] more", body="It is the tray."))
    note = _notification(desk, first.ticket_id)
    result = desk.deliver(_answer(note, "#priority P2\n#assign second@example.org\n#category printing\n"
                                        "#kind request\n\nPlease open tray 2.\n\n> quoted old text"))
    assert result.ticket_id == first.ticket_id
    replies = desk.sent("reply")
    assert sorted(rcpt for rcpt, _ in replies) == ["alice@example.com", "boss@example.com"]
    for _, reply in replies:
        body = reply.get_body(("plain",)).get_content()
        assert "Please open tray 2." in body and "#priority" not in body and "#assign" not in body
        assert reply["Auto-Submitted"] == "no"
        assert user_mid in reply["References"]  # threads in the user's mail client
    detail = desk.ticket(first.ticket_id)
    assert (detail["priority"], detail["assignee"], detail["category"], detail["kind"]) == (
        "P2", "second@example.org", "printing", "service_request")
    [log] = [m for m in detail["messages"] if m["internal"]]
    assert "priority -> P2" in log["text"] and "reply token" in log["text"]
    assert any(m["direction"] == "out" and m["text"] == "Please open tray 2." for m in detail["messages"])


def test_resolve_by_email_sends_the_resolution_notice(desk: Desk) -> None:
    first = desk.deliver(mail())
    note = _notification(desk, first.ticket_id)
    desk.deliver(_answer(note, "#resolve\nThe jam is cleared."))
    assert desk.ticket(first.ticket_id)["status"] == "resolved"
    purposes = [row.purpose for row in desk.outbox() if row.recipients == ["alice@example.com"]]
    assert purposes[-2:] == ["reply", "resolution"]
    [(_, notice)] = desk.sent("resolution")
    assert notice["Auto-Submitted"] == "auto-generated" and notice.get_body(("html",)) is not None


def test_commands_without_a_valid_token_are_ignored_and_the_reply_is_withheld(desk: Desk) -> None:
    first = desk.deliver(mail())
    desk.clear_outbox()
    desk.deliver(mail(AGENT, f"Re: [#{first.ticket_id}] printer", "#close\nDone, closing."))
    detail = desk.ticket(first.ticket_id)
    assert detail["status"] == "new"
    assert desk.sent("reply") == [] and desk.sent("status change") == []
    notes = [m["text"] for m in detail["messages"] if m["internal"]]
    assert any("ignored: no reply token" in n for n in notes)
    assert any("not sent to the requester" in n for n in notes)


def test_someone_elses_token_does_not_authenticate_an_agent(desk: Desk) -> None:
    first = desk.deliver(mail())
    others = _notification(desk, first.ticket_id, to="second@example.org")
    desk.deliver(_answer(others, "#priority P1\nurgent"))
    assert desk.ticket(first.ticket_id)["priority"] != "P1"


@pytest.fixture
def trusted(sqlite_session_factory, tmp_path) -> Desk:
    """A desk whose own domain is trusted: its mail also needs a DKIM or SPF pass from our receiving server."""
    desk = make_desk(sqlite_session_factory, tmp_path, trusted_domains=("example.org",), authserv_id="mx.example.org")
    desk.add_user(AGENT)
    return desk


def test_trusted_domain_needs_dkim_or_spf_pass(trusted: Desk) -> None:
    desk = trusted
    first = desk.deliver(mail())
    note = _notification(desk, first.ticket_id)
    forged = {"Authentication-Results": "mx.evil.example; dkim=pass header.d=example.org"}
    desk.deliver(_answer(note, "#priority P1", **forged))
    assert desk.ticket(first.ticket_id)["priority"] != "P1"
    failed = {"Authentication-Results": "mx.example.org; dkim=fail header.d=example.org; spf=softfail"}
    desk.deliver(_answer(note, "#priority P1", **failed))
    assert desk.ticket(first.ticket_id)["priority"] != "P1"
    assert "no DKIM or SPF pass" in desk.ticket(first.ticket_id)["messages"][-1]["text"]
    passed = {"Authentication-Results": "mx.example.org; dkim=pass (good) header.d=example.org; spf=none"}
    desk.deliver(_answer(note, "#priority P1", **passed))
    assert desk.ticket(first.ticket_id)["priority"] == "P1"


def test_note_and_comment_address_stay_internal(desk: Desk) -> None:
    first = desk.deliver(mail())
    note = _notification(desk, first.ticket_id)
    desk.clear_outbox()
    desk.deliver(_answer(note, "#note\nCalled the vendor, part ordered."))
    desk.deliver(mail(AGENT, f"[#{first.ticket_id}] vendor", "Part arrives Friday.", to="help+comment@example.org"))
    detail = desk.ticket(first.ticket_id)
    internal = [m["text"] for m in detail["messages"] if m["internal"]]
    assert internal == ["Called the vendor, part ordered.", "Part arrives Friday."]
    assert [row.purpose for row in desk.outbox()] == []
    assert "help+comment@example.org" not in detail["watchers"]


def test_bad_command_is_reported_not_applied(desk: Desk) -> None:
    first = desk.deliver(mail())
    note = _notification(desk, first.ticket_id)
    desk.deliver(_answer(note, "#priority P9\n#assign alice@example.com"))
    detail = desk.ticket(first.ticket_id)
    log = detail["messages"][-1]["text"]
    assert "P1..P5" in log and "is not an agent" in log
    assert detail["assignee"] is None


def test_assigned_ticket_notifies_only_the_assignee(desk: Desk) -> None:
    first = desk.deliver(mail())
    note = _notification(desk, first.ticket_id)
    desk.deliver(_answer(note, "#assign me"))
    desk.clear_outbox()
    desk.deliver(mail(subject=f"[#{first.ticket_id}] update", body="now it beeps"))
    assert [rcpt for rcpt, _ in desk.sent("agent notification")] == [AGENT]


def test_agent_who_is_the_requester_writes_as_a_user(desk: Desk) -> None:
    first = desk.deliver(mail(AGENT, "My laptop is slow", "since the update"))
    desk.deliver(mail(AGENT, f"[#{first.ticket_id}] laptop", "#resolve\nstill slow"))
    detail = desk.ticket(first.ticket_id)
    assert detail["status"] == "new" and detail["messages"][-1]["text"].startswith("#resolve")


def test_staff_are_exempt_from_the_rate_limit(sqlite_session_factory, tmp_path) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path, auto_mail_per_hour=2)
    desk.add_user(AGENT, Role.AGENT)
    for n in range(4):
        desk.deliver(mail(f"user{n}@example.com", f"problem {n}", "x"))
    assert len([r for r, _ in desk.sent("agent notification") if r == AGENT]) == 4


def test_a_note_without_the_agents_token_is_kept_flagged_unauthenticated(trusted: Desk) -> None:
    desk = trusted
    first = desk.deliver(mail())
    notification = _notification(desk, first.ticket_id)
    dkim = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.org"}
    desk.deliver(_answer(notification, "#note\nCalled the vendor, part ordered.", **dkim))  # token and DKIM
    desk.deliver(mail(AGENT, f"[#{first.ticket_id}] vendor", "Part arrives Friday.", to="help+comment@example.org",
                      headers=dkim))  # no token can be on the comment address: DKIM for our domain vouches
    desk.deliver(mail(AGENT, f"[#{first.ticket_id}] vendor", "Refund the customer in full.",
                      to="help+comment@example.org"))  # anyone can write this
    desk.deliver(_answer(notification, "#note\nAnd close the account.", sender=f"Agent <{AGENT}>"))  # token, no DKIM
    notes = {m["text"]: m["authenticated"] for m in desk.ticket(first.ticket_id)["messages"]
             if m["internal"] and m["from"] == AGENT}
    assert notes == {"Called the vendor, part ordered.": True, "Part arrives Friday.": True,
                     "Refund the customer in full.": False, "And close the account.": False}
    # A user's mail claims to be nobody in particular.
    assert desk.ticket(first.ticket_id)["messages"][0]["authenticated"] is None
