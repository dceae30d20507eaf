"""Incident management by real mail: priority from the wording, SLA due date, warning then breach escalation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from helpdesk.core import audit, sla
from helpdesk.core.models import Ticket, utcnow
from tests.e2e.itil_desk import Desk, add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

AGENT = "agent@example.org"
MANAGER = "boss@example.org"


def _age(d: Desk, ticket_id: int, by: timedelta) -> None:
    """Let time pass for one ticket: its clocks count from creation, so move that back."""
    with d.session() as s:
        created = s.get(Ticket, ticket_id).created_at  # type: ignore[union-attr]
        s.execute(update(Ticket).where(Ticket.id == ticket_id).values(created_at=created - by))


def test_department_outage_is_a_high_priority_incident_escalated_once_per_threshold(
    dovecot: DovecotServer, smtp_sink: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    # P2 answers within 1 minute: 48 s is the warning, 60 s the breach.
    with desk(tmp_path, database_url, dovecot, smtp_sink, HELPDESK_SLA_TARGETS="P2=1m/10m",
              HELPDESK_SLA_MANAGER=MANAGER) as d:
        add_users(d, {AGENT: "agent"})
        d.deliver(mail("Alice Example <alice@example.com>", "Whole department cannot work, urgent",
                       "Since 9:00 the file server does not answer; the whole department cannot work."))

        [ticket] = d.tickets()
        assert ticket["kind"] == "incident"
        assert ticket["priority"] in ("P1", "P2")
        assert ticket["due_at"] - ticket["created_at"] == timedelta(minutes=10)  # its resolution target
        why = {c["rule"]: c["reason"] for c in ticket["classification"]}
        assert "whole department" in why["impact-signal"]
        assert "urgent" in why["urgency-signal"]

        first = d.send()
        [ack] = to(first, "alice@example.com")
        assert f"priority {ticket['priority']}" in text(ack)
        assert to(first, AGENT)  # the new-ticket notification

        _age(d, ticket["id"], timedelta(seconds=50))
        [warning] = d.cli_json("sla", "--check", "--json")
        assert (warning["metric"], warning["level"], warning["notified"]) == ("response", "warning", [AGENT])
        warned = d.send()
        assert [m.rcpt_tos for m in warned] == [[AGENT]]
        assert warned[0].message["Subject"].startswith("SLA warning")

        _age(d, ticket["id"], timedelta(seconds=20))
        [breach] = d.cli_json("sla", "--check", "--json")
        assert (breach["metric"], breach["level"]) == ("response", "breach")
        assert set(breach["notified"]) == {AGENT, MANAGER}
        escalated = d.send()
        [to_manager] = to(escalated, MANAGER)
        assert to_manager["Subject"].startswith("SLA BREACH")
        assert f"[#{ticket['id']}]" in to_manager["Subject"]

        # Each threshold is acted on once (the check `sla --check` runs, in-process to save a second).
        with d.session() as s:
            assert sla.check(s, d.app.settings, utcnow()) == []
        assert d.send() == []
        [audited_warning] = d.audit("sla.warning")
        [audited_breach] = d.audit("sla.breach")
        assert audited_warning.object_id == audited_breach.object_id == ticket["id"]
        assert MANAGER in audited_breach.after["notified"]  # type: ignore[index]
        with d.session() as s:
            assert audit.verify(s).ok
