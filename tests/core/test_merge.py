"""Merge and split by mail: a duplicate goes into another ticket, later mail follows it, undo puts it back."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.core import backup, merge
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Event, Message, Ticket, TicketMerge
from tests.core.desk import Desk, mail, make_desk

AGENT = "agent@example.org"
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
ALERTS = Path(__file__).parent / "alerts"


@pytest.fixture
def desk(session_factory, tmp_path) -> Desk:
    desk = make_desk(session_factory, tmp_path)
    desk.add_user(AGENT)
    return desk


def _latest(desk: Desk, purpose: str, number: int, to: str) -> EmailMessage:
    return [m for rcpt, m in desk.sent(purpose) if rcpt == to and m["X-Helpdesk-Ticket"] == str(number)][-1]


def _answer(ours: EmailMessage, body: str, *, sender: str) -> bytes:
    return mail(sender, f"Re: {ours['Subject']}", body, to=ours["Reply-To"], in_reply_to=ours["Message-ID"])


def _agent(desk: Desk, session) -> Contact:  # type: ignore[no-untyped-def]
    return session.scalars(select(Contact).where(Contact.email == AGENT)).one()


def test_merge_by_mail_moves_the_thread_and_later_mail_to_the_duplicate_lands_in_the_target(desk: Desk) -> None:
    first = desk.deliver(mail(ALICE, "VPN is down", "No VPN since 9:00.")).ticket_id
    dup = desk.deliver(mail(BOB, "VPN down for me too", "Cannot connect.", cc=CAROL)).ticket_id
    bob_ack = _latest(desk, "acknowledgement", dup, BOB)
    note = _latest(desk, "agent notification", dup, AGENT)

    result = desk.deliver(_answer(note, f"#merge {first}", sender=AGENT))
    assert result.ticket_id == dup
    source, target = desk.ticket(dup), desk.ticket(first)
    assert source["status"] == "closed"
    assert any(m["text"].startswith(f"Merged into #{first}") for m in source["messages"] if m["internal"])
    assert "Cannot connect." in [m["text"] for m in target["messages"]]
    assert sorted(target["watchers"]) == [BOB, CAROL]
    told = {rcpt: m for rcpt, m in desk.sent("merged")}
    assert sorted(told) == [BOB, CAROL] and f"[#{first}]" in told[BOB]["Subject"]
    assert f"[#{dup}]" in told[BOB].get_body(("plain",)).get_content()

    # Bob answers his old acknowledgement (its Message-ID, [#dup] in the subject): it lands in the target.
    late = desk.deliver(_answer(bob_ack, "Still down at 11:00.", sender=BOB))
    assert late.ticket_id == first and desk.ticket(dup)["messages"] == source["messages"]
    # The agent's old notification of the duplicate still carries a valid token: commands act on the target.
    desk.deliver(_answer(note, "#priority P2", sender=AGENT))
    assert desk.ticket(first)["priority"] == "P2"
    tagged = desk.deliver(mail(CAROL, f"[#{dup}] any news?", "Me neither."))
    assert tagged.ticket_id == first

    with transaction(desk.factory) as session:
        merge.undo(session, desk.settings, session.get(Ticket, dup), _agent(desk, session))
    back, target = desk.ticket(dup), desk.ticket(first)
    assert back["status"] == "new" and back["watchers"] == [CAROL]
    assert "Cannot connect." in [m["text"] for m in back["messages"]]
    assert "Cannot connect." not in [m["text"] for m in target["messages"]]
    assert target["watchers"] == []
    # What arrived after the merge was answered on the target, and stays there (the notes say so).
    assert "Still down at 11:00." in [m["reply_text"] or m["text"] for m in target["messages"]]
    assert "2 mails that arrived after the merge stay" in back["messages"][-1]["text"]
    with desk.factory() as session:
        [record] = session.scalars(select(TicketMerge)).all()
        assert record.undone_by == AGENT
    # After the undo, the duplicate's marks find the duplicate again.
    assert desk.deliver(mail(BOB, f"Re: [#{dup}] VPN", "Works now.")).ticket_id == dup


def test_merges_that_are_refused_say_why_and_change_nothing(desk: Desk) -> None:
    first = desk.deliver(mail(ALICE, "VPN is down", "No VPN.")).ticket_id
    access = desk.deliver(mail(BOB, "Access to CRM", "Please grant me access to the CRM.")).ticket_id
    assert desk.ticket(access)["status"] == "awaiting_approval"
    note = _latest(desk, "agent notification", access, AGENT)
    desk.deliver(_answer(note, f"#merge {first}", sender=AGENT))
    said = desk.ticket(access)["messages"][-1]["text"]
    assert f"#merge {first}: not applied, #{access} is awaiting approval" in said
    note = _latest(desk, "agent notification", first, AGENT)
    desk.deliver(_answer(note, f"#merge {first}\n#merge 99999\n#merge {access}", sender=AGENT))
    said = desk.ticket(first)["messages"][-1]["text"]
    assert "cannot be merged into itself" in said
    assert "#merge 99999: not applied, #merge needs the number of a ticket" in said
    assert f"#{access} is awaiting approval" in said
    assert desk.ticket(first)["status"] != "closed" and desk.ticket(access)["status"] == "awaiting_approval"
    with desk.factory() as session:
        assert session.scalars(select(TicketMerge)).all() == []


def test_merging_an_event_incident_sends_repeats_and_the_recovery_to_the_target(desk: Desk) -> None:
    outage = desk.deliver(mail(ALICE, "Website is down", "www shows 502.")).ticket_id
    alert = desk.deliver((ALERTS / "nagios_service_problem.eml").read_bytes()).ticket_id
    assert alert is not None and alert != outage
    with transaction(desk.factory) as session:
        merge.merge(session, desk.settings, session.get(Ticket, alert), session.get(Ticket, outage),
                    _agent(desk, session))
    again = desk.deliver((ALERTS / "nagios_service_problem.eml").read_bytes().replace(b"Message-ID: <", b"Message-ID: <x"))
    assert again.ticket_id == outage
    desk.deliver((ALERTS / "nagios_service_recovery.eml").read_bytes())
    assert desk.ticket(outage)["status"] == "resolved"
    with desk.factory() as session:
        assert set(session.scalars(select(Event.ticket_id))) == {outage}


def test_split_one_mail_off_into_a_linked_ticket_and_tell_its_sender(desk: Desk) -> None:
    number = desk.deliver(mail(ALICE, "Printer jammed", "Floor 3 printer.")).ticket_id
    desk.deliver(mail(ALICE, f"Re: [#{number}] Printer jammed", "Also: my laptop battery is swelling!"))
    with transaction(desk.factory) as session:
        message = session.scalars(select(Message).where(Message.text.like("%battery%"))).one()
        new = merge.split(session, desk.settings, message, _agent(desk, session)).id
        first = session.scalars(select(Message).where(Message.ticket_id == number).order_by(Message.id)).first()
        with pytest.raises(merge.MergeError, match="opened"):
            merge.split(session, desk.settings, first, _agent(desk, session))
    detail = desk.ticket(new)
    assert detail["linked_ticket"] == number and detail["subject"] == "Re: Printer jammed"
    assert [m["text"] for m in detail["messages"] if m["direction"] == "in"] == ["Also: my laptop battery is swelling!"]
    assert "battery" not in str(desk.ticket(number)["messages"][:2])
    [(rcpt, told)] = desk.sent("split")
    assert rcpt == ALICE and f"[#{new}]" in told["Subject"]
    assert desk.deliver(_answer(told, "It is getting hot.", sender=ALICE)).ticket_id == new


def test_a_backup_with_an_older_ticket_merged_into_a_newer_one_restores(desk: Desk, tmp_path: Path) -> None:
    old = desk.deliver(mail(ALICE, "VPN is down", "No VPN.")).ticket_id
    new = desk.deliver(mail(BOB, "VPN outage", "Everyone is down.")).ticket_id
    with transaction(desk.factory) as session:
        merge.merge(session, desk.settings, session.get(Ticket, old), session.get(Ticket, new), _agent(desk, session))
    engine = desk.factory.kw["bind"]
    backup.backup(engine, desk.settings, tmp_path / "desk.zip")
    # Rows go back in id order: #old names #new before #new is there.
    backup.restore(engine, desk.settings, tmp_path / "desk.zip", force=True)
    assert desk.ticket(old)["merged_into"] == new
    assert desk.deliver(mail(BOB, f"Re: [#{old}] VPN", "Back now?")).ticket_id == new


def test_two_agents_merging_two_tickets_into_each_other_at_once_make_no_cycle(desk: Desk) -> None:
    a = desk.deliver(mail(ALICE, "VPN is down", "No VPN.")).ticket_id
    b = desk.deliver(mail(BOB, "VPN outage", "Everyone is down.")).ticket_id
    with desk.factory() as first, desk.factory() as second:
        # Both agents have the tickets in front of them; the first merge commits while the second is open.
        pair = [(s.get(Ticket, a), s.get(Ticket, b), _agent(desk, s)) for s in (first, second)]
        merge.merge(first, desk.settings, pair[0][0], pair[0][1], pair[0][2])
        first.commit()
        with pytest.raises(merge.MergeError, match=f"#{a} was merged into #{b}"):
            merge.merge(second, desk.settings, pair[1][1], pair[1][0], pair[1][2])
        second.rollback()
    assert (desk.ticket(a)["merged_into"], desk.ticket(b)["merged_into"]) == (b, None)
