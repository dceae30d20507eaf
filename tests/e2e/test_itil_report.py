"""`helpdesk report --json` after the processes ran on real mail: volumes, SLA, mean times, backlog."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.itil_desk import add_users, desk, mail, to
from tests.e2e.test_itil_events import _nagios
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

AGENT = "agent@example.org"
APPROVER = "approver@example.org"


def test_report_counts_what_the_mail_made(dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent", APPROVER: "approver"})
        d.deliver(
            mail("alice@example.com", "Whole department cannot work, urgent", "The file server is gone."),
            mail("bob@example.com", "Please install Visio", "For the network diagrams."),
            mail("carol@example.com", "Access to the finance share", "I moved to the finance team."),
            _nagios("PROBLEM", "CRITICAL", 1, "connect to port 80: Connection refused"),
        )
        by_subject = {t["subject"]: t for t in d.tickets()}
        outage, visio = by_subject["Whole department cannot work, urgent"], by_subject["Please install Visio"]
        sent = d.send()
        [notified] = [m for m in to(sent, AGENT) if f"[#{outage['id']}]" in m["Subject"]]
        [ask] = [m for m in to(sent, APPROVER) if f"[#{visio['id']}]" in m["Subject"]]

        # The agent answers and resolves the outage by mail; the approver approves by mail.
        d.deliver(
            mail(AGENT, "", "#resolve\nWe restarted the file server; it works again.", reply_to=notified),
            mail(APPROVER, "", "#approve", reply_to=ask),
        )
        statuses = {t["subject"]: t["status"] for t in d.tickets()}
        assert statuses["Whole department cannot work, urgent"] == "resolved"

        report = d.cli_json("report", "--json")
        assert report["tickets"] == 4
        assert report["by_kind"] == {"incident": 2, "service_request": 1, "access_request": 1}
        assert report["by_category"]["software"] == report["by_category"]["monitoring"] == 1
        assert report["by_category"]["access"] == 1
        assert report["by_status"]["in_progress"] == 1  # Visio, approved
        assert report["access"]["pending"] == 1
        assert sum(report["by_priority"].values()) == report["tickets"]
        assert report["by_priority"][outage["priority"]] >= 1
        # The outage was answered and resolved within its targets; everything else still runs.
        response = report["sla"]["response"]
        assert (response["met"], response["breached"], response["compliance"]) == (1, 0, 1.0)
        assert response["running"] == report["tickets"] - 1
        assert report["sla"]["resolution"]["met"] == 1
        assert 0 <= report["mean_minutes_to_first_response"] < 5
        assert 0 <= report["mean_minutes_to_resolution"] < 5
        open_tickets = sum(1 for s in statuses.values() if s not in ("resolved", "closed"))
        assert report["backlog"] == {"open": open_tickets, "by_age": {"<1d": open_tickets, "1-3d": 0, "3-7d": 0,
                                                                     "7-30d": 0, ">30d": 0}}
        assert report["events"] == {"total": 1, "by_severity": {"exception": 1}}
