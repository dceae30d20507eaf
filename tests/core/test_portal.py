"""core.portal on SQLite and PostgreSQL: a link is used once even by racing requests; limits count in the database."""

from __future__ import annotations

import threading
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import portal, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Outbox, PortalSession, TicketKind
from helpdesk.core.settings import Settings

CAROL = "carol@example.com"


def _setup(factory: sessionmaker[Session], tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path, database_url="unused", secret_key="test-secret")
    with transaction(factory) as session:
        tickets.open_ticket(session, requester=tickets.contact_for(session, CAROL), subject="Printer offline",
                            kind=TicketKind.INCIDENT)
    return settings


def _token(factory: sessionmaker[Session]) -> str:
    with factory() as session:
        raw = session.scalars(select(Outbox.raw).where(Outbox.purpose == portal.LINK_PURPOSE).order_by(Outbox.id.desc())).first()
    assert raw is not None
    body = message_from_bytes(raw, policy=policy.default).get_body(("plain",))
    assert body is not None
    return str(body.get_content()).split("/portal/sign-in/")[1].split()[0]  # type: ignore[attr-defined]


def test_racing_redemptions_of_one_link_sign_in_once(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    settings = _setup(session_factory, tmp_path)
    with transaction(session_factory) as session:
        assert portal.request_link(session, settings, CAROL, "192.0.2.1") is portal.LinkOutcome.MAILED
    token = _token(session_factory)
    start, outcomes = threading.Barrier(4), []

    def redeem() -> None:
        start.wait()
        try:
            with transaction(session_factory) as session:
                contact = portal.redeem_link(session, settings, token)
                portal.open_session(session, settings, contact)
            outcomes.append("signed in")
        except portal.LinkRefused:
            outcomes.append("refused")
        except Exception as exc:  # a database lock between racers counts as refused: the link must not work twice
            outcomes.append(f"refused ({type(exc).__name__})")

    workers = [threading.Thread(target=redeem) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert outcomes.count("signed in") == 1, outcomes
    with session_factory() as session:
        assert len(session.scalars(select(PortalSession)).all()) == 1


def test_limits_and_sessions_hold_across_database_sessions(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    settings = _setup(session_factory, tmp_path)
    limits = portal.PortalPolicy()
    answers = []
    for _ in range(limits.per_address + 1):
        try:
            with transaction(session_factory) as session:
                answers.append(portal.request_link(session, settings, CAROL, "192.0.2.1").value)
        except portal.TooManyLinks:
            answers.append("limited")
    assert answers == ["mailed"] * limits.per_address + ["limited"]
    with transaction(session_factory) as session:
        contact = portal.redeem_link(session, settings, _token(session_factory))
        opened = portal.open_session(session, settings, contact)
    with transaction(session_factory) as session:
        assert (found := portal.session_contact(session, settings, opened)) is not None and found.email == CAROL
        assert portal.session_contact(session, settings, opened.replace("hdp_", "hd_")) is None
        portal.end_session(session, opened)
    with transaction(session_factory) as session:
        assert portal.session_contact(session, settings, opened) is None
