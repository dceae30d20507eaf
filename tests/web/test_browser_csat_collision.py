"""Satisfaction and agent collision in a real browser: mail in through intake, the console, mail out to SMTP."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import AuditEntry, Rating, Role, Satisfaction
from helpdesk.core.settings import Settings, SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import Desk, mail
from tests.web.browser import LiveServer, log_in, screenshot

ALERTS = Path(__file__).resolve().parents[1] / "core" / "alerts"
LINK = re.compile(r"https?://[^/\s]+(/satisfaction/\S+/(?:good|bad))")


def _send(factory: sessionmaker[Session], sink) -> None:  # type: ignore[no-untyped-def]
    """Drain the outbox to the SMTP sink (in a thread: Playwright's loop owns this one)."""
    worker = threading.Thread(target=send_once, args=(factory, SmtpSettings(host=sink.host, port=sink.port)))
    worker.start()
    worker.join(30)


def _mails_to(sink, address: str, subject_part: str) -> list:  # type: ignore[no-untyped-def]
    return [m.message for m in sink.messages if address in m.rcpt_tos and subject_part in m.message["Subject"]]


def _resolve_in_console(page, live: LiveServer, number: int) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live.url}/tickets/{number}")
    page.select_option("form.change select[name=status]", "resolved")
    page.select_option("form.change select[name=assignee]", "agent@example.org")
    page.click("form.change button.primary")
    page.wait_for_selector("text=Changed:")


def test_requester_rates_with_one_click_from_the_resolution_mail_and_the_report_shows_it(
    page, browser, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink
) -> None:
    desk = Desk(factory, settings)
    number = desk.deliver(mail("Alice Example <alice@example.com>", "Printer jammed", "Paper stuck.",
                               cc="bob@example.com")).ticket_id
    alert = desk.deliver((ALERTS / "icinga2_service_warning.eml").read_bytes()).ticket_id
    listed = desk.deliver(mail("announce@lists.example.com", "Printers replaced", "FYI",
                               headers={"List-Id": "<it.lists.example.com>"})).ticket_id
    assert None not in (number, alert, listed)
    log_in(page, live, Role.AGENT)
    for ticket in (number, alert, listed):
        assert ticket is not None
        _resolve_in_console(page, live, ticket)
    _send(factory, smtp_sink)
    smtp_sink.wait_for(1)

    [resolved] = _mails_to(smtp_sink, "alice@example.com", f"[#{number}] Resolved")
    text = resolved.get_body(("plain",)).get_content()
    html = resolved.get_body(("html",)).get_content()
    good, bad = (LINK.search(part).group(1) for part in text.split("Bad:"))
    assert good.endswith("/good") and bad.endswith("/bad") and good in html and bad in html
    assert all("/satisfaction/" not in m.as_string() for m in _mails_to(smtp_sink, "bob@example.com", "Resolved"))
    for sent in smtp_sink.messages:  # the alert's monitor and the list were told nothing with links
        assert "/satisfaction/" not in sent.message.as_string() or sent.rcpt_tos == ["alice@example.com"]

    # The requester, not signed in anywhere, clicks "Bad", then thinks better of it and clicks "Good".
    requester = browser.new_context().new_page()
    requester.goto(live.url + bad)
    assert "bad" in requester.inner_text("section.csat")
    requester.goto(live.url + good)
    assert "good" in requester.inner_text("b.rating")
    requester.fill("textarea[name=comment]", "Fixed within the hour, thanks.")
    requester.click("text=Send comment")
    requester.wait_for_selector("text=Your comment is saved.")
    screenshot(requester, "csat-thanks")
    forged = good.replace("/good", "").rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/good"
    response = requester.goto(live.url + forged)
    assert response is not None and response.status == 404
    assert "not valid" in requester.inner_text("main")
    requester.context.close()

    with factory() as session:
        row = session.get(Satisfaction, number)
        assert row is not None and row.rating is Rating.GOOD and row.comment == "Fixed within the hour, thanks."
        answers = [e.after for e in session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.satisfaction"))]
        assert [a["rating"] for a in answers] == ["bad", "good", "good"]

    page.click("header.top nav a:text-is('Reports')")
    card = page.locator("section.satisfaction")
    assert card.locator("svg.chart").count() == 1
    row_text = card.locator("tbody tr").first.inner_text()
    assert "agent@example.org" in row_text and "\t1\t0\t100" in row_text
    screenshot(page, "reports-satisfaction")


def test_two_agents_see_each_other_and_a_stale_reply_asks_first(
    browser, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink
) -> None:
    desk = Desk(factory, settings)
    number = desk.deliver(mail("alice@example.com", "VPN is down", "No VPN since 9:00.")).ticket_id
    agent = browser.new_context().new_page()
    admin = browser.new_context().new_page()
    for page, role in ((agent, Role.AGENT), (admin, Role.ADMIN)):
        page.set_default_timeout(15_000)
        log_in(page, live, role)
        page.goto(f"{live.url}/tickets/{number}")
    agent.wait_for_selector("#presence:has-text('admin@example.org (viewing)')")
    admin.wait_for_selector("#presence:has-text('agent@example.org (viewing)')")

    agent.fill("textarea[aria-label='reply text']", "Please restart the VPN client.")
    admin.wait_for_selector("#presence:has-text('agent@example.org (typing)')")
    screenshot(admin, "presence-typing")

    admin.fill("textarea[aria-label='reply text']", "We are restarting the VPN gateway now.")
    admin.click("text=Send reply")
    admin.wait_for_selector("text=Reply sent.")

    agent.click("text=Send reply")  # written before the admin's reply appeared
    agent.wait_for_selector("text=Someone wrote since you opened this ticket")
    assert "restarting the VPN gateway" in agent.inner_text("section.confirm-reply")
    assert agent.input_value("textarea[aria-label='reply text']") == "Please restart the VPN client."
    screenshot(agent, "reply-confirm")
    agent.click("text=Send anyway")
    agent.wait_for_selector("text=Reply sent.")

    _send(factory, smtp_sink)
    smtp_sink.wait_for(1)
    bodies = [m.get_body(("plain",)).get_content() for m in _mails_to(smtp_sink, "alice@example.com", f"[#{number}]")]
    assert any("restarting the VPN gateway" in b for b in bodies)
    assert any("restart the VPN client" in b for b in bodies)
    agent.context.close()
    admin.context.close()
