"""Satisfaction (CSAT): links in the requester's resolution mail, signed answers, figures per agent/category/month."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import csat, privacy, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import AuditEntry, Contact, Rating, Role, Satisfaction, TicketStatus, utcnow
from helpdesk.core.notify import notify_status
from tests.core.desk import Desk, make_desk, mail

ALERTS = Path(__file__).parent / "alerts"
LINK = re.compile(r"https?://\S+/satisfaction/(\S+)/(good|bad)")


def _resolve(desk: Desk, number: int, agent: str = "agent@example.org") -> None:
    """What the console's Change form and #resolve by mail do: resolve, then tell requester and watchers."""
    with transaction(desk.factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        who = tickets.contact_for(session, agent)
        tickets.change(session, ticket, agent, status=TicketStatus.RESOLVED, assignee=who)
        notify_status(session, desk.settings, ticket, actor=agent)


def _links(desk: Desk, rcpt: str) -> dict[str, str]:
    """rating -> token, from the text and the HTML part of the resolution mail to ``rcpt``."""
    [found] = [m for to, m in desk.sent("resolution") if to == rcpt]
    text = found.get_body(("plain",)).get_content()
    html = found.get_body(("html",)).get_content()
    from_text = {rating: token for token, rating in LINK.findall(text)}
    assert from_text == {rating: token for token, rating in LINK.findall(html.replace('"', " "))}
    return from_text


def test_resolution_mail_carries_links_only_for_the_requester_and_a_click_is_recorded(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    desk.add_user("agent@example.org")
    number = desk.deliver(mail("alice@example.com", "Printer jammed", "Paper stuck", cc="bob@example.com")).ticket_id
    _resolve(desk, number)

    links = _links(desk, "alice@example.com")
    assert set(links) == {"good", "bad"}
    assert _links(desk, "bob@example.com") == {}  # a watcher is not asked
    with transaction(session_factory) as session:
        ticket = csat.read_token(session, desk.settings, links["bad"])
        csat.record(session, ticket, rating=Rating.BAD)
    with transaction(session_factory) as session:  # one answer per ticket: a later click changes it
        csat.record(session, csat.read_token(session, desk.settings, links["good"]), rating=Rating.GOOD, comment="Quick!")
    with session_factory() as session:
        row = session.get(Satisfaction, number)
        assert row is not None and row.rating is Rating.GOOD and row.comment == "Quick!"
        assert [(r.agent, r.category, r.good, r.bad) for r in csat.results(session)] == [
            ("agent@example.org", row.category, 1, 0)
        ]
        assert csat.results(session)[0].month == utcnow().strftime("%Y-%m")
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.satisfaction")).all()
        assert [(e.actor, e.after["rating"]) for e in audited] == [("alice@example.com", "bad"), ("alice@example.com", "good")]


def test_altered_forged_or_expired_links_are_refused(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    desk = make_desk(session_factory, tmp_path)
    number = desk.deliver(mail("alice@example.com", "VPN down", "No VPN")).ticket_id
    other = desk.deliver(mail("carol@example.com", "Mail down", "No mail")).ticket_id
    with transaction(session_factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        token = csat.make_token(desk.settings, ticket)
        old = csat.make_token(desk.settings, ticket, now=utcnow() - csat.LINK_LIFETIME - timedelta(minutes=1))
        number_part, rest = token.split(".", 1)
        bad = [
            f"{other}.{rest}",  # another ticket's number on this ticket's signature
            token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # signature altered
            "1.1.99999999999.xyz",  # made up
            token.replace(".", "", 1),
        ]
        for forged in bad:
            with pytest.raises(csat.BadToken, match="not valid"):
                csat.read_token(session, desk.settings, forged)
        with pytest.raises(csat.BadToken, match="expired"):
            csat.read_token(session, desk.settings, old)
        with pytest.raises(csat.BadToken):  # signed with another desk's key
            csat.read_token(session, replace(desk.settings, secret_key="another-key"), token)
        assert csat.read_token(session, desk.settings, token).id == int(number_part)


def test_no_links_for_alert_incidents_automatic_senders_or_bouncing_requesters(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    alert = desk.deliver((ALERTS / "icinga2_service_warning.eml").read_bytes()).ticket_id
    listed = desk.deliver(mail("announce@lists.example.com", "Printers replaced on floor 2", "FYI",
                               headers={"List-Id": "<it.lists.example.com>", "Precedence": "list"})).ticket_id
    bouncing = desk.deliver(mail("gone@example.com", "Laptop broken", "Screen dark")).ticket_id
    person = desk.deliver(mail("dave@example.com", "Laptop broken too", "Keyboard dead")).ticket_id
    assert None not in (alert, listed, bouncing, person)
    with transaction(session_factory) as session:
        session.scalars(select(Contact).where(Contact.email == "gone@example.com")).one().undeliverable = True
        for number in (alert, listed, bouncing):
            ticket = tickets.get(session, number)
            assert ticket is not None and csat.why_not(session, ticket) is not None
    desk.clear_outbox()
    for number in (alert, listed, bouncing, person):
        assert number is not None
        _resolve(desk, number)
    texts = {to: m.get_body(("plain",)).get_content() for to, m in desk.sent()}
    assert "/satisfaction/" in texts["dave@example.com"]
    surveyed = [to for to, text in texts.items() if "/satisfaction/" in text]
    assert surveyed == ["dave@example.com"], surveyed


def test_an_answer_counts_for_the_agent_assigned_when_it_came(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Reassigning the ticket later does not move the answer to another agent."""
    desk = make_desk(session_factory, tmp_path)
    desk.add_user("agent@example.org")
    desk.add_user("other@example.org", Role.AGENT)
    number = desk.deliver(mail("alice@example.com", "Printer jammed", "Paper stuck")).ticket_id
    assert number is not None
    _resolve(desk, number)
    token = _links(desk, "alice@example.com")["good"]
    with transaction(session_factory) as session:
        csat.record(session, csat.read_token(session, desk.settings, token), rating=Rating.GOOD)
    with transaction(session_factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        tickets.change(session, ticket, "admin", assignee=tickets.contact_for(session, "other@example.org"))
    with session_factory() as session:
        assert [r.agent for r in csat.results(session)] == ["agent@example.org"]


def test_erasing_the_requester_removes_their_comment_and_keeps_the_rating(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    number = desk.deliver(mail("alice@example.com", "Printer jammed", "Paper stuck")).ticket_id
    assert number is not None
    _resolve(desk, number)
    token = _links(desk, "alice@example.com")["bad"]
    with transaction(session_factory) as session:
        csat.record(session, csat.read_token(session, desk.settings, token), rating=Rating.BAD,
                    comment="Alice Example, room 4.12, was kept waiting")
    with transaction(session_factory) as session:
        privacy.erase_person(session, desk.settings, "alice@example.com", actor="admin@example.org")
    with session_factory() as session:
        row = session.get(Satisfaction, number)
        assert row is not None and row.comment is None and row.rating is Rating.BAD
        assert [(r.good, r.bad) for r in csat.results(session)] == [(0, 1)]
