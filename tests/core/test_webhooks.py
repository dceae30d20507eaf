"""Outgoing webhooks against a real HTTP receiver on loopback: events from ticket changes, signed,
retried with backoff, failing for good on a 4xx; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from helpdesk.core import access, outbox, sla, tickets, webhooks
from helpdesk.core.db import transaction
from helpdesk.core.models import (
    Contact, OutboxStatus, Role, TicketKind, TicketStatus, Webhook, WebhookDelivery, utcnow,
)
from helpdesk.mailgateway.webhook import deliver_once
from tests.core.desk import Desk, make_desk, mail
from tests.servers.webhook import Received, WebhookReceiver

FAST = outbox.RetryPolicy(first_delay=timedelta(seconds=0))
ALL = [e.value for e in webhooks.SUBSCRIBABLE]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from WebhookReceiver.running()


def add_hook(desk: Desk, url: str, events: list[str] = ALL, format: str = "json") -> tuple[int, str]:
    with transaction(desk.factory) as session:
        hook, secret = webhooks.create(session, desk.settings, "admin@example.org", name="ops", url=url,
                                       events=events, format=format)  # fmt: skip
        return hook.id, secret


def deliveries(desk: Desk) -> list[WebhookDelivery]:
    with desk.factory() as session:
        rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        session.expunge_all()
        return rows


def verified(request: Received, secret: str) -> bool:
    """What a receiver does: HMAC-SHA256 of "<timestamp>.<body>" with the shared secret."""
    timestamp = request.headers["X-Helpdesk-Timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["X-Helpdesk-Signature"], f"sha256={mac}")


def test_ticket_events_arrive_signed_and_verifiable(session_factory, tmp_path, receiver) -> None:
    desk = make_desk(session_factory, tmp_path)
    desk.add_user("agent@example.org")
    _, secret = add_hook(desk, receiver.url)
    number = desk.deliver(mail(subject="Salary of Jane Doe visible", sender="jane@example.com")).ticket_id
    with transaction(desk.factory) as session:
        ticket = tickets.get(session, number)
        agent = session.scalar(select(Contact).where(Contact.email == "agent@example.org"))
        tickets.reply(session, desk.settings, ticket, agent, "Looking into it.")
        tickets.change(session, ticket, agent.email, status=TicketStatus.RESOLVED)
        tickets.change(session, ticket, agent.email, priority="P2")  # no event: not subscribable
    assert deliver_once(desk.factory, desk.settings) == (4, 0)
    got = receiver.wait_for(4)
    events = [(r.json["event"], r.json["detail"]) for r in got]
    assert events == [
        ("ticket.created", {}),
        ("ticket.status", {"from": "new", "to": "open"}),  # the first reply opens it
        ("ticket.replied", {"by": "desk"}),
        ("ticket.status", {"from": "open", "to": "resolved"}),
    ]
    assert all(verified(r, secret) for r in got)
    assert not verified(got[0], secret + "x")
    assert len({r.delivery for r in got}) == 4 and all(r.json["delivery"] == r.delivery for r in got)
    first = got[0].json["ticket"]
    assert first["number"] == number and first["url"].endswith(f"/tickets/{number}")
    # No personal data: neither the subject nor an address goes out.
    raw = b"".join(r.body for r in got)
    assert b"Jane" not in raw and b"jane@" not in raw and b"agent@" not in raw
    assert {d.status for d in deliveries(desk)} == {OutboxStatus.SENT}
    # A requester's reply by mail is an event too (not audited, told by tickets.user_wrote).
    desk.deliver(mail(subject=f"Re: [#{number}] Salary", sender="jane@example.com", body="Thanks"))
    deliver_once(desk.factory, desk.settings)
    replied = [r.json["detail"] for r in receiver.wait_for(5)[4:] if r.json["event"] == "ticket.replied"]
    assert replied == [{"by": "requester"}]


def test_only_subscribed_events_of_enabled_webhooks_are_queued(session_factory, tmp_path, receiver) -> None:
    desk = make_desk(session_factory, tmp_path)
    hook_id, _ = add_hook(desk, receiver.url, events=["ticket.status"])
    desk.deliver(mail())
    assert deliveries(desk) == []
    with transaction(desk.factory) as session:
        hook = session.get(Webhook, hook_id)
        webhooks.update(session, "admin@example.org", hook, name="ops", url=receiver.url, events=["ticket.created"],
                        format="json", enabled=False)  # fmt: skip
    desk.deliver(mail(subject="Another"))
    assert deliveries(desk) == []


def test_server_error_is_retried_then_delivered_under_the_same_delivery_id(session_factory, tmp_path, receiver) -> None:
    desk = make_desk(session_factory, tmp_path)
    _, secret = add_hook(desk, receiver.url, events=["ticket.created"])
    desk.deliver(mail())
    receiver.answers.extend([500, 503])
    policy = outbox.RetryPolicy(first_delay=timedelta(seconds=60))
    assert deliver_once(desk.factory, desk.settings, policy=policy) == (0, 1)
    [row] = deliveries(desk)
    assert row.status is OutboxStatus.PENDING and row.attempts == 1 and "HTTP 500" in (row.last_error or "")
    assert len(row.last_error or "") < 300  # a short excerpt of the answer, not all of it
    assert deliver_once(desk.factory, desk.settings, policy=policy) == (0, 0)  # not due before the backoff
    with transaction(desk.factory) as session:  # the backoff has passed
        session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    assert deliver_once(desk.factory, desk.settings, policy=FAST) == (0, 1)  # 503
    assert deliver_once(desk.factory, desk.settings, policy=FAST) == (1, 0)
    got = receiver.wait_for(3)
    assert len({r.delivery for r in got}) == 1 and len({r.body for r in got}) == 1
    assert all(verified(r, secret) for r in got)
    [row] = deliveries(desk)
    assert row.status is OutboxStatus.SENT and row.attempts == 3 and row.last_error is None


@pytest.mark.parametrize("answer", [410, (302, {"Location": "http://127.0.0.2/elsewhere"})])
def test_client_error_or_redirect_fails_for_good_and_is_counted_for_admins(session_factory, tmp_path, receiver,
                                                                           answer) -> None:  # fmt: skip
    desk = make_desk(session_factory, tmp_path)
    add_hook(desk, receiver.url, events=["ticket.created"])
    desk.deliver(mail())
    receiver.answers.append(answer)
    assert deliver_once(desk.factory, desk.settings, policy=FAST) == (0, 1)
    assert deliver_once(desk.factory, desk.settings, policy=FAST) == (0, 0)
    [row] = deliveries(desk)
    code = answer if isinstance(answer, int) else answer[0]
    assert row.status is OutboxStatus.FAILED and f"HTTP {code}" in (row.last_error or "")
    assert len(receiver.received) == 1
    with desk.factory() as session:
        assert webhooks.failed_count(session) == 1
        # An admin puts it back once the receiver is fixed.
        outbox.retry(session, row.id, table=WebhookDelivery)
        session.commit()
    assert deliver_once(desk.factory, desk.settings, policy=FAST) == (1, 0)


def test_unreachable_receiver_is_retried(session_factory, tmp_path, receiver) -> None:
    desk = make_desk(session_factory, tmp_path)
    add_hook(desk, receiver.url, events=["ticket.created"])
    desk.deliver(mail())
    receiver.stop()
    assert deliver_once(desk.factory, desk.settings, policy=FAST) == (0, 1)
    [row] = deliveries(desk)
    assert row.status is OutboxStatus.PENDING and row.last_error


def test_approvals_and_sla_breaches_are_events(session_factory, tmp_path, receiver) -> None:
    desk = make_desk(session_factory, tmp_path)
    add_hook(desk, receiver.url, events=["ticket.approval", "ticket.sla_breach"])
    with transaction(desk.factory) as session:
        hank, ivy = tickets.contact_for(session, "hank@example.org"), tickets.contact_for(session, "ivy@example.org")
        ivy.role = Role.APPROVER
        ticket = tickets.open_ticket(session, requester=hank, subject="Access to finance share",
                                     kind=TicketKind.ACCESS_REQUEST, category="access")  # fmt: skip
        request = access.open_request(session, desk.settings, ticket.id, resource="finance share")
        access.decide(session, desk.settings, request, ivy, True, "month-end close")
        late = tickets.open_ticket(session, requester=hank, subject="VPN down", kind=TicketKind.INCIDENT,
                                   priority="P1")  # fmt: skip
        late.created_at = utcnow() - timedelta(days=1)
    with transaction(desk.factory) as session:
        sla.check(session, desk.settings, utcnow())
    assert deliver_once(desk.factory, desk.settings) == (4, 0)
    got = [(r.json["event"], r.json["ticket"]["number"], r.json["detail"]) for r in receiver.wait_for(4)]
    assert got == [
        ("ticket.approval", ticket.id, {"decision": "requested"}),
        ("ticket.approval", ticket.id, {"decision": "approved"}),
        ("ticket.sla_breach", late.id, {"metric": "response"}),
        ("ticket.sla_breach", late.id, {"metric": "resolution"}),
    ]  # and no warning: not an event


def test_slack_and_teams_formats(session_factory, tmp_path, receiver) -> None:
    desk = make_desk(session_factory, tmp_path)
    add_hook(desk, receiver.url, events=["ticket.created"], format="slack")
    number = desk.deliver(mail()).ticket_id
    assert deliver_once(desk.factory, desk.settings) == (1, 0)
    with transaction(desk.factory) as session:
        hook = session.scalars(select(Webhook)).one()
        webhooks.update(session, "admin@example.org", hook, name="ops", url=receiver.url, events=hook.events,
                        format="teams", enabled=True)  # fmt: skip
    desk.deliver(mail(subject="Second"))
    assert deliver_once(desk.factory, desk.settings) == (1, 0)
    slack, teams = (r.json for r in receiver.wait_for(2))
    assert set(slack) == {"text"} and f"Ticket #{number} created" in slack["text"]
    assert f"/tickets/{number}|Open>" in slack["text"]
    assert teams["@type"] == "MessageCard" and f"#{number + 1} created" in teams["text"]


def test_bad_input_is_one_line_and_the_secret_is_sealed(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    with transaction(desk.factory) as session:
        for url, events, said in [
            ("ftp://x.example/", ["ticket.created"], r"is no http\(s\) URL"),
            ("https://u:p@x.example/", ["ticket.created"], "no user or password"),
            ("https://x.example/", ["ticket.deleted"], "unknown event ticket.deleted"),
            ("https://x.example/", [], "at least one event"),
        ]:
            with pytest.raises(webhooks.WebhookError, match=said):
                webhooks.create(session, desk.settings, "a@example.org", name="x", url=url, events=events)
        hook, secret = webhooks.create(session, desk.settings, "a@example.org", name="x", url="https://x.example/",
                                       events=["ticket.created"])  # fmt: skip
        assert secret not in hook.secret and webhooks.secret_of(desk.settings, hook) == secret
        with pytest.raises(webhooks.WebhookError, match="exists already"):
            webhooks.create(session, desk.settings, "a@example.org", name="x", url="https://x.example/",
                            events=["ticket.created"])  # fmt: skip
