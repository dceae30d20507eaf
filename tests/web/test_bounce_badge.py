"""The ticket page says when our mail to the requester bounces (and so nothing more is mailed to them)."""

from __future__ import annotations

from helpdesk.core.db import transaction
from helpdesk.core.models import Role
from helpdesk.core.users import create_user
from tests.core.desk import Desk, make_desk, mail
from tests.core.test_bounce_flags import _ack, _text_bounce
from tests.web.conftest import PASSWORD, STAFF, login
from helpdesk.web import create_app


def test_the_ticket_page_says_when_mail_to_the_requester_bounces(sqlite_session_factory, tmp_path) -> None:
    desk: Desk = make_desk(sqlite_session_factory, tmp_path)
    first = desk.deliver(mail())
    with transaction(desk.factory) as session:
        create_user(session, STAFF[Role.AGENT], Role.AGENT, PASSWORD)
    client = login(create_app(desk.settings, desk.factory, testing=True).test_client(), Role.AGENT)
    assert "mail bounces" not in client.get(f"/tickets/{first.ticket_id}").get_data(as_text=True)
    desk.deliver(_text_bounce("alice@example.com", _ack(desk, first.ticket_id)["Message-ID"]))
    assert "mail bounces" in client.get(f"/tickets/{first.ticket_id}").get_data(as_text=True)
