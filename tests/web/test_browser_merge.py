"""Merge, undo, split and canned replies in a real browser: mail in through intake, the console, mail out to SMTP."""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import AuditEntry, Message, Role
from helpdesk.core.settings import Settings, SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import Desk, mail
from tests.web.browser import LiveServer, log_in, screenshot


def _send(factory: sessionmaker[Session], sink) -> None:  # type: ignore[no-untyped-def]
    """Drain the outbox to the SMTP sink (in a thread: Playwright's loop owns this one)."""
    worker = threading.Thread(target=send_once, args=(factory, SmtpSettings(host=sink.host, port=sink.port)))
    worker.start()
    worker.join(30)


def _to(sink, address: str, subject_part: str):  # type: ignore[no-untyped-def]
    found = [m.message for m in sink.wait_for(1) if address in m.rcpt_tos and subject_part in m.message["Subject"]]
    assert found, f"no mail to {address} about {subject_part}"
    return found[-1]


def test_agent_merges_in_the_queue_undoes_it_and_splits_a_mail_off(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink
) -> None:
    desk = Desk(factory, settings)
    first = desk.deliver(mail("alice@example.com", "VPN is down", "No VPN since 9:00.")).ticket_id
    dup = desk.deliver(mail("bob@example.com", "VPN down for me too", "Cannot connect.", cc="carol@example.com")).ticket_id
    log_in(page, live, Role.AGENT)
    page.check(f"input[name=ticket][value='{first}']")
    page.check(f"input[name=ticket][value='{dup}']")
    screenshot(page, "queue-merge-selected")
    page.click("text=Merge selected")  # into the oldest chosen, when no number is given
    page.wait_for_selector(f"text=Merged #{dup} into #{first}.")
    assert page.url.endswith(f"/tickets/{first}")
    assert "Cannot connect." in page.inner_text("section.thread")
    assert "ticket.merged_in" in page.inner_text("section.audit")

    _send(factory, smtp_sink)
    told = _to(smtp_sink, "bob@example.com", f"[#{first}]")
    assert f"[#{dup}]" in told.get_body(("plain",)).get_content()
    # Bob answers that mail with the old tag in mind: it lands in the target.
    assert desk.deliver(mail("bob@example.com", f"Re: [#{dup}] VPN", "Still down.")).ticket_id == first

    page.goto(f"{live.url}/tickets/{dup}")
    assert f"Merged into #{first}" in page.inner_text("#merged")
    page.click("text=Undo merge")
    page.wait_for_selector("text=Merge undone.")
    assert "Cannot connect." in page.inner_text("section.thread")
    assert "1 mails that arrived after the merge stay" in page.inner_text("section.thread")
    screenshot(page, "ticket-merge-undone")

    desk.deliver(mail("alice@example.com", f"Re: [#{first}] VPN is down", "Also: my laptop battery is swelling!"))
    page.goto(f"{live.url}/tickets/{first}")
    page.locator("article.message", has_text="battery is swelling").locator("button", has_text="Split off").click()
    page.wait_for_selector("text=Split off #")
    new = int(page.url.rsplit("/", 1)[1])
    assert new not in (first, dup) and f"linked to #{first}" in page.inner_text(".facts")
    assert "battery is swelling" in page.inner_text("section.thread")
    _send(factory, smtp_sink)
    told = _to(smtp_sink, "alice@example.com", f"[#{new}]").get_body(("plain",)).get_content()
    assert f"is now a ticket of its own, [#{new}]" in told and f"[#{first}]" in told
    with factory() as session:
        moved = session.scalars(select(Message).where(Message.text.like("%battery is swelling%"))).one()
        assert moved.ticket_id == new


def test_admin_keeps_macros_and_an_agent_sends_one_from_the_reply_form(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings, smtp_sink
) -> None:
    desk = Desk(factory, settings)
    number = desk.deliver(mail("Alice Example <alice@example.com>", "VPN is down", "No VPN since 9:00.")).ticket_id
    log_in(page, live, Role.ADMIN)
    page.click("header.top nav a:text-is('Macros')")
    page.fill("input[aria-label='macro name']", "vpn-known")
    page.fill("textarea[aria-label='macro text']", "Hello {{ ticket.requester.password_hash }}")
    page.click("form.card button.primary")
    page.wait_for_selector("text=unknown placeholder ticket")
    page.fill("textarea[aria-label='macro text']",
              "Hello {{ requester_name }},\nthe VPN outage {{ ticket_tag }} is known; we are on it.\n{{ agent_name }}")
    page.locator("form.card select[name=priority]").select_option("P2")
    page.locator("form.card input[name=category]").fill("network")
    page.click("form.card button.primary")
    page.wait_for_selector("text=Macro vpn-known saved.")
    screenshot(page, "admin-macros")
    page.click("text=Log out")

    log_in(page, live, Role.AGENT)
    page.goto(f"{live.url}/tickets/{number}")
    page.select_option("select[name=macro]", "vpn-known")
    page.click("text=Send canned reply")
    page.wait_for_selector("text=Canned reply vpn-known sent.")
    assert "priority -> P2" in page.inner_text("div.flash, .flashes, body")
    facts = page.inner_text(".facts")
    assert "P2" in facts and "network" in facts
    screenshot(page, "ticket-after-macro")

    _send(factory, smtp_sink)
    reply = _to(smtp_sink, "alice@example.com", f"Re: [#{number}]")
    body = reply.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert f"Hello Alice Example,\nthe VPN outage [#{number}] is known" in body and "{{" not in body
    with factory() as session:
        actions = {(e.action, e.actor) for e in session.scalars(select(AuditEntry))}
        assert ("macro.create", "admin@example.org") in actions and ("ticket.macro", "agent@example.org") in actions


def test_merging_into_an_access_request_awaiting_approval_is_refused_on_the_page(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings
) -> None:
    desk = Desk(factory, settings)
    asked = desk.deliver(mail("dave@example.com", "Access to CRM", "Please grant me access to the CRM.")).ticket_id
    other = desk.deliver(mail("erin@example.com", "CRM is very slow today", "Pages take a minute.")).ticket_id
    log_in(page, live, Role.AGENT)
    page.goto(f"{live.url}/tickets/{other}")
    page.fill("input[aria-label='merge into ticket']", f"#{asked}")
    page.click("text=Merge this ticket")
    page.wait_for_selector(f"text=#{asked} is awaiting approval: approve or reject it first")
    screenshot(page, "merge-refused")
    assert page.url.endswith(f"/tickets/{other}") and page.locator("#merged").count() == 0
    with factory() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.merge")).all() == []
