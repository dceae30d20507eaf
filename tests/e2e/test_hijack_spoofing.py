"""Hostile mail over real IMAP and SMTP: no joining a ticket on a Message-ID anyone on Bcc knows."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from sqlalchemy import select

from helpdesk.core import conversation
from helpdesk.core.models import AccessRequest, AccessStatus, Ticket
from tests.e2e.itil_desk import add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

AGENT = "agent@example.org"
ALICE = "alice@example.com"
MALLORY = "mallory@evil.example"


def test_a_stranger_answering_the_requesters_own_mail_gets_a_linked_ticket_and_none_of_its_replies(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent"})
        original = mail(ALICE, "Payroll export fails", "The export stops at 40%.", headers={"Bcc": MALLORY})
        d.deliver(original)
        [ticket] = d.tickets()
        [notification] = to(d.send(), AGENT)

        # Mallory was on Bcc: she answers Alice's own mail, as her client does on "Reply all".
        alice_mail = email.message_from_bytes(original, policy=email.policy.default)
        d.deliver(mail(MALLORY, "Re: Payroll export fails", "Please send the export to me as well.",
                       headers={"In-Reply-To": str(alice_mail["Message-ID"]),
                                "References": str(alice_mail["Message-ID"])}))
        first, second = d.tickets()
        assert second["requester"] == MALLORY
        with d.session() as s:
            original_ticket = s.get(Ticket, ticket["id"])
            assert original_ticket is not None
            assert [w.contact.email for w in original_ticket.watchers] == []
            linked = s.get(Ticket, second["id"])
            assert linked is not None and linked.linked_ticket_id == ticket["id"]
        d.send()

        # The agent answers the original ticket: the answer goes to Alice, not to Mallory.
        d.deliver(mail(AGENT, "", "Hello Alice, the export job was restarted.", reply_to=notification))
        arrived = d.send()
        [reply] = to(arrived, ALICE)
        assert "export job was restarted" in text(reply)
        assert to(arrived, MALLORY) == []


APPROVER = "sec@example.org"
DKIM_PASS = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.org"}


def test_an_approver_cannot_approve_access_for_a_plus_address_of_their_own_by_mail(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink, HELPDESK_TRUSTED_DOMAINS="example.org") as d:
        add_users(d, {APPROVER: "approver", "ivy@example.org": "approver"})
        d.deliver(mail(ALICE, "Access to the payroll share for Sec+Audit@example.org", "For the yearly audit."))
        [ticket] = d.tickets()
        sent = d.send()
        assert to(sent, APPROVER) == []  # not even asked
        assert to(sent, "ivy@example.org")
        # Sec answers with a token of his own for the ticket (as from any mail he got about it), authenticated.
        token_address = conversation.reply_address(d.app.settings, ticket["id"], APPROVER)
        d.deliver(mail(APPROVER, f"Re: [#{ticket['id']}] access", "#approve", to=token_address, headers=DKIM_PASS))
        with d.session() as s:
            [request] = s.scalars(select(AccessRequest)).all()
            assert request.status is AccessStatus.PENDING and request.ticket_id == ticket["id"]
        [refused] = d.audit("access.refused")
        assert refused.actor == APPROVER and "would give sec@example.org access" in (refused.reason or "")


def test_a_note_from_an_agents_address_without_proof_is_flagged_in_ticket_json(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent"})
        d.deliver(mail(ALICE, "Refund for order 1234", "The order arrived broken."))
        [ticket] = d.tickets()
        [notification] = to(d.send(), AGENT)
        # Anyone can put the agent's address in From and write to the comment address.
        d.deliver(mail(AGENT, f"[#{ticket['id']}] refund", "Approved: refund in full.", to="help+comment@example.org"),
                  mail(AGENT, "", "#note\nThe courier confirmed the damage.", reply_to=notification))
        notes = {m["text"]: m["authenticated"] for m in d.cli_json("ticket", str(ticket["id"]), "--json")["messages"]
                 if m["internal"] and m["from"] == AGENT}
        assert notes == {"Approved: refund in full.": False, "The courier confirmed the damage.": True}
