"""Event management by real mail and by Alertmanager's webhook: one incident per alert, never an answer."""

from __future__ import annotations

from pathlib import Path

from helpdesk.core import users
from helpdesk.core.db import transaction
from tests.e2e.itil_desk import desk
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink
from helpdesk.web import create_app

NAGIOS = "nagios@mon01.example.org"
CRON = "root@backup01.example.org"
EVENT_FIELDS = {"source", "host", "service", "state", "severity", "fingerprint", "ticket"}


def _nagios(kind: str, state: str, n: int, info: str) -> bytes:
    return (
        f"From: {NAGIOS}\r\nTo: help@example.org\r\n"
        f"Subject: ** {kind} Service Alert: web01.example.org/HTTP is {state} **\r\n"
        f"Date: Tue, 24 Nov 2026 09:{n:02d}:03 +0100\r\nMessage-ID: <2026112408{n:02d}03.{n}@mon01.example.org>\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n***** Nagios *****\r\n\r\n"
        f"Notification Type: {kind}\r\n\r\nService: HTTP\r\nHost: web01.example.org\r\nState: {state}\r\n\r\n"
        f"Additional Info:\r\n\r\n{info}\r\n"
    ).encode()


_CRON = (
    f"From: {CRON} (Cron Daemon)\r\nTo: help@example.org\r\nSubject: Cron <root@backup01> /usr/local/sbin/backup.sh\r\n"
    "Date: Thu, 26 Nov 2026 02:30:05 +0100\r\nMessage-ID: <20261126013005.9C1E2@backup01.example.org>\r\n"
    "Auto-Submitted: auto-generated\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nbackup done, 3 files skipped\r\n"
).encode()


def _alertmanager(status: str) -> dict[str, object]:
    alert = {"status": status, "labels": {"alertname": "DiskFull", "instance": "db1.example.org:9100",
                                          "severity": "critical"},
             "annotations": {"summary": "disk / is 97% full"}, "startsAt": "2026-11-24T08:00:00Z",
             "fingerprint": "5f1e2d3c4b5a6978"}
    return {"version": "4", "status": status, "receiver": "helpdesk", "groupKey": "{}:{alertname=\"DiskFull\"}",
            "alerts": [alert]}


def test_alerts_open_update_and_resolve_one_incident_and_are_never_answered(
    dovecot: DovecotServer, smtp_sink: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    with desk(tmp_path, database_url, dovecot, smtp_sink) as d:
        # A problem opens an incident; three repeats are counted on it.
        d.deliver(_nagios("PROBLEM", "CRITICAL", 1, "connect to port 80: Connection refused"))
        [incident] = d.tickets()
        assert (incident["kind"], incident["category"], incident["status"]) == ("incident", "monitoring", "new")
        d.deliver(*(_nagios("PROBLEM", "CRITICAL", n, f"still refused ({n})") for n in (2, 3, 4)))
        assert [t["id"] for t in d.tickets()] == [incident["id"]]

        # The recovery resolves it with a note; a second recovery finds nothing open and is only recorded.
        d.deliver(_nagios("RECOVERY", "OK", 5, "HTTP OK: 200"))
        [incident] = d.tickets()
        assert incident["status"] == "resolved"
        assert any(n.startswith("Recovered:") for n in d.notes(incident["id"]))
        d.deliver(_nagios("RECOVERY", "OK", 6, "HTTP OK: 200"), _CRON)
        assert len(d.tickets()) == 1

        # Alertmanager's webhook, posted to the console.
        app = create_app(d.app.settings, d.app.factory, testing=True)
        with transaction(d.app.factory) as s:
            token = users.issue_api_token(s, users.create_user(s, "alertmanager@example.org", users.Role.AGENT, None))
        auth = {"Authorization": f"Bearer {token}"}
        firing = app.test_client().post("/api/events/alertmanager", json=_alertmanager("firing"), headers=auth)
        assert firing.status_code == 200, firing.get_data(as_text=True)
        [opened] = firing.json["events"]
        assert opened["action"] == "opened" and opened["ticket"] is not None
        again = app.test_client().post("/api/events/alertmanager", json=_alertmanager("firing"), headers=auth).json
        assert again["events"] == [{"action": "appended", "ticket": opened["ticket"]}]

        events = d.cli_json("events", "--json")
        assert all(EVENT_FIELDS <= set(e) for e in events)
        by_source: dict[str, list[dict[str, object]]] = {}
        for e in reversed(events):  # oldest first
            by_source.setdefault(str(e["source"]), []).append(e)
        nagios = by_source["nagios"]
        assert [(e["state"], e["severity"], e["ticket"]) for e in nagios] == [
            *[("CRITICAL", "exception", incident["id"])] * 4,
            ("OK", "informational", incident["id"]),
            ("OK", "informational", None),  # recovery with no open incident: recorded only
        ]
        assert {(e["host"], e["service"]) for e in nagios} == {("web01.example.org", "HTTP")}
        assert len({e["fingerprint"] for e in nagios}) == 1
        [cron] = by_source["cron"]
        assert (cron["severity"], cron["ticket"], cron["host"]) == ("informational", None, "backup01")
        webhook = by_source["alertmanager"]
        assert [(e["host"], e["service"], e["ticket"]) for e in webhook] == [
            ("db1.example.org", "DiskFull", opened["ticket"])] * 2
        kinds = {t["id"]: t["kind"] for t in d.tickets()}
        assert kinds == {incident["id"]: "incident", opened["ticket"]: "incident"}

        # Monitoring mail is never acknowledged.
        d.send()
        assert not any(NAGIOS in m.rcpt_tos or CRON in m.rcpt_tos for m in smtp_sink.messages)
