"""Satisfaction across the four processes by real mail (Dovecot in, SMTP out) and the console.

Incident resolved by an agent's #resolve, request fulfilled, access request approved by the
approver's reply: each requester's mail asks how we did and one click answers. An alert
incident resolved in the console mails its monitor no links.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpdesk.core import fulfilment, users
from helpdesk.core.catalogue import catalogue_for
from helpdesk.core.csat import results
from helpdesk.core.models import Role, Ticket
from tests.e2e.itil_desk import add_users, desk, mail, text, to
from tests.e2e.test_itil_events import NAGIOS, _nagios
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink
from tests.web.conftest import csrf_token
from helpdesk.web import create_app

AGENT = "agent@example.org"
APPROVER = "approver@example.org"
PASSWORD = "correct horse battery"
LINK = re.compile(r"https?://[^/\s]+(/satisfaction/\S+/(?:good|bad))")


def _links(message) -> list[str]:  # type: ignore[no-untyped-def]
    return LINK.findall(text(message))


def test_the_four_processes_ask_requesters_how_we_did_and_never_a_monitor(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {APPROVER: "approver"})
        with d.session() as s:
            users.create_user(s, AGENT, Role.AGENT, PASSWORD)
        console = create_app(d.app.settings, d.app.factory, testing=True).test_client()

        # Incident: the agent resolves it by replying to the notification.
        d.deliver(mail("alice@example.com", "Printer on floor 3 is jammed", "Error 42 again."))
        [note] = to(d.send(), AGENT)
        d.deliver(mail(AGENT, "", "#resolve\n\nCleared the paper path.", reply_to=note))
        [resolved] = [m for m in to(d.send(), "alice@example.com") if "Resolved" in m["Subject"]]

        # Request fulfilment: a password reset, its checklist done.
        d.deliver(mail("carol@example.com", "Password reset please", "I forgot my password."))
        d.send()
        with d.session() as s:
            [request] = [s.get(Ticket, t["id"]) for t in d.tickets() if t["requester"] == "carol@example.com"]
            assert request is not None and request.catalogue_item is not None
            agent = users.find_user(s, AGENT)
            assert agent is not None
            for index in range(len(catalogue_for(d.app.settings).get(request.catalogue_item).steps)):  # type: ignore[union-attr]
                fulfilment.complete_step(s, request, index, agent)
            fulfilment.advance(s, d.app.settings, request, fulfilment.Step.FULFILLED, actor=AGENT)
        [fulfilled] = [m for m in to(d.send(), "carol@example.com") if m["Subject"].endswith(": fulfilled")]

        # Access: the approver approves by reply.
        d.deliver(mail("dave@example.com", "Access to the finance share for dave@example.com", "New in finance."))
        [ask] = to(d.send(), APPROVER)
        d.deliver(mail(APPROVER, "", "#approve welcome", reply_to=ask))
        [decided] = [m for m in to(d.send(), "dave@example.com") if "approved" in m["Subject"]]

        # Event: an alert opens an incident; an agent resolves it in the console.
        d.deliver(_nagios("PROBLEM", "CRITICAL", 1, "connect to port 80: Connection refused"))
        [alert] = [t for t in d.tickets() if t["requester"] == NAGIOS]
        token = csrf_token(console)
        console.post("/login", data={"email": AGENT, "password": PASSWORD, "csrf_token": token})
        changed = console.post(f"/tickets/{alert['id']}/change",
                               data={"status": "resolved", "assignee": AGENT, "csrf_token": csrf_token(console, f"/tickets/{alert['id']}")})
        assert changed.status_code == 302
        assert [t["status"] for t in d.tickets() if t["id"] == alert["id"]] == ["resolved"]
        [told_monitor] = to(d.send(), NAGIOS)  # the resolution mail goes out, without links
        assert "Resolved" in told_monitor["Subject"] and not _links(told_monitor)

        # Each requester answers with one click, no login.
        answers = {"good": 0, "bad": 0}
        for message, choice in ((resolved, "good"), (fulfilled, "good"), (decided, "bad")):
            [link] = [link for link in _links(message) if link.endswith(choice)]
            page = create_app(d.app.settings, d.app.factory).test_client().get(link)
            assert page.status_code == 200 and "Thank you" in page.get_data(as_text=True)
            answers[choice] += 1
        with d.session() as s:
            figures = results(s)
        assert sum(r.good for r in figures) == answers["good"] and sum(r.bad for r in figures) == answers["bad"]
        assert len(d.audit("ticket.satisfaction")) == 3
