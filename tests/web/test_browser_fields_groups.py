"""Custom fields and groups in Chromium: an admin defines a choice field and a group, an agent works with them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.models import AuditEntry, Role
from helpdesk.core.settings import Settings
from tests.core.desk import Desk, mail
from tests.web.browser import LiveServer, log_in, screenshot
from tests.web.conftest import STAFF


def _queue_numbers(page) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(t.strip().lstrip("#")) for t in page.locator("table.queue tbody tr td a[href*='/tickets/']").all_inner_texts()
            if t.strip().startswith("#")]


def test_admin_defines_a_field_and_a_group_agent_sets_them_and_the_queue_filters(
    page, live: LiveServer, factory: sessionmaker[Session], settings: Settings
) -> None:
    desk = Desk(factory, settings)
    router = desk.deliver(mail("alice@example.com", "Router in room 4 is dead", "No network.")).ticket_id
    printer = desk.deliver(mail("bob@example.com", "Printer jammed", "Error 42.")).ticket_id
    assert router is not None and printer is not None

    log_in(page, live, Role.ADMIN)
    page.goto(f"{live.url}/admin/fields")
    form = page.locator("#add-field")
    form.locator("input[name=key]").fill("site")
    form.locator("input[name=label]").fill("Site")
    form.locator("select[name=type]").select_option("choice")
    form.locator("textarea[name=choices]").fill("Berlin\nHamburg")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("text=Field site saved.")
    page.goto(f"{live.url}/admin/groups")
    form = page.locator("#add-group")
    form.locator("input[name=name]").fill("Network")
    form.locator(f"input[name=members][value='{STAFF[Role.AGENT]}']").check()
    form.locator("button[type=submit]").click()
    page.wait_for_selector("text=Group Network saved.")
    screenshot(page, "admin-groups")

    page.context.clear_cookies()
    log_in(page, live, Role.AGENT)
    page.goto(f"{live.url}/tickets/{router}")
    fields = page.locator("form.fields")
    fields.locator("select[name=field_site]").select_option("Hamburg")
    fields.locator("select[name=group]").select_option("Network")
    fields.locator("button[type=submit]").click()
    page.wait_for_selector("text=Changed:")
    assert page.locator("select[name=field_site]").input_value() == "Hamburg"
    assert "Network" in page.inner_text("section.audit")
    screenshot(page, "ticket-fields")

    page.goto(f"{live.url}/tickets")  # the default view: the agent's group's ticket first, though older
    assert _queue_numbers(page)[:2] == [router, printer]
    page.select_option("select[name=field]", "site:Hamburg")
    page.wait_for_url("**field=site*")
    assert _queue_numbers(page) == [router]
    page.goto(f"{live.url}/tickets")
    page.select_option("select[name=group]", "mine")
    page.wait_for_url("**group=mine*")
    assert _queue_numbers(page) == [router]
    screenshot(page, "queue-field-filter")
    with factory() as session:
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.actor == STAFF[Role.AGENT])))
    assert "ticket.field" in actions and "ticket.change" in actions
