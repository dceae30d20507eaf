"""The outbox over a real SMTP server: retries, temporary versus permanent failures, crashes, CLI."""

from __future__ import annotations

import email
import time
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from helpdesk.core import outbox
from helpdesk.core.db import transaction
from helpdesk.core.models import Outbox, OutboxStatus, utcnow
from helpdesk.core.settings import SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import Desk, make_desk, mail
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.servers import free_port
from tests.servers.smtp import HOST, SmtpSink

FAST = outbox.RetryPolicy(first_delay=timedelta(seconds=0), claim_for=timedelta(seconds=0))


def _smtp(sink: SmtpSink) -> SmtpSettings:
    return SmtpSettings(host=sink.host, port=sink.port)


def _row(desk: Desk, outbox_id: int) -> Outbox:
    with desk.factory() as session:
        row = session.get(Outbox, outbox_id)
        assert row is not None
        session.expunge(row)
        return row


def _one_mail(desk: Desk) -> int:
    desk.deliver(mail())
    [row] = desk.outbox("acknowledgement")
    return row.id


def test_temporary_failure_is_retried_with_backoff_then_sent(sqlite_session_factory, tmp_path, smtp_sink) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    ack = _one_mail(desk)
    smtp_sink.reject_rcpt = "451 4.3.0 try again later"
    policy = outbox.RetryPolicy(first_delay=timedelta(seconds=60))
    assert send_once(desk.factory, _smtp(smtp_sink), policy=policy) == (0, 1)
    row = _row(desk, ack)
    assert row.status is OutboxStatus.PENDING and row.attempts == 1 and "451" in (row.last_error or "")
    assert row.next_attempt_at.replace(tzinfo=None) > (utcnow() + timedelta(seconds=50)).replace(tzinfo=None)
    assert outbox.RetryPolicy().delay(1) < outbox.RetryPolicy().delay(3) <= outbox.RetryPolicy().max_delay
    # Not due yet: nothing is tried.
    smtp_sink.reject_rcpt = None
    assert send_once(desk.factory, _smtp(smtp_sink), policy=policy) == (0, 0)
    with transaction(desk.factory) as session:
        session.get(Outbox, ack).next_attempt_at = utcnow()
    assert send_once(desk.factory, _smtp(smtp_sink), policy=policy) == (1, 0)
    assert _row(desk, ack).status is OutboxStatus.SENT


def test_permanent_failure_and_passed_deadline_are_failed_visibly(sqlite_session_factory, tmp_path, smtp_sink) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    ack = _one_mail(desk)
    smtp_sink.reject_rcpt = "550 5.1.1 no such user"
    send_once(desk.factory, _smtp(smtp_sink), policy=FAST)
    assert _row(desk, ack).status is OutboxStatus.FAILED and "550" in (_row(desk, ack).last_error or "")

    other = desk.deliver(mail("bob@example.com", "VPN down", "no tunnel"))
    [row] = [r for r in desk.outbox("acknowledgement") if r.ticket_id == other.ticket_id]
    with transaction(desk.factory) as session:
        session.get(Outbox, row.id).deadline_at = utcnow() - timedelta(seconds=1)
    dead = SmtpSettings(host="127.0.0.1", port=free_port())  # nobody listens: a temporary failure
    send_once(desk.factory, dead, policy=FAST)
    failed = _row(desk, row.id)
    assert failed.status is OutboxStatus.FAILED and "Connect" in (failed.last_error or "")


def test_a_crashed_sender_never_makes_a_second_message_id(sqlite_session_factory, tmp_path, smtp_sink) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    ack = _one_mail(desk)
    queued = _row(desk, ack).raw
    # A sender claims the mail and dies before recording anything.
    [claimed] = outbox.claim_due(desk.factory, "crashed-worker", policy=outbox.RetryPolicy(claim_for=timedelta(0)))
    assert claimed.raw == queued
    assert send_once(desk.factory, _smtp(smtp_sink), worker="survivor", policy=FAST) == (1, 0)
    [received] = smtp_sink.wait_for(1)
    assert received.message["Message-ID"].strip("<>") == _row(desk, ack).message_id
    assert email.message_from_bytes(received.content)["Message-ID"] == email.message_from_bytes(queued)["Message-ID"]
    # A live claim is respected: nobody else takes it.
    desk.deliver(mail("bob@example.com", "VPN down", "no tunnel"))
    assert len(outbox.claim_due(desk.factory, "a", policy=outbox.RetryPolicy(claim_for=timedelta(minutes=5)))) == 1
    assert outbox.claim_due(desk.factory, "b") == []


def test_outbox_list_and_retry_on_the_command_line(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'hd.sqlite3'}", smtp=smtp_sink)
    run(env, "ingest", input=mail())  # creates the schema, as every command does
    smtp_sink.reject_rcpt = "550 5.1.1 no such user"
    assert run(env, "send", "--once", check=False).returncode == 1
    [failed] = run_json(env, "outbox", "list", "--json")
    assert failed["status"] == "failed" and "550" in failed["last_error"] and failed["to"] == ["alice@example.com"]
    assert failed["purpose"] == "acknowledgement"
    smtp_sink.reject_rcpt = None
    assert "queued again" in run(env, "outbox", "retry", str(failed["id"])).stdout.decode()
    run(env, "send", "--once")
    [received] = smtp_sink.wait_for(1)
    assert received.message["Message-ID"].strip("<>") == failed["message_id"]
    assert run_json(env, "outbox", "list", "--json") == []
    [sent] = run_json(env, "outbox", "list", "--all", "--json")
    assert sent["status"] == "sent"
    again = run(env, "outbox", "retry", str(failed["id"]), check=False)
    assert again.returncode == 1 and b"already sent" in again.stderr


def test_late_result_from_an_expired_claim_leaves_the_mail_alone(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    ack = _one_mail(desk)
    expired = outbox.RetryPolicy(claim_for=timedelta(0))
    # Sender a claims the mail and stalls; its claim expires and b takes over and sends it.
    assert [m.id for m in outbox.claim_due(desk.factory, "a", policy=expired)] == [ack]
    assert [m.id for m in outbox.claim_due(desk.factory, "b", policy=expired)] == [ack]
    with transaction(desk.factory) as session:
        assert outbox.mark_sent(session, ack, "b")
    # a wakes up: its late failure must not put the sent mail back in the queue for c to send again.
    with transaction(desk.factory) as session:
        assert outbox.mark_failed(session, ack, "a", "SMTPServerDisconnected", permanent=False, policy=expired) is None
    row = _row(desk, ack)
    assert row.status is OutboxStatus.SENT and row.claimed_by == "b" and row.last_error is None
    assert outbox.claim_due(desk.factory, "c", policy=expired) == []
    # Nor may a renew its claim or record a success of its own.
    assert not outbox.renew_claim(desk.factory, ack, "a")
    with transaction(desk.factory) as session:
        assert not outbox.mark_sent(session, ack, "a")
    assert _row(desk, ack).sent_at == row.sent_at


def test_retry_refuses_a_mail_being_sent_under_a_live_claim(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    ack = _one_mail(desk)
    assert [m.id for m in outbox.claim_due(desk.factory, "a")] == [ack]
    with pytest.raises(ValueError, match="is being sent right now by a"):
        with transaction(desk.factory) as session:
            outbox.retry(session, ack)
    row = _row(desk, ack)
    assert row.status is OutboxStatus.SENDING and row.claimed_by == "a"
    # Once the claim has expired, its sender is taken for dead: the admin may queue the mail again,
    # and a late result from that sender changes nothing.
    with transaction(desk.factory) as session:
        session.get(Outbox, ack).claimed_until = utcnow() - timedelta(seconds=1)
    with transaction(desk.factory) as session:
        outbox.retry(session, ack)
    with transaction(desk.factory) as session:
        assert not outbox.mark_sent(session, ack, "a")
    row = _row(desk, ack)
    assert row.status is OutboxStatus.PENDING and row.claimed_by is None and row.sent_at is None


class _SlowSink:
    """Takes `delay` seconds over each mail; meanwhile another sender tries to claim due mail."""

    def __init__(self, factory: sessionmaker, delay: float) -> None:
        self.factory = factory
        self.delay = delay
        self.received: list[str] = []  # Message-IDs, in order
        self.taken_mid_send: list[tuple[str, list[int]]] = []  # (Message-ID in flight, ids "other" claimed)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message_id = email.message_from_bytes(envelope.original_content or b"")["Message-ID"].strip("<>")
        # At once, not after the delay: the in-flight mail's renewed claim is then seconds from running out
        # even on a loaded machine, and a mail whose claim was not renewed is already free to take.
        claimed = outbox.claim_due(self.factory, "other", policy=outbox.RetryPolicy(claim_for=timedelta(minutes=5)))
        self.taken_mid_send.append((message_id, [m.id for m in claimed]))
        time.sleep(self.delay)  # blocks this server's loop, as a slow server would
        self.received.append(message_id)
        return "250 OK"


def test_a_claim_does_not_expire_while_its_mail_is_being_sent(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    for n in range(3):
        desk.deliver(mail(f"user{n}@example.com", f"Problem {n}", "help"))
    rows = desk.outbox("acknowledgement")
    ids = {r.message_id: r.id for r in rows}
    # The batch takes longer than the claim: each mail 1.2 s, the claim 2 s.
    sink = _SlowSink(desk.factory, delay=1.2)
    controller = Controller(sink, hostname=HOST, port=free_port())
    controller.start()
    try:
        policy = outbox.RetryPolicy(claim_for=timedelta(seconds=2))
        send_once(desk.factory, SmtpSettings(host=HOST, port=controller.port), worker="slow", policy=policy)
    finally:
        controller.stop()
    # Nobody could claim the mail on the wire, and a mail another sender took over was not sent here.
    for in_flight, taken in sink.taken_mid_send:
        assert ids[in_flight] not in taken
    taken_over = {outbox_id for _, taken in sink.taken_mid_send for outbox_id in taken}
    assert not taken_over & {ids[m] for m in sink.received}
    assert len(sink.received) + len(taken_over) == len(rows)
    for row in rows:
        final = _row(desk, row.id)
        if row.id in taken_over:
            assert final.status is OutboxStatus.SENDING and final.claimed_by == "other"
        else:
            assert final.status is OutboxStatus.SENT and final.claimed_by == "slow"


def test_outbound_headers(sqlite_session_factory, tmp_path) -> None:
    desk = make_desk(sqlite_session_factory, tmp_path)
    first = desk.deliver(mail())
    [(rcpt, ack)] = desk.sent("acknowledgement")
    assert ack["Auto-Submitted"] == "auto-replied" and ack["X-Auto-Response-Suppress"] == "All"
    assert ack["Reply-To"].startswith(f"help+{first.ticket_id}-") and ack["Message-ID"].startswith(f"<hd.{first.ticket_id}.")
    assert ack["In-Reply-To"] and ack["References"]
    assert {p.get_content_type() for p in ack.walk()} >= {"text/plain", "text/html"}
    with desk.factory() as session:
        assert session.scalars(select(Outbox.automatic)).all() == [True]


class _StallingSink:
    """Takes longer over a mail than the sender's claim lasts, then lets another sender try to claim it."""

    def __init__(self, factory: sessionmaker, delay: float) -> None:
        self.factory = factory
        self.delay = delay
        self.taken: list[int] = []  # outbox ids "other" claimed while a mail was on the wire

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        time.sleep(self.delay)  # blocks this server's loop, as a stalled server would
        claimed = outbox.claim_due(self.factory, "other", policy=outbox.RetryPolicy(claim_for=timedelta(minutes=5)))
        self.taken.extend(m.id for m in claimed)
        return "250 OK"


def test_a_mail_on_the_wire_longer_than_the_claim_is_not_taken_over(session_factory, tmp_path) -> None:
    desk = make_desk(session_factory, tmp_path)
    ack = _one_mail(desk)
    sink = _StallingSink(desk.factory, delay=3.5)
    controller = Controller(sink, hostname=HOST, port=free_port())
    controller.start()
    try:
        policy = outbox.RetryPolicy(claim_for=timedelta(seconds=1.5))
        assert send_once(desk.factory, SmtpSettings(host=HOST, port=controller.port), worker="slow", policy=policy) == (1, 0)
    finally:
        controller.stop()
    assert sink.taken == []  # the claim was kept (renewed, or the row held) the whole time
    row = _row(desk, ack)
    assert row.status is OutboxStatus.SENT and row.claimed_by == "slow"
