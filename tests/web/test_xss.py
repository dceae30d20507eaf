"""Tickets made from XSS payloads are shown in a real browser, and none of them executes."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import Attachment, Message, Role
from tests.web.browser import LiveServer, log_in, screenshot
from tests.web.conftest import make_ticket

MARK = "window.__xss=1;document.title='XSS'"
PAYLOADS = [
    f"<script>{MARK}</script>",
    f"\"><script>{MARK}</script>",
    f"'><img src=x onerror=\"{MARK}\">",
    f"<img src=x onerror=\"{MARK}\">",
    f"<svg onload=\"{MARK}\"><script>{MARK}</script></svg>",
    f"<svg><animate onbegin=\"{MARK}\" attributeName=x dur=1s>",
    f"<a href=\"javascript:{MARK}\" id=\"jslink\">click me</a>",
    f"<a href=\"data:text/html,<script>{MARK}</script>\">data link</a>",
    f"<iframe src=\"data:text/html,<script>parent.{MARK}</script>\"></iframe>",
    f"<iframe srcdoc=\"<script>parent.{MARK}</script>\"></iframe>",
    f"<object data=\"javascript:{MARK}\"></object><embed src=\"javascript:{MARK}\">",
    f"<style>@import 'javascript:{MARK}'; body {{ background: url(\"javascript:{MARK}\") }}</style>",
    f"<div style=\"background-image: url(javascript:{MARK}); width: expression({MARK})\">css</div>",
    f"<math><mtext><table><mglyph><style><img src=x onerror=\"{MARK}\"></style></mglyph></table></mtext></math>",
    f"<details open ontoggle=\"{MARK}\"><summary>x</summary></details>",
    f"<body onload=\"{MARK}\">",
    f"<meta http-equiv=\"refresh\" content=\"0;url=javascript:{MARK}\">",
    f"<form action=\"javascript:{MARK}\"><button id=\"jsform\">go</button></form>",
    "<base href=\"javascript:alert(1)//\">",
    f"<noscript><p title=\"</noscript><img src=x onerror={MARK}>\"></noscript>",
    "{{ 7 * 7 }} {% raw %}${7*7}{% endraw %}",
]


def _make_tickets(factory: sessionmaker[Session]) -> list[int]:
    numbers = []
    for i, payload in enumerate(PAYLOADS):
        made = make_ticket(
            factory,
            subject=f"XSS {i} {payload}",
            text=f"text {payload}",
            html=f"<p>html {i}</p>{payload}",
            category=f"cat{i}{payload}"[:80],
            requester=f"xss{i}@example.com",
        )
        with transaction(factory) as session:
            message = session.get(Message, made.message_id)
            assert message is not None
            message.from_name = payload[:200]
            message.ticket.classification = [{"rule": payload, "reason": payload, "sets": {payload: payload}}]
            session.add(Attachment(message_id=made.message_id, filename=payload[:500], content_type=payload[:200],
                                   size=1, sha256=None, note=payload))
        numbers.append(made.number)
    return numbers


def test_no_payload_executes_on_the_queue_or_ticket_pages(page, live: LiveServer, factory) -> None:
    numbers = _make_tickets(factory)
    dialogs: list[str] = []
    csp_reports: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: csp_reports.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(page, live, Role.AGENT)

    def assert_clean(where: str) -> None:
        page.wait_for_load_state("load")
        page.wait_for_timeout(50)
        assert page.evaluate("window.__xss") is None, where
        assert page.title() != "XSS", where
        assert dialogs == [], where

    for url in ("/tickets", "/tickets?status=any&sort=oldest", "/tickets?q=XSS", "/reports"):
        page.goto(live.url + url)
        assert_clean(url)
    screenshot(page, "xss-queue")
    for number in numbers:
        page.goto(f"{live.url}/tickets/{number}")
        assert_clean(f"ticket {number}")
        frame = page.frame_locator("iframe.mail-html").first
        for selector in ("#jslink", "#jsform", "a"):
            link = frame.locator(selector)
            if link.count():
                link.first.click(timeout=2000, no_wait_after=True)
                assert_clean(f"ticket {number} after clicking {selector}")
    page.goto(f"{live.url}/tickets/{numbers[0]}")
    screenshot(page, "xss-ticket")
    # The payloads never reached the DOM as markup: the policy had nothing to block.
    assert csp_reports == []
