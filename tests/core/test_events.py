"""Event management: alert mails and webhook alerts become events and, when they matter, incidents."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpdesk.core import events
from helpdesk.core.db import transaction
from helpdesk.core.events import Alert, EventAction, EventPayloadError
from helpdesk.core.mail import Address, ParsedMail
from helpdesk.core.models import Event, Message, Outbox, Severity, Ticket, TicketKind, TicketStatus
from helpdesk.core.rulebook import load_rulebook
from helpdesk.core.settings import EventSettings, Settings
from helpdesk.config import event_settings
from helpdesk.mailgateway.parse import parse_message
from tests.core.desk import make_desk
from tests.core.desk import mail as desk_mail

ALERTS = Path(__file__).parent / "alerts"
SETTINGS = Settings(data_dir=Path("."), database_url="sqlite://", address="help@example.org")
E, W, I = Severity.EXCEPTION, Severity.WARNING, Severity.INFORMATIONAL


def mail(name: str) -> ParsedMail:
    return parse_message((ALERTS / f"{name}.eml").read_bytes())


@pytest.mark.parametrize(
    "name, source, host, service, state, severity, recovery",
    [
        ("nagios_service_problem", "nagios", "web01.example.org", "HTTP", "CRITICAL", E, False),
        ("nagios_service_recovery", "nagios", "web01.example.org", "HTTP", "OK", I, True),
        ("nagios_host_down", "nagios", "db02.example.org", None, "DOWN", E, False),
        ("icinga2_service_warning", "icinga", "fs03.example.org", "disk /var", "WARNING", W, False),
        ("icinga2_host_recovery", "icinga", "gw01.example.org", None, "UP", I, True),
        ("zabbix_problem", "zabbix", "app07", "High CPU utilization (over 90% for 5m)", "PROBLEM", E, False),
        ("zabbix_resolved", "zabbix", "app07", "High CPU utilization (over 90% for 5m)", "RESOLVED", I, True),
        ("alertmanager_firing", "alertmanager", "db01.example.org", "InstanceDown", "firing", E, False),
        ("alertmanager_resolved", "alertmanager", "db01.example.org", "InstanceDown", "resolved", I, True),
        ("monit_failed", "monit", "web02.example.org", "nginx", "Connection failed", E, False),
        ("monit_succeeded", "monit", "web02.example.org", "nginx", "Connection succeeded", I, True),
        ("monit_action_done", "monit", "web02.example.org", "nginx", "Action done", I, True),
        ("nagios_custom_subject", "nagios", "web01.example.org", "HTTP", "CRITICAL", E, False),
        ("nagios_recovery_under_problem_subject", "nagios", "web01.example.org", "HTTP", "OK", I, True),
        ("icinga1_classic_problem", "icinga", "fs03.example.org", "disk /var", "WARNING", W, False),
        ("icinga1_classic_host_recovery", "icinga", "db02.example.org", None, "UP", I, True),
        ("cron_output", "cron", "backup01", "/usr/local/sbin/nightly-backup.sh", "output", I, False),
        ("logwatch", "logwatch", "mail01", "logwatch", "report", I, False),
    ],
)
def test_recognises_monitoring_mail(name, source, host, service, state, severity, recovery):
    alert = events.parse_alert(mail(name))
    assert alert is not None
    assert (alert.source, alert.host, alert.service, alert.state, alert.severity, alert.recovery) == (
        source, host, service, state, severity, recovery,
    )


@pytest.mark.parametrize("problem, recovery", [
    ("nagios_service_problem", "nagios_service_recovery"),
    ("zabbix_problem", "zabbix_resolved"),
    ("alertmanager_firing", "alertmanager_resolved"),
    ("monit_failed", "monit_succeeded"),
    ("monit_failed", "monit_action_done"),
    ("nagios_service_problem", "nagios_recovery_under_problem_subject"),
    ("nagios_custom_subject", "nagios_service_recovery"),
])
def test_problem_and_its_recovery_share_a_fingerprint(problem, recovery):
    assert events.parse_alert(mail(problem)).fingerprint == events.parse_alert(mail(recovery)).fingerprint


@pytest.mark.parametrize("subject, service, state, severity, recovery", [
    ("PROBLEM Service Alert: web01/HTTP is CRITICAL", "HTTP", "CRITICAL", E, False),
    ("[PROBLEM] Service Alert: web01/HTTP is WARNING", "HTTP", "WARNING", W, False),
    ("RECOVERY Service Alert: web01/HTTP is OK", "HTTP", "OK", I, True),
    ("[RECOVERY] Host Alert: web01 is UP", None, "UP", I, True),
])
def test_nagios_subjects_without_stars_are_alerts(subject, service, state, severity, recovery):
    # Custom notification commands drop the "**" or write "[PROBLEM]"; the words are still Nagios's own.
    alert = events.parse_alert(ParsedMail(from_=Address("nagios@mon01.example.org"), subject=subject, text=""))
    assert alert is not None
    assert (alert.source, alert.host, alert.service, alert.state, alert.severity, alert.recovery) == (
        "nagios", "web01", service, state, severity, recovery,
    )


@pytest.mark.parametrize("subject, body", [
    ("Problem: my printer prints blank pages", "Hi, since this morning the printer on floor 2 ..."),
    ("[PROBLEM] VPN on my laptop is DOWN!", "Can someone help? Thanks, Tom"),
    ("Cron job question", "How do I schedule a cron job on the build server?"),
    ("Re: ** PROBLEM ** with my mailbox", "It is full again."),
    ("Fwd: ** PROBLEM Service Alert: web01/HTTP is CRITICAL **", "Is this why the intranet is slow?"),
    ("Problem service alert: my laptop is down", "It will not start."),
    ("PROBLEM Service Alert: web01/HTTP is CRITICAL, is that why the intranet is slow?", "Tom"),
])
def test_people_writing_about_problems_are_not_alerts(subject, body):
    assert events.parse_alert(ParsedMail(from_=Address("tom@example.org"), subject=subject, text=body)) is None


def test_icinga_sender_makes_a_thin_icinga_subject_an_alert():
    # A custom Icinga template with neither "Icinga" nor "Monitoring on" in the body: the sender says it.
    def alert(sender: str) -> Alert | None:
        return events.parse_alert(ParsedMail(from_=Address(sender), subject="[PROBLEM] load on app01 is WARNING!",
                                             text="load average: 12.30, 11.80, 9.10"))

    found = alert("icinga@mon01.example.org")
    assert found is not None
    assert (found.source, found.host, found.service, found.severity) == ("icinga", "app01", "load", W)
    assert alert("tom@example.org") is None


def _handle(session, name: str):
    parsed = mail(name)
    return events.handle_alert(session, SETTINGS, events.parse_alert(parsed), mail=parsed)


def test_problem_opens_one_incident_repeats_append_and_recovery_resolves(session_factory):
    with transaction(session_factory) as session:
        first = _handle(session, "nagios_service_problem")
        assert first.action is EventAction.OPENED
        incident = first.ticket
        assert incident.kind is TicketKind.INCIDENT and incident.category == "monitoring"
        assert incident.priority == "P2" and incident.due_at is not None
        for n in (2, 3):
            again = _handle(session, "nagios_service_problem")
            assert (again.action, again.ticket.id, again.repeats) == (EventAction.APPENDED, incident.id, n)
        other = _handle(session, "nagios_host_down")
        assert other.action is EventAction.OPENED and other.ticket.id != incident.id

        done = _handle(session, "nagios_service_recovery")
        assert (done.action, done.ticket.id) == (EventAction.RESOLVED, incident.id)
        assert incident.status is TicketStatus.RESOLVED
        notes = [m.text for m in incident.messages if m.internal]
        assert notes and notes[-1].startswith("Recovered:")
        assert len([m for m in incident.messages if not m.internal]) == 4  # three problems and the recovery
        assert session.scalar(select(func.count()).select_from(Outbox)) == 0  # never an acknowledgement

        # A new problem after the recovery is a new incident.
        fresh = _handle(session, "nagios_service_problem")
        assert fresh.action is EventAction.OPENED and fresh.ticket.id not in (incident.id, other.ticket.id)


def test_informational_and_orphan_recoveries_are_recorded_only(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        for name in ("cron_output", "logwatch", "zabbix_resolved", "icinga2_host_recovery"):
            outcome = _handle(session, name)
            assert (outcome.action, outcome.ticket) == (EventAction.RECORDED, None)
        assert session.scalar(select(func.count()).select_from(Ticket)) == 0
        listed = events.list_events(session)
        assert [e["source"] for e in listed] == ["icinga", "zabbix", "logwatch", "cron"]
        assert set(listed[0]) >= {"source", "host", "service", "state", "severity", "fingerprint", "ticket"}
        assert listed[0]["ticket"] is None and listed[0]["severity"] == "informational"


def test_list_events_names_the_incident(sqlite_session_factory):
    with transaction(sqlite_session_factory) as session:
        opened = _handle(session, "zabbix_problem")
        _handle(session, "zabbix_resolved")
        listed = events.list_events(session)
        assert [(e["state"], e["ticket"]) for e in listed] == [("RESOLVED", opened.ticket.id), ("PROBLEM", opened.ticket.id)]


WEBHOOK = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "status": "firing",
    "receiver": "helpdesk",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "job": "api"},
    "externalURL": "http://alertmanager.example.org:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "instance": "api01.example.org:8080", "job": "api",
                       "severity": "critical"},
            "annotations": {"summary": "5xx rate above 5% on api01"},
            "startsAt": "2026-11-25T12:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "a1b2c3d4e5f60708",
        },
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "instance": "api02.example.org:8080", "job": "api",
                       "severity": "warning"},
            "annotations": {"summary": "5xx rate above 1% on api02"},
            "startsAt": "2026-11-25T12:01:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "0807f6e5d4c3b2a1",
        },
    ],
}


def test_alertmanager_webhook_opens_and_resolves_per_alert(session_factory):
    alerts = events.alerts_from_alertmanager(WEBHOOK)
    assert [(a.host, a.service, a.severity) for a in alerts] == [
        ("api01.example.org", "HighErrorRate", E), ("api02.example.org", "HighErrorRate", W),
    ]
    with transaction(session_factory) as session:
        outcomes = [events.handle_alert(session, SETTINGS, a) for a in alerts]
        assert [o.action for o in outcomes] == [EventAction.OPENED, EventAction.OPENED]
        assert [o.ticket.priority for o in outcomes] == ["P2", "P4"]
        resolved = dict(WEBHOOK, status="resolved", alerts=[dict(WEBHOOK["alerts"][0], status="resolved")])
        (back,) = events.alerts_from_alertmanager(resolved)
        done = events.handle_alert(session, SETTINGS, back)
        assert (done.action, done.ticket.id) == (EventAction.RESOLVED, outcomes[0].ticket.id)
        assert outcomes[1].ticket.status is TicketStatus.NEW
        assert outcomes[0].ticket.requester.email == events.WEBHOOK_SENDER


@pytest.mark.parametrize("payload", [{}, {"alerts": "x"}, {"alerts": [{"status": "firing"}]}, []])
def test_webhook_rejects_what_is_not_alertmanager_json(payload):
    with pytest.raises(EventPayloadError):
        events.alerts_from_alertmanager(payload)


def test_two_workers_with_the_same_alert_open_one_incident(session_factory):
    import threading

    alert = events.parse_alert(mail("zabbix_problem"))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                with transaction(session_factory) as session:
                    events.handle_alert(session, SETTINGS, alert)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with transaction(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1
        assert session.scalar(select(func.count()).select_from(Event).where(Event.ticket_id.is_not(None))) == 12


MONITORING_MAIL = [
    # (sender, subject, body, what intake makes of it)
    ("nagios@mon01.example.org", "PROBLEM Service Alert: web01/HTTP is CRITICAL", "Host: web01\nState: CRITICAL\n",
     "event nagios web01 CRITICAL: opened"),
    ("icinga@mon01.example.org", "[PROBLEM] load on app01 is WARNING!", "load average: 12.30\n",
     "event icinga app01 WARNING: opened"),
    ("zabbix@zbx.example.org", "Nightly", "Backup of db01 failed.\n", None),  # no parser reads it: a plain ticket
]


@pytest.mark.parametrize("sender, subject, body, reason", MONITORING_MAIL)
def test_mail_the_rules_call_an_event_is_never_acknowledged(sqlite_session_factory, tmp_path, sender, subject, body,
                                                            reason):
    desk = make_desk(sqlite_session_factory, tmp_path)
    result = desk.deliver(desk_mail(sender, subject, body))
    assert result.ticket_id is not None and result.reason == reason
    assert desk.ticket(result.ticket_id)["kind"] == "incident"
    assert desk.outbox("acknowledgement") == []
    # A person's mail still is acknowledged.
    person = desk.deliver(desk_mail("alice@example.com", "Printer on floor 3 is jammed", "Error 42."))
    assert [row.recipients for row in desk.outbox("acknowledgement")] == [["alice@example.com"]]
    assert person.ticket_id != result.ticket_id


LOGWATCH_BANNER = " ################### Logwatch 7.8 (01/22/23) ####################\n Processing Initiated: today\n"


@pytest.mark.parametrize("sender, name, headers, body, source", [
    ("bob@example.org", "", {}, "Hundreds of failed root logins on db01 since yesterday!", None),
    ("bob@example.org", "", {}, LOGWATCH_BANNER, "logwatch"),  # forwarded report, banner intact
    ("logwatch@db01.example.org", "", {}, "SSHD: 14 failed logins", "logwatch"),
    ("admin@db01.example.org", "", {"auto-submitted": ["auto-generated"]}, "SSHD: 14 failed logins", "logwatch"),
])
def test_logwatch_subject_is_a_report_only_from_logwatch(sender, name, headers, body, source):
    parsed = ParsedMail(from_=Address(sender, name), subject="Logwatch for db01 shows hundreds of failed root logins",
                        text=body, headers=headers)
    alert = events.parse_alert(parsed)
    assert (alert.source if alert else None) == source


@pytest.mark.parametrize("sender, name, headers, source", [
    ("bob@example.org", "Bob", {}, None),
    ("ops@backup01.example.org", "Cron Daemon", {}, "cron"),
    ("ops@backup01.example.org", "", {"x-cron-env": ["<SHELL=/bin/sh>"]}, "cron"),
    ("root@backup01.example.org", "", {}, "cron"),
])
def test_cron_subject_is_cron_output_only_from_cron(sender, name, headers, source):
    parsed = ParsedMail(from_=Address(sender, name), subject="Cron <root@backup01> /usr/local/sbin/backup.sh",
                        text="done", headers=headers)
    alert = events.parse_alert(parsed)
    assert (alert.source if alert else None) == source


def test_a_persons_logwatch_subject_opens_a_ticket(sqlite_session_factory, tmp_path):
    desk = make_desk(sqlite_session_factory, tmp_path)
    result = desk.deliver(desk_mail("bob@example.org", "Logwatch for db01 shows hundreds of failed root logins",
                                    "Someone is trying root on db01 all night, see the attached report."))
    assert result.ticket_id is not None and result.created
    assert desk.ticket(result.ticket_id)["subject"] == "Logwatch for db01 shows hundreds of failed root logins"


def _alertmanager_mail(subject: str, instance: str) -> ParsedMail:
    body = f"Labels:\nalertname = HighLatency\ninstance = {instance}\njob = api\nseverity = critical\n"
    return ParsedMail(from_=Address("alertmanager@prom.example.org"), subject=subject, text=body)


def test_alertmanager_group_is_one_incident_whatever_its_common_labels(sqlite_session_factory):
    # The default subject ends in the group's common labels, which change as alerts join and leave.
    group = [
        _alertmanager_mail("[FIRING:1] HighLatency (api web01:9100 critical)", "web01:9100"),
        _alertmanager_mail("[FIRING:2] HighLatency (api critical)", "web02:9100"),
        _alertmanager_mail("[RESOLVED] HighLatency (api critical)", "web01:9100"),
    ]
    other = _alertmanager_mail("[FIRING:1] DiskFull (api web01:9100 critical)", "web01:9100")
    alerts = [events.parse_alert(m) for m in group]
    assert len({a.fingerprint for a in alerts}) == 1
    assert events.parse_alert(other).fingerprint != alerts[0].fingerprint
    with transaction(sqlite_session_factory) as session:
        outcomes = [events.handle_alert(session, SETTINGS, a, mail=m) for a, m in zip(alerts, group)]
        assert [o.action for o in outcomes] == [EventAction.OPENED, EventAction.APPENDED, EventAction.RESOLVED]
        assert {o.ticket.id for o in outcomes} == {outcomes[0].ticket.id}
        assert session.scalar(select(func.count()).select_from(Ticket).where(Ticket.status != TicketStatus.RESOLVED)) == 0


def test_an_alert_incident_takes_its_priority_from_the_configured_matrix(sqlite_session_factory, tmp_path) -> None:
    (tmp_path / "priority.toml").write_text("matrix = [\n" + '  ["P5", "P5", "P5"],\n' * 3 + "]\n")
    settings = Settings(data_dir=tmp_path, database_url="sqlite://", address="help@example.org",
                        rulebook=load_rulebook(tmp_path))
    alert = events.parse_alert(mail("nagios_service_problem"))
    assert alert is not None and alert.severity is Severity.EXCEPTION
    with transaction(sqlite_session_factory) as session:
        outcome = events.handle_alert(session, settings, alert)
        assert outcome.ticket is not None and outcome.ticket.priority == "P5"
    with transaction(sqlite_session_factory) as session:  # the shipped ITIL matrix otherwise
        other = events.parse_alert(mail("nagios_host_down"))
        assert other is not None
        assert events.handle_alert(session, SETTINGS, other).ticket.priority == "P2"  # type: ignore[union-attr]


@pytest.mark.parametrize("subject, host, service, state, recovery", [
    ("PROBLEM - web01 - HTTP is CRITICAL", "web01", "HTTP", "CRITICAL", False),
    ("RECOVERY - web01 - HTTP is OK", "web01", "HTTP", "OK", True),
    ("PROBLEM - db02 is DOWN", "db02", None, "DOWN", False),
    ("RECOVERY - db02 is UP", "db02", None, "UP", True),
])
def test_icinga1_classic_subjects_are_alerts_without_body_fields(subject, host, service, state, recovery):
    alert = events.parse_alert(ParsedMail(from_=Address("icinga@mon02.example.org"), subject=subject, text=""))
    assert alert is not None
    assert (alert.source, alert.host, alert.service, alert.state, alert.recovery) == ("icinga", host, service, state,
                                                                                    recovery)


@pytest.mark.parametrize("subject, body", [
    ("PROBLEM - my laptop - it is DOWN", "It will not start."),  # not Nagios's words for a state
    ("Re: [ACME NOC] web01.example.org: HTTP needs attention",  # a person answering an alert, quoting it
     "Is this why the intranet is slow?\n\n> Notification Type: PROBLEM\n> Service: HTTP\n> Host: web01\n> State: CRITICAL\n"),
    ("Server question", "Host: web01\nState: CRITICAL?\nWhat does this mean?"),  # no notification type
])
def test_people_writing_nagios_words_are_not_alerts(subject, body):
    assert events.parse_alert(ParsedMail(from_=Address("tom@example.org"), subject=subject, text=body)) is None


def test_a_recovery_body_under_a_problem_subject_resolves_the_incident(sqlite_session_factory, tmp_path):
    desk = make_desk(sqlite_session_factory, tmp_path)
    opened = desk.deliver((ALERTS / "nagios_custom_subject.eml").read_bytes())
    assert opened.reason == "event nagios web01.example.org CRITICAL: opened"
    done = desk.deliver((ALERTS / "nagios_recovery_under_problem_subject.eml").read_bytes())
    assert (done.ticket_id, done.reason) == (opened.ticket_id, "event nagios web01.example.org OK: resolved")
    assert desk.ticket(opened.ticket_id)["status"] == "resolved"
    assert desk.outbox("acknowledgement") == []


def test_monit_action_done_after_a_restart_resolves_the_failure(sqlite_session_factory, tmp_path):
    desk = make_desk(sqlite_session_factory, tmp_path)
    failed = desk.deliver((ALERTS / "monit_failed.eml").read_bytes())
    done = desk.deliver((ALERTS / "monit_action_done.eml").read_bytes())
    assert done.ticket_id == failed.ticket_id and done.reason.endswith(": resolved")
    assert desk.ticket(failed.ticket_id)["status"] == "resolved"


def _sources(**tables: dict[str, object]) -> EventSettings:
    return event_settings(tables)


def test_an_integration_can_be_turned_off(sqlite_session_factory, tmp_path):
    off = _sources(nagios={"enabled": False})
    assert events.parse_alert(mail("nagios_service_problem"), off) is None
    assert events.parse_alert(mail("zabbix_problem"), off) is not None
    desk = make_desk(sqlite_session_factory, tmp_path, events=off)
    result = desk.deliver((ALERTS / "nagios_service_problem.eml").read_bytes())
    assert result.created and not (result.reason or "").startswith("event")  # a plain ticket, by the rules


def test_a_sender_pattern_limits_an_integration_to_its_senders():
    only_mon01 = _sources(nagios={"sender": r"nagios@mon01\.example\.org"}, icinga={"sender": r".*@mon0[12]\.example\.org"})
    assert events.parse_alert(mail("nagios_service_problem"), only_mon01) is not None
    forged = replace(mail("nagios_service_problem"), from_=Address("nagios@attacker.example.net"))
    assert events.parse_alert(forged, only_mon01) is None
    # The Icinga pattern vouches for a custom template with thin text, as "icinga" in the sender does.
    thin = ParsedMail(from_=Address("ops@mon02.example.org"), subject="[PROBLEM] load on app01 is WARNING!", text="12.3")
    assert events.parse_alert(thin) is None
    found = events.parse_alert(thin, only_mon01)
    assert found is not None and found.source == "icinga"
