"""Mail HTML is sanitised once, at intake, within a budget; the ticket page shows what was stored.

A review found a mail of 200,000 nested <div> (2.2 MB) took 88 s to ingest and 85 s per ticket page view,
because the console sanitised it again on every view.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import nh3
import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import safehtml
from helpdesk.core.models import Message
from tests.core.desk import make_desk
from tests.web.conftest import make_ticket


def _html_mail(html: str, text: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "help@example.org"
    msg["Subject"] = "Printer on floor 3"
    if text is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    return msg.as_bytes()


def _no_sanitiser(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on any sanitising fails: a page that still sanitises is a 500."""
    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("sanitised per request")

    monkeypatch.setattr(nh3, "clean", refuse)


def _message(factory: sessionmaker[Session], ticket_id: int) -> Message:
    with factory() as session:
        message = session.query(Message).filter_by(ticket_id=ticket_id).order_by(Message.id).first()
        assert message is not None
        session.expunge(message)
        return message


def test_nested_html_is_kept_as_text_with_a_notice_and_the_page_does_not_sanitise(
    as_agent: FlaskClient, factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = "<div>" * 200_000 + "The printer is jammed." + "</div>" * 200_000
    assert len(nested) > 2_000_000
    result = make_desk(factory, tmp_path).deliver(_html_mail(nested))
    assert result.ticket_id is not None

    stored = _message(factory, result.ticket_id)
    assert stored.html is None and stored.html_note  # over the budget: not shown as HTML, and says so
    assert "The printer is jammed." in stored.text

    _no_sanitiser(monkeypatch)
    page = as_agent.get(f"/tickets/{result.ticket_id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert stored.html_note in body and "The printer is jammed." in body
    assert 'class="mail-html"' not in body


def test_html_mail_is_shown_from_the_html_sanitised_at_intake(
    as_agent: FlaskClient, factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = '<p>Jammed <b>again</b></p><script>alert(1)</script><a href="https://example.com/x">log</a>'
    result = make_desk(factory, tmp_path).deliver(_html_mail(html, text="Jammed again"))
    assert result.ticket_id is not None
    stored = _message(factory, result.ticket_id)
    assert stored.html is not None and "<script" not in stored.html and 'rel="noopener' in stored.html
    assert stored.html_policy == safehtml.POLICY

    _no_sanitiser(monkeypatch)
    page = as_agent.get(f"/tickets/{result.ticket_id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'class="mail-html"' in body and "&lt;b&gt;again&lt;/b&gt;" in body  # in the iframe's srcdoc


def test_html_stored_before_is_sanitised_once_on_first_view_and_kept(
    as_agent: FlaskClient, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_ticket(factory, "Old mail", html='<p>old</p><img src=x onerror="alert(1)">')
    assert _message(factory, made.number).html_policy is None  # as a row from an older release

    first = as_agent.get(f"/tickets/{made.number}").get_data(as_text=True)
    assert "onerror" not in first and "&lt;p&gt;old&lt;/p&gt;" in first
    stored = _message(factory, made.number)
    assert stored.html_policy == safehtml.POLICY and stored.html is not None and "onerror" not in stored.html

    _no_sanitiser(monkeypatch)
    assert as_agent.get(f"/tickets/{made.number}").status_code == 200
