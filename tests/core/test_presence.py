"""Agent collision: presence on a ticket, and a reply written after someone else's newer reply."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import presence, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Direction, Message, Presence, PresenceState, Role, utcnow
from tests.core.desk import make_desk, mail


def test_agents_on_one_ticket_see_each_other_until_they_stop_polling(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    desk = make_desk(session_factory, tmp_path)
    desk.add_user("alice@example.org", Role.AGENT)
    desk.add_user("bob@example.org", Role.AGENT)
    number = desk.deliver(mail("user@example.com", "VPN down", "No VPN")).ticket_id
    now = utcnow()
    with transaction(session_factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        alice, bob = (tickets.contact_for(session, a) for a in ("alice@example.org", "bob@example.org"))
        presence.beat(session, ticket, alice, PresenceState.VIEWING, now=now)
        presence.beat(session, ticket, bob, PresenceState.VIEWING, now=now)
        presence.beat(session, ticket, bob, PresenceState.TYPING, now=now)  # the same row, updated
        assert [(h.email, h.state) for h in presence.others(session, ticket, alice, now=now)] == [
            ("bob@example.org", PresenceState.TYPING)
        ]
        assert [h.email for h in presence.others(session, ticket, bob, now=now)] == ["alice@example.org"]
        later = now + presence.FRESH + timedelta(seconds=1)
        assert presence.others(session, ticket, alice, now=later) == []
        presence.beat(session, ticket, bob, PresenceState.VIEWING, now=now + presence.KEEP + timedelta(seconds=1))
        assert session.scalars(select(Presence.contact_id)).all() == [bob.id]  # alice's hour-old row went


def test_a_reply_on_a_stale_view_is_refused_until_confirmed(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    desk = make_desk(session_factory, tmp_path)
    desk.add_user("alice@example.org", Role.AGENT)
    desk.add_user("bob@example.org", Role.AGENT)
    number = desk.deliver(mail("user@example.com", "VPN down", "No VPN")).ticket_id
    with transaction(session_factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        seen_by_both = presence.newest_public_id(ticket.messages)
        bob = tickets.contact_for(session, "bob@example.org")
        tickets.reply(session, desk.settings, ticket, bob, "Restart the client, please.", seen=seen_by_both)
        tickets.add_note(session, ticket, bob, "internal: not what the requester sees")
    with transaction(session_factory) as session:
        ticket = tickets.get(session, number)
        assert ticket is not None
        alice = tickets.contact_for(session, "alice@example.org")
        with pytest.raises(presence.NewerReply) as refused:
            tickets.reply_with_files(session, desk.settings, ticket, alice, "Is it fixed?", [], seen=seen_by_both)
        assert [m.text for m in refused.value.newer] == ["Restart the client, please."]
        assert "1 newer message(s)" in str(refused.value)
        # Having seen it (the confirmation page carries the newest id), the reply goes out; notes never count.
        tickets.reply(session, desk.settings, ticket, alice, "Is it fixed?", seen=refused.value.newer[-1].id)
    with session_factory() as session:
        texts = session.scalars(
            select(Message.text).where(Message.ticket_id == number, Message.direction == Direction.OUT,
                                       Message.internal.is_(False)).order_by(Message.id)
        ).all()
        assert texts[-2:] == ["Restart the client, please.", "Is it fixed?"]
