"""Request fulfilment by real mail: catalogue item and due date, approval by the approver's reply, each step told."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.core import fulfilment, users
from helpdesk.core.catalogue import catalogue_for
from helpdesk.core.models import Ticket
from tests.e2e.itil_desk import add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

ALICE = "alice@example.com"
AGENT = "agent@example.org"
APPROVER = "approver@example.org"


def test_software_request_is_approved_by_mail_and_fulfilled_step_by_step(
    dovecot: DovecotServer, smtp_sink: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    with desk(tmp_path, database_url, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent", APPROVER: "approver"})
        item = catalogue_for(d.app.settings).get("new-software")
        assert item is not None and item.approval

        d.deliver(mail(f"Alice Example <{ALICE}>", "Please install Visio", "I need Visio for the network diagrams."))
        [ticket] = d.tickets()
        assert (ticket["kind"], ticket["item"], ticket["status"]) == ("service_request", "new-software", "awaiting_approval")
        assert ticket["due_at"] - ticket["created_at"] == item.fulfilment  # scheduled from the catalogue item

        sent = d.send()
        told = to(sent, ALICE)
        assert any(m["Subject"].endswith(": awaiting approval") for m in told)
        [ask] = to(sent, APPROVER)
        assert ask["Subject"].startswith("Approval needed")
        assert "#approve" in text(ask)
        assert f"+{ticket['id']}-" in ask["Reply-To"]  # a reply token made for the approver

        # The approver answers from their mail client.
        d.deliver(mail(APPROVER, "", "#approve fine for the network team\n\nThanks, Ann", reply_to=ask))
        [ticket] = d.tickets()
        assert ticket["status"] == "in_progress"
        [approved] = d.audit("request.approve")
        assert (approved.actor, approved.object_id) == (APPROVER, ticket["id"])
        assert any("#approve" in n and "approved" in n for n in d.notes(ticket["id"]))

        sent = d.send()
        [progress] = to(sent, ALICE)
        assert progress["Subject"].endswith(": in progress")
        assert "Thanks, Ann" not in text(progress)  # the approver's mail stays internal
        assert not to(sent, APPROVER)

        # The agent works through the checklist; only a finished checklist fulfils the request.
        with d.session() as s:
            request = s.get(Ticket, ticket["id"])
            agent = users.find_user(s, AGENT)
            assert request is not None and agent is not None
            with pytest.raises(fulfilment.FulfilmentError, match="checklist not done"):
                fulfilment.advance(s, d.app.settings, request, fulfilment.Step.FULFILLED, actor=AGENT)
            for index in range(len(item.steps)):
                fulfilment.complete_step(s, request, index, agent)
            fulfilment.advance(s, d.app.settings, request, fulfilment.Step.FULFILLED, actor=AGENT)

        [ticket] = d.tickets()
        assert ticket["status"] == "resolved"
        [done] = to(d.send(), ALICE)
        assert done["Subject"].endswith(": fulfilled")
        assert all(f"[x] {step}" in text(done) for step in item.steps)
        assert len(d.audit("request.step")) == len(item.steps)


def test_service_request_rejected_by_mail_is_closed_and_the_user_told_why(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {APPROVER: "approver"})
        d.deliver(mail(ALICE, "New monitor", "My desk needs a second monitor, please."))
        [ticket] = d.tickets()
        assert (ticket["item"], ticket["status"]) == ("hardware", "awaiting_approval")
        [ask] = to(d.send(), APPROVER)

        d.deliver(mail(APPROVER, "", "#reject the budget for monitors is spent until January", reply_to=ask))
        [ticket] = d.tickets()
        assert ticket["status"] == "closed"
        [closed] = to(d.send(), ALICE)
        assert closed["Subject"].endswith(": closed")
        assert "budget for monitors is spent" in text(closed)
        [rejected] = d.audit("request.reject")
        assert rejected.actor == APPROVER and rejected.reason == "the budget for monitors is spent until January"
