"""Merge and canned replies by mail over real IMAP and SMTP: #merge N, later mail to the duplicate, #macro NAME."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from helpdesk.core import macros
from helpdesk.core.models import Contact, TicketStatus
from tests.e2e.itil_desk import add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

AGENT, ADMIN = "agent@example.org", "admin@example.org"
ALICE, BOB = "alice@example.com", "bob@example.com"


def test_merge_by_mail_then_a_canned_reply_reaches_both_requesters(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent", ADMIN: "admin"})
        with d.session() as s:
            macros.save(s, s.scalars(select(Contact).where(Contact.email == ADMIN)).one(), "vpn-known",
                        "Hello {{ requester_name }},\nthe VPN outage {{ ticket_tag }} is known; we are on it.",
                        status=TicketStatus.IN_PROGRESS)
        d.deliver(mail(ALICE, "VPN is down", "No VPN since 9:00."))
        d.deliver(mail(BOB, "VPN down for me too", "Cannot connect."))
        first, dup = (t["id"] for t in d.tickets())
        arrived = d.send()
        [bob_ack] = to(arrived, BOB)
        [note] = [m for m in to(arrived, AGENT) if m["X-Helpdesk-Ticket"] == str(dup)]

        d.deliver(mail(AGENT, "", f"#merge {first}", reply_to=note))
        [told] = to(d.send(), BOB)
        assert f"[#{first}]" in told["Subject"] and f"[#{dup}]" in text(told)
        assert [t["status"] for t in d.tickets()] == ["new", "closed"]

        d.deliver(mail(BOB, "", "Still down at 11:00.", reply_to=bob_ack))
        [update] = [m for m in to(d.send(), AGENT) if m["X-Helpdesk-Ticket"] == str(first)]
        assert "Still down at 11:00." in text(update)

        d.deliver(mail(AGENT, "", "#macro vpn-known", reply_to=update))
        arrived = d.send()
        for person in (ALICE, BOB):
            [reply] = [m for m in to(arrived, person) if "is known" in text(m)]
            assert f"[#{first}]" in reply["Subject"] and "{{" not in text(reply)
            assert f"the VPN outage [#{first}] is known; we are on it." in text(reply)
        assert "Hello alice@example.com," in text([m for m in to(arrived, ALICE) if "is known" in text(m)][0])
        assert d.tickets()[0]["status"] == "in_progress"
        assert [e.actor for e in d.audit("ticket.macro")] == [AGENT]
        assert [e.object_id for e in d.audit("ticket.merge")] == [dup]
