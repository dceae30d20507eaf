"""The requester portal end to end: mail in over IMAP, the link mailed through SMTP, Chromium signs in and works.

The four seed processes meet the portal: an incident (public thread, reply with a file, close), a service
request and an access request (their approvals as they stand), and an event (someone else's: never shown).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from helpdesk.core import fulfilment, tickets, users
from helpdesk.core.models import Ticket
from tests.e2e.itil_desk import Desk, add_users, desk, mail, text, to
from tests.e2e.test_itil_events import _nagios
from tests.servers import free_port
from tests.servers.imap import DovecotServer
from tests.servers.smtp import ReceivedMail, SmtpSink
import tests.web.conftest  # noqa: F401  (first: it and tests.web.browser import each other)
from tests.web.browser import LiveServer, browser, page, screenshot  # noqa: F401  (fixtures)
from helpdesk.web import create_app

ALICE = "alice@example.com"
BOB = "bob@example.com"
AGENT = "agent@example.org"
APPROVER = "approver@example.org"
SECURITY = "security@example.org"


def _send(d: Desk) -> list[ReceivedMail]:
    """Desk.send in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    out: list[list[ReceivedMail]] = []
    worker = threading.Thread(target=lambda: out.append(d.send()))
    worker.start()
    worker.join(30)
    assert out, "sending failed"
    return out[0]


def _ticket_id(d: Desk, subject: str) -> int:
    return next(t["id"] for t in d.tickets() if subject in t["subject"])


def _link_from_mail(d: Desk) -> str:
    [link_mail] = to(_send(d), ALICE)
    assert link_mail["Auto-Submitted"] == "auto-generated"
    found = re.search(r"(https?://\S+/portal/sign-in/\S+)", text(link_mail))
    assert found, text(link_mail)
    return found.group(1)


def test_a_requester_works_their_tickets_in_the_portal(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path, page  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    with desk(tmp_path, None, dovecot, smtp_sink, HELPDESK_WEB_URL=f"http://127.0.0.1:{port}") as d:
        add_users(d, {AGENT: "agent", APPROVER: "approver", SECURITY: "approver"})
        # Mail in: the four processes.
        d.deliver(
            mail(f"Alice Example <{ALICE}>", "VPN is down", "The VPN drops every five minutes since this morning."),
            mail(f"Alice Example <{ALICE}>", "Please install Visio", "I need Visio for the network diagrams."),
            mail(f"Alice Example <{ALICE}>", f"Access to the finance share for {BOB}", "Bob joined finance on Monday."),
            _nagios("PROBLEM", "CRITICAL", 1, "connect to port 80: Connection refused"),
        )
        incident, request = _ticket_id(d, "VPN is down"), _ticket_id(d, "Please install Visio")
        access, event = _ticket_id(d, "finance share"), _ticket_id(d, "web01")
        with d.session() as s:  # the agent's internal note, as the console or a comment mail adds it
            note_on = s.get(Ticket, incident)
            agent = users.find_user(s, AGENT)
            assert note_on is not None and agent is not None
            tickets.add_note(s, note_on, agent, "INTERNAL: Alice's laptop is on the old client")
        _send(d)  # acknowledgements, approval requests, agent notifications

        console = LiveServer(create_app(d.app.settings, d.app.factory), port)
        console.start()
        try:
            # Alice asks for a link; it comes by mail through the SMTP server.
            page.goto(f"{console.url}/portal/")
            page.fill("input[name=email]", ALICE)
            page.click("button[type=submit]")
            page.wait_for_selector("section.link-sent")
            link = _link_from_mail(d)
            assert link.startswith(console.url)

            page.goto(link)
            page.click("button[type=submit]")
            page.wait_for_selector("table.portal-tickets")
            listing = page.inner_text("main")
            assert all(s in listing for s in ("VPN is down", "Please install Visio", "finance share"))
            assert "web01" not in listing  # the monitoring tool's incident is not hers
            assert page.goto(f"{console.url}/portal/tickets/{event}").status == 404  # type: ignore[union-attr]

            # The incident: the public thread, never the internal note; a reply with a file; the agent told.
            page.goto(f"{console.url}/portal/tickets/{incident}")
            thread = page.inner_text("section.thread")
            assert "The VPN drops every five minutes" in thread and "INTERNAL" not in thread
            page.fill("textarea[name=text]", "Here is the client log from this morning.")
            page.set_input_files("input[name=files]", files=[
                {"name": "vpn-client.log", "mimeType": "text/plain", "buffer": b"09:01 tunnel down\n09:06 tunnel down\n"}])
            page.click("form.reply button[type=submit]")
            page.wait_for_selector("p.flash.info")
            assert page.is_visible("a[download]:has-text('vpn-client.log')")
            screenshot(page, "portal-ticket")
            [told] = to(_send(d), AGENT)
            assert f"[#{incident}]" in told["Subject"] and "Here is the client log" in text(told)

            # The service request waits for its approver; the access request too. Then the approver decides.
            page.goto(f"{console.url}/portal/tickets/{request}")
            assert page.inner_text("#step") == "awaiting approval"
            assert page.inner_text(".approval-status") == "pending"
            page.goto(f"{console.url}/portal/tickets/{access}")
            assert page.inner_text(".approval-status") == "pending"
            with d.session() as s:
                ticket = s.get(Ticket, request)
                approver = users.find_user(s, APPROVER)
                assert ticket is not None and approver is not None
                fulfilment.decide(s, d.app.settings, ticket, approver, approve=True, reason="fine")
            page.goto(f"{console.url}/portal/tickets/{request}")
            assert page.inner_text("#step") == "in progress" and page.inner_text(".approval-status") == "approved"

            # Alice closes the incident; the link she used cannot sign anyone in again.
            page.goto(f"{console.url}/portal/tickets/{incident}")
            page.click("form.close button[type=submit]")
            page.wait_for_selector("p.flash.info")
            assert page.inner_text("#status") == "closed"
            page.click("header button:has-text('Sign out')")
            page.goto(link)
            page.click("button[type=submit]")
            assert "it was used already" in page.inner_text("main")
        finally:
            console.stop()
        assert [t["status"] for t in d.tickets() if t["id"] == incident] == ["closed"]
        assert [a.actor for a in d.audit("portal.reply")] == [ALICE]
        assert d.cli_json("ticket", str(incident), "--json")["status"] == "closed"  # the CLI reads the same


def test_the_sign_in_link_mail_goes_out_through_the_outbox(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    """No browser: the API asks for the link, the mail arrives, the API signs in with it and replies."""
    with desk(tmp_path, None, dovecot, smtp_sink, HELPDESK_WEB_URL="https://desk.example.org") as d:
        add_users(d, {AGENT: "agent"})
        d.deliver(mail(f"Alice Example <{ALICE}>", "Printer jammed", "Floor 3 printer is jammed."))
        number = d.tickets()[0]["id"]
        _send(d)
        api = create_app(d.app.settings, d.app.factory).test_client()
        assert api.post("/api/portal/link", json={"email": "Alice@Example.com"}).status_code == 202
        link = _link_from_mail(d)
        assert link.startswith("https://desk.example.org/portal/sign-in/")
        opened = api.post("/api/portal/session", json={"token": link})
        auth = {"Authorization": f"Bearer {opened.json['token']}"}
        assert api.post(f"/api/portal/tickets/{number}/reply", json={"text": "Still jammed."}, headers=auth).status_code == 201
        [told] = to(_send(d), AGENT)
        assert "Still jammed." in text(told)
