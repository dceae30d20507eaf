"""Threading on a real database: what joins a ticket, what opens a new (linked) one, what is only recorded."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from helpdesk.core import conversation, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, InboundStatus, Message, Outbox, Role, Ticket, TicketStatus, utcnow
from tests.core.desk import Desk, make_desk, mail


@pytest.fixture
def desk(sqlite_session_factory, tmp_path) -> Desk:
    return make_desk(sqlite_session_factory, tmp_path)


def _ack(desk: Desk, number: int) -> EmailMessage:
    [ack] = [m for rcpt, m in desk.sent("acknowledgement") if m["X-Helpdesk-Ticket"] == str(number)]
    return ack


def _set_status(desk: Desk, number: int, status: TicketStatus, *, closed_days_ago: int = 0) -> None:
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, number)
        tickets.change(session, ticket, "agent@example.org", status=status)
        if closed_days_ago:
            ticket.closed_at = utcnow() - timedelta(days=closed_days_ago)


def test_reply_by_references_from_a_stranger_joins_and_makes_them_a_watcher(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    reply = desk.deliver(mail("bob@example.com", f"Re: {ack['Subject']}", "Same here.", in_reply_to=ack["Message-ID"]))
    assert reply.ticket_id == first.ticket_id and not reply.created
    assert desk.ticket(first.ticket_id)["watchers"] == ["bob@example.com"]


def test_subject_tag_from_a_stranger_opens_a_new_linked_ticket(desk: Desk) -> None:
    first = desk.deliver(mail())
    hijack = desk.deliver(mail("mallory@evil.example", f"Re: [#{first.ticket_id}] printer", "Add me"))
    assert hijack.created and hijack.ticket_id != first.ticket_id
    assert desk.ticket(hijack.ticket_id)["linked_ticket"] == first.ticket_id
    assert desk.ticket(first.ticket_id)["watchers"] == []
    assert len(desk.ticket(first.ticket_id)["messages"]) == 2  # the mail and its acknowledgement


def test_subject_tag_from_the_requester_appends(desk: Desk) -> None:
    first = desk.deliver(mail())
    again = desk.deliver(mail(subject=f"[#{first.ticket_id}] still broken", body="Still error 42."))
    assert again.ticket_id == first.ticket_id and not again.created


def test_an_approver_joins_by_subject_tag_only_a_ticket_they_take_part_in(desk: Desk) -> None:
    desk.add_user("sec@example.org", Role.APPROVER)
    desk.add_user("admin@example.org", Role.ADMIN)
    first = desk.deliver(mail())
    outsider = desk.deliver(mail("sec@example.org", f"Re: [#{first.ticket_id}] printer", "Let me see"))
    assert outsider.created and desk.ticket(outsider.ticket_id)["linked_ticket"] == first.ticket_id
    assert desk.ticket(first.ticket_id)["watchers"] == []
    watched = desk.deliver(mail(subject="VPN is down", body="No VPN since 9.", cc="sec@example.org"))
    again = desk.deliver(mail("sec@example.org", f"Re: [#{watched.ticket_id}] VPN is down", "Same here"))
    assert again.ticket_id == watched.ticket_id and not again.created
    admin = desk.deliver(mail("admin@example.org", f"Re: [#{first.ticket_id}] printer", "Looking at it."))
    assert admin.ticket_id == first.ticket_id and not admin.created


def test_someone_elses_reply_token_does_not_join_but_links(desk: Desk) -> None:
    first = desk.deliver(mail())
    token_address = _ack(desk, first.ticket_id)["Reply-To"]
    assert conversation.parse_reply_address(desk.settings, token_address)[0] == first.ticket_id
    stranger = desk.deliver(mail("carol@example.com", "printer", "Forwarded to me", to=token_address))
    assert stranger.created and desk.ticket(stranger.ticket_id)["linked_ticket"] == first.ticket_id
    owner = desk.deliver(mail(subject="one more thing", body="It also smells.", to=token_address))
    assert owner.ticket_id == first.ticket_id


def test_reply_to_a_resolved_ticket_reopens_it(desk: Desk) -> None:
    first = desk.deliver(mail())
    _set_status(desk, first.ticket_id, TicketStatus.RESOLVED)
    ack = _ack(desk, first.ticket_id)
    desk.deliver(mail(subject=f"Re: {ack['Subject']}", body="Broken again", in_reply_to=ack["Message-ID"]))
    assert desk.ticket(first.ticket_id)["status"] == "open"


def test_reply_to_a_closed_ticket_reopens_within_the_window_and_opens_a_linked_one_after(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    _set_status(desk, first.ticket_id, TicketStatus.CLOSED, closed_days_ago=2)
    soon = desk.deliver(mail(subject=f"Re: {ack['Subject']}", body="not fixed", in_reply_to=ack["Message-ID"]))
    assert soon.ticket_id == first.ticket_id
    assert desk.ticket(first.ticket_id)["status"] == "open"

    _set_status(desk, first.ticket_id, TicketStatus.CLOSED, closed_days_ago=30)
    late = desk.deliver(mail(subject=f"Re: {ack['Subject']}", body="again", in_reply_to=ack["Message-ID"]))
    assert late.created and desk.ticket(late.ticket_id)["linked_ticket"] == first.ticket_id
    assert desk.ticket(first.ticket_id)["status"] == "closed"


def test_forwarded_mail_starts_a_new_ticket(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    fwd = desk.deliver(mail(subject=f"Fwd: {ack['Subject']}", body="see below", in_reply_to=ack["Message-ID"]))
    assert fwd.created and desk.ticket(fwd.ticket_id)["linked_ticket"] == first.ticket_id

    attached = desk.deliver(_with_attached_mail("look at this"))
    assert attached.created and desk.ticket(attached.ticket_id)["linked_ticket"] is None


def _with_attached_mail(subject: str, in_reply_to: str | None = None) -> bytes:
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "alice@example.com", "help@example.org", subject
    outer["Message-ID"] = make_msgid(domain="client.example")
    if in_reply_to:
        outer["In-Reply-To"] = in_reply_to
    outer.set_content("This came in, is it phishing?")
    inner = EmailMessage()
    inner["From"], inner["Subject"] = "bank@phish.example", "Your account"
    inner.set_content("click here")
    outer.add_attachment(inner)
    return outer.as_bytes()


def test_finnish_vs_reply_to_our_mail_appends(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    reply = desk.deliver(mail(subject=f"VS: {ack['Subject']}", body="Kiitos, toimii.", in_reply_to=ack["Message-ID"]))
    assert reply.ticket_id == first.ticket_id and not reply.created


def test_vs_without_our_mail_or_with_an_attached_mail_stays_a_forward(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    # Only the subject tag: a Norwegian or Danish forward as far as we can tell.
    tagged = desk.deliver(mail(subject=f"VS: {ack['Subject']}", body="se nedenfor"))
    assert tagged.created and desk.ticket(tagged.ticket_id)["linked_ticket"] == first.ticket_id
    attached = desk.deliver(_with_attached_mail(f"VS: {ack['Subject']}", in_reply_to=ack["Message-ID"]))
    assert attached.created and desk.ticket(attached.ticket_id)["linked_ticket"] == first.ticket_id


def test_cc_addresses_become_watchers_and_get_public_replies(desk: Desk) -> None:
    first = desk.deliver(mail(cc="boss@example.com, help+comment@example.org"))
    assert desk.ticket(first.ticket_id)["watchers"] == ["boss@example.com"]
    desk.clear_outbox()
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, first.ticket_id)
        agent = tickets.contact_for(session, "agent@example.org")
        tickets.reply(session, desk.settings, ticket, agent, "Fixed it.")
    assert sorted(rcpt for rcpt, _ in desk.sent("reply")) == ["alice@example.com", "boss@example.com"]
    [record] = [m for m in desk.ticket(first.ticket_id)["messages"] if m["direction"] == "out" and m["text"] == "Fixed it."]
    assert record["message_id"]


def test_vacation_reply_is_recorded_without_reopening_or_answering(desk: Desk) -> None:
    first = desk.deliver(mail())
    _set_status(desk, first.ticket_id, TicketStatus.RESOLVED)
    ack = _ack(desk, first.ticket_id)
    desk.clear_outbox()
    auto = desk.deliver(mail(subject=f"Automatic reply: {ack['Subject']}", body="I am away.",
                             in_reply_to=ack["Message-ID"], headers={"Auto-Submitted": "auto-replied"}))
    assert auto.ticket_id == first.ticket_id
    detail = desk.ticket(first.ticket_id)
    assert detail["status"] == "resolved"
    assert detail["messages"][-1]["internal"] is True
    assert desk.outbox() == []


def test_vacation_reply_to_nothing_of_ours_is_only_recorded(desk: Desk) -> None:
    result = desk.deliver(mail(subject="Out of office", body="Back Monday", headers={"X-Autoreply": "yes"}))
    assert result.status is InboundStatus.IGNORED and result.ticket_id is None
    assert desk.tickets() == [] and desk.outbox() == []


def test_feedback_report_is_attached_without_reply(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    desk.clear_outbox()
    arf = EmailMessage()
    arf["From"], arf["To"], arf["Subject"] = "abuse@isp.example", "help@example.org", "Abuse report"
    arf["Message-ID"] = make_msgid(domain="isp.example")
    arf.set_content("This is an email abuse report.")
    arf.add_attachment("Feedback-Type: abuse\nUser-Agent: test/1.0\nVersion: 1\n", subtype="feedback-report")
    arf.add_attachment(f"Message-ID: {ack['Message-ID']}\nSubject: x\n", subtype="rfc822-headers")
    arf.replace_header("Content-Type", arf["Content-Type"].replace("multipart/mixed", "multipart/report")
                       + "; report-type=feedback-report")
    result = desk.deliver(arf.as_bytes())
    assert result.ticket_id == first.ticket_id and result.reason == "feedback report attached"
    assert desk.ticket(first.ticket_id)["messages"][-1]["internal"] is True
    assert desk.outbox() == []


def test_bounce_is_attached_and_recipient_flagged_undeliverable(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    dsn = (
        "From: MAILER-DAEMON@mx.example.com\r\nTo: help@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce1@mx.example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nMail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; alice@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {ack['Message-ID']}\r\nSubject: x\r\n--B--\r\n"
    ).encode()
    result = desk.deliver(dsn)
    assert result.ticket_id == first.ticket_id and result.reason == "bounce attached"
    with desk.factory() as session:
        alice = session.query(Contact).filter_by(email="alice@example.com").one()
        assert alice.undeliverable
    # Nothing more is queued for an address that bounces.
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, first.ticket_id)
        tickets.reply(session, desk.settings, ticket, tickets.contact_for(session, "agent@example.org"), "Hello?")
    assert desk.sent("reply") == []


def test_reply_to_a_bouncing_requester_after_our_last_mail_keeps_both_in_the_thread(desk: Desk) -> None:
    first = desk.deliver(mail())
    before = [m["text"] for m in desk.ticket(first.ticket_id)["messages"]]
    with transaction(desk.factory) as session:
        session.query(Contact).filter_by(email="alice@example.com").one().undeliverable = True
    with transaction(desk.factory) as session:
        ticket = session.get(Ticket, first.ticket_id)
        assert ticket.messages[-1].direction.value == "out"  # the acknowledgement is the newest message
        tickets.reply(session, desk.settings, ticket, tickets.contact_for(session, "agent@example.org"), "Hello?")
    # Nothing was mailed; the reply is a message of its own and the acknowledgement is left as it was.
    assert [m["text"] for m in desk.ticket(first.ticket_id)["messages"]] == [*before, "Hello?"]


def test_our_own_signed_mail_coming_back_is_ignored_but_a_forged_id_is_not_ours(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack = _ack(desk, first.ticket_id)
    echoed = desk.deliver(ack.as_bytes())
    assert echoed.status is InboundStatus.IGNORED and "own" in (echoed.reason or "")
    forged = f"hd.{first.ticket_id}.abcdef.000000000000@example.org"
    assert not conversation.is_our_message_id(desk.settings, forged)
    assert conversation.is_our_message_id(desk.settings, ack["Message-ID"].strip("<>"))


def test_automatic_mail_per_address_is_rate_limited(sqlite_session_factory, tmp_path) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path, auto_mail_per_hour=3, auto_mail_per_day=5)
    for n in range(5):
        assert desk.deliver(mail(subject=f"problem {n}", body=f"number {n}")).created
    assert len(desk.sent("acknowledgement")) == 3
    with desk.factory() as session:
        from helpdesk.core import ratelimit

        assert ratelimit.usage(session, "alice@example.com") == ratelimit.Usage(last_hour=3, last_day=3)
        assert ratelimit.usage(session, "alice@example.com", utcnow() + timedelta(hours=2)).last_hour == 0


@pytest.mark.parametrize("number", ["99999999999999999999", str(2**63), "3000000000", "9" * 5000],
                         ids=["20 digits", "2**63", "over 2**31", "5000 digits"])
def test_a_ticket_number_too_large_for_the_database_opens_a_new_ticket(session_factory, tmp_path, number: str) -> None:
    desk = make_desk(session_factory, tmp_path)
    first = desk.deliver(mail())
    tagged = desk.deliver(mail(subject=f"Re: [#{number}] help", body="tagged"))
    address = f"help+{number}-abcdef0123@example.org"
    token = desk.deliver(mail(subject="help", body="token", to=address, cc="boss@example.com"))
    for result in (tagged, token):
        assert result.status is InboundStatus.PROCESSED and result.created
        assert desk.ticket(result.ticket_id)["linked_ticket"] is None
    assert desk.tickets() == [first.ticket_id, tagged.ticket_id, token.ticket_id]
    # The address is still one of ours: never a watcher.
    assert desk.ticket(token.ticket_id)["watchers"] == ["boss@example.com"]


def _forget_stored(desk: Desk, message_id: str) -> None:
    """Remove every stored row that carries ``message_id``: only its signature can still thread a reply."""
    with transaction(desk.factory) as session:
        messages = session.scalars(select(Message).where(Message.message_id == message_id)).all()
        outbox = session.scalars(select(Outbox).where(Outbox.message_id == message_id)).all()
        assert messages or outbox
        for row in [*messages, *outbox]:
            session.delete(row)


def test_reply_to_our_signed_message_id_threads_without_any_stored_row(desk: Desk) -> None:
    first = desk.deliver(mail())
    ack_id = _ack(desk, first.ticket_id)["Message-ID"]
    _forget_stored(desk, ack_id.strip("<>"))
    reply = desk.deliver(mail("bob@example.com", "Re: printer", "Mine too.", in_reply_to=ack_id))
    assert reply.ticket_id == first.ticket_id and not reply.created
    assert desk.ticket(first.ticket_id)["watchers"] == ["bob@example.com"]


def test_reply_to_a_forged_signed_message_id_does_not_thread(desk: Desk) -> None:
    first = desk.deliver(mail())
    forged = f"<hd.{first.ticket_id}.abcdef.000000000000@example.org>"
    reply = desk.deliver(mail("bob@example.com", "Re: printer", "Let me in.", in_reply_to=forged))
    assert reply.created and desk.ticket(reply.ticket_id)["linked_ticket"] is None
    assert desk.ticket(first.ticket_id)["watchers"] == []


def test_reply_to_the_requesters_own_message_id_from_a_stranger_opens_a_linked_ticket(desk: Desk) -> None:
    # Everyone on Bcc or on a list the requester wrote to knows that Message-ID: it proves nothing.
    first = desk.deliver(mail(message_id="<printer-1@client.example>"))
    hijack = desk.deliver(mail("mallory@evil.example", "Re: Printer on floor 3 is jammed", "Add me",
                               in_reply_to="<printer-1@client.example>"))
    assert hijack.created and desk.ticket(hijack.ticket_id)["linked_ticket"] == first.ticket_id
    assert desk.ticket(first.ticket_id)["watchers"] == []
    # A participant answering the same mail still joins.
    desk.add_user("agent@example.org")
    again = desk.deliver(mail("agent@example.org", "Re: Printer on floor 3 is jammed", "On my way",
                              in_reply_to="<printer-1@client.example>"))
    assert again.ticket_id == first.ticket_id and not again.created


def test_list_mail_answering_a_mail_of_the_same_list_threads_without_making_its_sender_a_watcher(desk: Desk) -> None:
    first = desk.deliver(mail(message_id="<printer-2@client.example>", headers={"List-Id": "IT list <it.lists.example>"}))
    listed = desk.deliver(mail("bob@example.com", "Re: Printer on floor 3 is jammed", "Same on floor 4.",
                               in_reply_to="<printer-2@client.example>", headers={"List-Id": "<IT.lists.example>"}))
    assert listed.ticket_id == first.ticket_id and not listed.created
    assert desk.ticket(first.ticket_id)["watchers"] == []


def test_a_stranger_adding_a_list_id_to_answer_the_requesters_own_mail_gets_a_linked_ticket(desk: Desk) -> None:
    # The requester's mail came straight to us; a List-Id is only a header anyone can write.
    first = desk.deliver(mail(message_id="<printer-3@client.example>"))
    listed = desk.deliver(mail("mallory@example.net", "Re: Printer on floor 3 is jammed", "Text planted in the thread",
                               in_reply_to="<printer-3@client.example>", headers={"List-Id": "<it.lists.example>"}))
    assert listed.created and listed.ticket_id != first.ticket_id
    assert all("planted" not in m["text"] for m in desk.ticket(first.ticket_id)["messages"])
    # Nor a different list's id on a list thread.
    other = desk.deliver(mail(message_id="<printer-4@client.example>", headers={"List-Id": "<it.lists.example>"}))
    crossed = desk.deliver(mail("mallory@example.net", "Re: Printer on floor 3 is jammed", "From elsewhere",
                                in_reply_to="<printer-4@client.example>", headers={"List-Id": "<evil.example>"}))
    assert crossed.created and crossed.ticket_id != other.ticket_id