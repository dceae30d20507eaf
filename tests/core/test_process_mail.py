"""The processes' mail reaches people: outbox drained to a real SMTP server on loopback."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from helpdesk.core import access, sla, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Role, TicketKind, utcnow
from helpdesk.core.settings import Settings, SlaSettings, SmtpSettings
from helpdesk.mailgateway.smtp import send_once


def _settings(sink) -> Settings:
    return Settings(
        data_dir=Path("."), database_url="sqlite://", address="help@example.org",
        smtp=SmtpSettings(host=sink.host, port=sink.port), sla=SlaSettings(manager="boss@example.org"),
        agent_addresses=("agents@example.org",),
    )


def _delivered(factory, settings, sink, n):
    _, failed = send_once(factory, settings.smtp)
    assert failed == 0
    return {tuple(m.rcpt_tos): m.message for m in sink.wait_for(n)}


def test_sla_breach_mail_reaches_agents_and_manager(sqlite_session_factory, smtp_sink):
    settings = _settings(smtp_sink)
    with transaction(sqlite_session_factory) as session:
        user = tickets.contact_for(session, "nina@example.org")
        ticket = tickets.open_ticket(session, requester=user, subject="Mail server unreachable",
                                     kind=TicketKind.INCIDENT, priority="P1")
        ticket.created_at = utcnow() - timedelta(minutes=20)
        sla.check(session, settings, utcnow())
    mails = _delivered(sqlite_session_factory, settings, smtp_sink, 2)
    assert set(mails) == {("agents@example.org",), ("boss@example.org",)}
    breach = mails[("boss@example.org",)]
    assert breach["Subject"].startswith(f"SLA BREACH: [#{ticket.id}]")
    assert breach["Auto-Submitted"] == "auto-generated"
    assert "response target" in breach.get_content()


def test_access_decision_and_fulfilment_steps_reach_the_requester(sqlite_session_factory, smtp_sink):
    settings = _settings(smtp_sink)
    with transaction(sqlite_session_factory) as session:
        user = tickets.contact_for(session, "oscar@example.org")
        approver = tickets.contact_for(session, "paula@example.org")
        approver.role = Role.APPROVER
        ticket = tickets.open_ticket(session, requester=user, subject="Access to the CRM", kind=TicketKind.ACCESS_REQUEST)
        request = access.open_request(session, settings, ticket.id, resource="CRM")
        grant = access.decide(session, settings, request, approver, True, "sales role")
    send_once(sqlite_session_factory, settings.smtp)
    received = smtp_sink.wait_for(3)
    to_user = [m.message for m in received if m.rcpt_tos == ["oscar@example.org"]]
    subjects = sorted(m["Subject"] for m in to_user)
    assert f"[#{ticket.id}] Access to CRM: approved" in subjects
    assert f"[#{grant.fulfilment_ticket_id}] Grant access to CRM for oscar@example.org: in progress" in subjects
    assert [m.rcpt_tos for m in received if "Approval needed" in m.message["Subject"]] == [["paula@example.org"]]
