"""The console in a real browser: each role logs in, the queue filters, agents work a ticket,
approvers decide, admins requeue; mail that the console sends reaches the SMTP server."""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import access
from helpdesk.core.db import transaction
from helpdesk.core.models import (
    AccessStatus,
    AuditEntry,
    Direction,
    Inbound,
    InboundStatus,
    Message,
    RawMail,
    Role,
    Ticket,
    TicketKind,
)
from helpdesk.core.settings import Settings, SmtpSettings
from helpdesk.core.classify import load_rules
from helpdesk.core.intake import Intake, process_pending
from helpdesk.mailgateway.parse import parse_message
from helpdesk.mailgateway.smtp import send_once
from tests.web.browser import LiveServer, log_in, screenshot
from tests.web.conftest import make_ticket

def deliver(factory: sessionmaker[Session], sink) -> None:  # type: ignore[no-untyped-def]
    """Drain the outbox to the SMTP sink (in a thread: Playwright's loop owns this one)."""
    worker = threading.Thread(target=send_once, args=(factory, SmtpSettings(host=sink.host, port=sink.port)))
    worker.start()
    worker.join(30)


NAV = {
    Role.ADMIN: {"Queue", "Grants", "Events", "Reports", "Quarantine", "Outbox", "Users", "Macros", "Fields", "Groups",
                 "Mailboxes", "Webhooks"},
    Role.AGENT: {"Queue", "Events", "Reports"},
    Role.APPROVER: {"Queue", "Approvals", "Grants", "Reports"},
}


def test_each_role_logs_in_and_sees_only_its_pages(page, live: LiveServer, sample_tickets, role: Role) -> None:
    log_in(page, live, role)
    assert page.url.endswith("/tickets")
    links = set(page.locator("header.top nav a").all_inner_texts())
    assert links == NAV[role]
    # An approver sees only what they are asked to decide: none of these incidents and requests.
    assert page.locator("table.queue tbody tr").count() == (0 if role is Role.APPROVER else 3)
    screenshot(page, f"queue-{role.value}")
    for link in links:
        page.click(f"header.top nav a:text-is('{link}')")
        assert page.locator("h1").count() == 1
        screenshot(page, f"{role.value}-{link.lower()}")
    page.click("text=Log out")
    page.wait_for_selector("form input[name=password]")


def test_agent_filters_the_queue_searches_and_opens_a_ticket(page, live: LiveServer, sample_tickets) -> None:
    log_in(page, live, Role.AGENT)
    with page.expect_navigation():
        page.select_option("select[name=priority]", "P1")  # applies at once (console.js)
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 1 and "VPN is down" in rows.inner_text()
    page.goto(f"{live.url}/tickets")
    page.fill("input[name=q]", "printer")
    page.press("input[name=q]", "Enter")
    assert page.locator("table.queue tbody tr").count() == 1
    page.click("text=Printer jammed on floor 3")
    page.wait_for_selector("h1.ticket-title")
    assert "The printer makes noises" in page.inner_text("section.thread")
    assert "test-rule" in page.inner_text("section.why")
    screenshot(page, "ticket")


def test_agent_reply_reaches_the_user_threaded_and_a_priority_change_is_audited(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink
) -> None:
    made = make_ticket(factory, "Laptop will not boot", "It beeps three times")
    log_in(page, live, Role.AGENT)
    page.goto(f"{live.url}/tickets/{made.number}")
    page.fill("textarea[name=text] >> nth=0", "Please hold the power button for 30 seconds.")
    page.click("text=Send reply")
    page.wait_for_selector("text=Reply sent.")
    page.select_option("form.change select[name=priority]", "P2")
    page.fill("form.change input[name=reason]", "VIP user")
    page.click("form.change button[type=submit]")
    page.wait_for_selector("text=Changed: priority")
    assert "P4 → P2" in page.inner_text("section.audit") and "VIP user" in page.inner_text("section.audit")
    screenshot(page, "ticket-after-reply")

    with factory() as session:
        change = session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.change")).all()[-1]
        assert change.actor == "agent@example.org" and change.after == {"priority": "P2"}
    deliver(factory, smtp_sink)
    received = [m for m in smtp_sink.wait_for(1) if "user@example.com" in m.rcpt_tos]
    mail = received[-1].message
    assert f"[#{made.number}]" in mail["Subject"]
    assert "30 seconds" in mail.get_body(("plain",)).get_content()
    assert made.header_id in mail["In-Reply-To"] + " " + mail["References"]


def test_approver_approves_an_access_request_and_the_requester_is_told(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink
) -> None:
    made = make_ticket(factory, "Access to the finance share", "Please give me access to the finance share",
                       kind=TicketKind.ACCESS_REQUEST, requester="carol@example.com")
    with transaction(factory) as session:
        request_id = access.open_request(session, settings, made.number, resource="finance share").id
    log_in(page, live, Role.APPROVER)
    page.goto(f"{live.url}/approvals")
    row = page.locator("tr", has_text="finance share")
    row.locator("input[name=reason]").fill("needed for the audit")
    screenshot(page, "approvals")
    row.locator("button[value=approve]").click()
    page.wait_for_selector("text=approved")
    with factory() as session:
        request = session.get(access.AccessRequest, request_id)
        assert request is not None and request.status is AccessStatus.APPROVED
        assert request.decided_by is not None and request.decided_by.email == "approver@example.org"
    page.goto(f"{live.url}/approvals/grants")
    assert "carol@example.com" in page.inner_text("table")
    screenshot(page, "grants")
    deliver(factory, smtp_sink)
    told = [m for m in smtp_sink.wait_for(1) if "carol@example.com" in m.rcpt_tos]
    assert told and f"[#{made.number}]" in told[-1].message["Subject"]


def test_admin_requeues_a_quarantined_mail_and_it_becomes_a_ticket(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings
) -> None:
    raw = b"From: a@example.com\r\nTo: help@example.org\r\nSubject: broken\r\nMessage-ID: <q1@example.com>\r\n\r\nbody\r\n"
    digest = hashlib.sha256(raw).hexdigest()
    with transaction(factory) as session:
        session.add(RawMail(sha256=digest, size=len(raw), data=raw))
        inbound = Inbound(source="ingest", sha256=digest, message_id="<q1@example.com>",
                          status=InboundStatus.QUARANTINED, reason="parser crashed: test")
        session.add(inbound)
        session.flush()
        inbound_id = inbound.id
    log_in(page, live, Role.ADMIN)
    page.goto(f"{live.url}/admin/quarantine")
    assert "parser crashed: test" in page.inner_text("table")
    page.click(f"a:text-is('{inbound_id}')")
    assert "q1@example.com" in page.inner_text("dl.headers")
    screenshot(page, "quarantined")
    page.click("button:text-is('Requeue')")
    page.wait_for_selector("text=requeued")
    with factory() as session:
        row = session.get(Inbound, inbound_id)
        assert row is not None and row.status is InboundStatus.NEW and row.reason is None
    # the poller's next round processes it like any new mail
    intake = Intake(settings, load_rules(None), parse_message)
    process_pending(factory, intake)
    page.goto(f"{live.url}/tickets?q=broken")
    assert page.locator("table.queue tbody tr").count() == 1
    with factory() as session:
        assert session.get(Inbound, inbound_id).status is InboundStatus.PROCESSED  # type: ignore[union-attr]



def test_a_note_from_an_agents_address_that_proved_nothing_is_marked_unverified(
    page, live: LiveServer, factory: sessionmaker[Session]
) -> None:
    made = make_ticket(factory, "Refund request", "Please refund order 1234")
    with transaction(factory) as session:
        ticket = session.get(Ticket, made.number)
        for text, proven in (("Refund approved in full.", False), ("Vendor called back.", True)):
            ticket.messages.append(Message(direction=Direction.IN, internal=True, from_address="agent@example.org",
                                           subject="note", text=text, authenticated=proven))
    log_in(page, live, Role.AGENT)
    page.goto(f"{live.url}/tickets/{made.number}")
    forged = page.locator("article.message", has_text="Refund approved in full.")
    assert forged.locator(".badge.unverified").inner_text() == "unverified sender"
    assert forged.locator(".badge.unverified").is_visible()
    assert page.locator("article.message", has_text="Vendor called back.").locator(".badge.unverified").count() == 0
    assert page.locator("article.message", has_text="Please refund order").locator(".badge.unverified").count() == 0
    screenshot(page, "ticket-unverified-note")
