"""Event management: alerts from monitoring tools become events, and incidents when they matter.

Informational events are recorded only. Warnings and exceptions open one incident per
fingerprint; repeats are appended to it and counted; the recovery resolves it with a note.
Nothing here ever sends an acknowledgement to a monitoring tool.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk.core import sla, tickets
from helpdesk.core.classify import RuleSet, classify
from helpdesk.core.locks import serialise
from helpdesk.core.mail import ParsedMail
from helpdesk.core.models import Event, Severity, Ticket, TicketKind, TicketStatus, aware
from helpdesk.core.priority import matrix_for, priority_for
from helpdesk.core.settings import EventSettings, Settings

# Alerts that arrive over HTTP have no sender: their incidents are "from" an address that never receives mail.
WEBHOOK_SENDER = "alertmanager@monitoring.invalid"
CATEGORY = "monitoring"


class EventPayloadError(ValueError):
    """A webhook body that is not Alertmanager's JSON."""


@dataclass(frozen=True)
class Alert:
    source: str  # nagios, icinga, zabbix, alertmanager, monit, cron, logwatch
    host: str
    service: str | None
    state: str  # as the tool says it
    severity: Severity
    recovery: bool = False
    summary: str = ""
    # What makes two alerts "the same problem"; default: source, host and service.
    key: str | None = field(default=None, compare=False)
    # How the mail was read: "subject" (the tool's own), "classic subject", or the fallback "body fields".
    via: str = field(default="subject", compare=False)

    @property
    def fingerprint(self) -> str:
        key = self.key or f"{self.host}|{self.service or ''}"
        return hashlib.sha256(f"{self.source}|{key}".lower().encode()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        """The ``alert`` object of ``helpdesk parse --json``."""
        return {"source": self.source, "host": self.host, "service": self.service, "state": self.state,
                "severity": self.severity.value, "recovery": self.recovery, "fingerprint": self.fingerprint,
                "via": self.via}


# --- recognising alert mail -------------------------------------------------------------

# Does the configured sender pattern of this integration match the mail's sender?
_Vouched = Callable[[str], bool]

# "** PROBLEM Service Alert: h/s is CRITICAL **", and the same without the stars or as "[PROBLEM] Service Alert: ...".
_NAGIOS_SUBJECT = re.compile(
    r"^\s*(?:(?P<stars>\*\*)\s*|\[(?=[A-Z]+\]))?(?P<type>[A-Z]+)\]?\s+(?P<kind>Service|Host)\s+Alert:\s*(?P<what>.+?)"
    r"\s+is\s+(?P<state>[A-Z]+)\s*(?(stars)\*\*|!?\s*$)",
    re.I,
)
# Without the stars only the exact words of Nagios/Icinga 1 make it an alert, not a person's "Problem host alert: ...".
_NAGIOS_TYPES = frozenset({"PROBLEM", "RECOVERY", "ACKNOWLEDGEMENT", "FLAPPINGSTART", "FLAPPINGSTOP", "FLAPPINGDISABLED",
                           "DOWNTIMESTART", "DOWNTIMEEND", "DOWNTIMECANCELLED", "CUSTOM"})
_NAGIOS_STATES = frozenset({"OK", "WARNING", "CRITICAL", "UNKNOWN", "UP", "DOWN", "UNREACHABLE"})
# Icinga 1.x / Nagios classic custom commands: "PROBLEM - host - service is STATE", "RECOVERY - host is UP".
_CLASSIC_SERVICE = re.compile(r"^(?P<type>[A-Z]+)\s+-\s+(?P<host>\S+)\s+-\s+(?P<service>.+?)\s+is\s+(?P<state>[A-Z]+)!?\s*$")
_CLASSIC_HOST = re.compile(r"^(?P<type>[A-Z]+)\s+-\s+(?P<host>\S+)\s+is\s+(?P<state>[A-Z]+)!?\s*$")
_NOTIFICATION_TYPE = re.compile(r"^[ \t]*Notification Type[ \t]*[:=]", re.M | re.I)
_REPLY_OR_FORWARD = re.compile(r"^\s*(re|aw|sv|fwd?|wg|tr|rv)\s*:", re.I)
_ICINGA2_SERVICE = re.compile(r"^\[(?P<type>[A-Z]+)\]\s+(?P<service>.+?)\s+on\s+(?P<host>\S+)\s+is\s+(?P<state>[A-Z]+)!?\s*$")
_ICINGA2_HOST = re.compile(r"^\[(?P<type>[A-Z]+)\]\s+Host\s+(?P<host>\S+)\s+is\s+(?P<state>[A-Z]+)!?\s*$")
_ZABBIX_SUBJECT = re.compile(r"^(?P<type>Problem|Resolved(?: in [^:]+)?|Updated problem(?: in [^:]+)?):\s*(?P<name>.+)$", re.I)
_AM_SUBJECT = re.compile(r"^\[(?:FIRING:(?P<n>\d+)|(?P<resolved>RESOLVED))\]\s*(?P<group>.+)$", re.I)
_AM_COMMON_LABELS = re.compile(r"\s*\([^()]*\)\s*$")
_MONIT_SUBJECT = re.compile(r"^monit alert\s*--\s*(?P<event>.+?)\s*$", re.I)
_CRON_SUBJECT = re.compile(r"^Cron\s+<(?P<user>[^@>]+)@(?P<host>[^>]+)>\s*(?P<command>.*)$")
_LOGWATCH_SUBJECT = re.compile(r"^Logwatch for (?P<host>\S+)", re.I)

_NAGIOS_PROBLEM = {"CRITICAL": Severity.EXCEPTION, "DOWN": Severity.EXCEPTION, "UNREACHABLE": Severity.EXCEPTION,
                   "WARNING": Severity.WARNING, "UNKNOWN": Severity.WARNING}
_ZABBIX_SEVERITY = {"disaster": Severity.EXCEPTION, "high": Severity.EXCEPTION, "average": Severity.EXCEPTION,
                    "warning": Severity.WARNING, "information": Severity.INFORMATIONAL,
                    "not classified": Severity.INFORMATIONAL}
_AM_SEVERITY = {"critical": Severity.EXCEPTION, "page": Severity.EXCEPTION, "error": Severity.EXCEPTION,
                "major": Severity.EXCEPTION, "warning": Severity.WARNING, "minor": Severity.WARNING,
                "info": Severity.INFORMATIONAL, "informational": Severity.INFORMATIONAL, "none": Severity.INFORMATIONAL}


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"^[ \t]*{re.escape(name)}[ \t]*[:=][ \t]*(.+?)[ \t]*$", text, re.M | re.I)
    return m.group(1) if m else None


def _host(instance: str) -> str:
    """web01.example.org:9100 -> web01.example.org (an exporter's port is not part of the host)."""
    return re.sub(r":\d+$", "", instance.strip())


def _nagios_kind(type_: str, state: str) -> tuple[Severity, bool]:
    type_, state = type_.upper(), state.upper()
    if type_ == "RECOVERY" or state in {"OK", "UP"}:
        return Severity.INFORMATIONAL, True
    if type_ == "PROBLEM":
        return _NAGIOS_PROBLEM.get(state, Severity.WARNING), False
    # ACKNOWLEDGEMENT, FLAPPINGSTART, DOWNTIMESTART, CUSTOM ...: news, not a problem.
    return Severity.INFORMATIONAL, False


def _parse_nagios(mail: ParsedMail, vouched: _Vouched) -> Alert | None:
    """Nagios/Icinga 1 by their subject (the default one, or the classic custom commands')."""
    subject = mail.subject.strip()
    if m := _NAGIOS_SUBJECT.search(subject):
        if not m["stars"] and (m["type"] not in _NAGIOS_TYPES or m["state"] not in _NAGIOS_STATES):
            return None
        host, _, service = m["what"].partition("/") if m["kind"].lower() == "service" else (m["what"], "", "")
        return _nagios_alert(mail, vouched, m["type"], host, service or None, m["state"])
    m = _CLASSIC_SERVICE.match(subject) or _CLASSIC_HOST.match(subject)
    if m and m["type"] in _NAGIOS_TYPES and m["state"] in _NAGIOS_STATES:
        alert = _nagios_alert(mail, vouched, m["type"], m["host"], m.groupdict().get("service"), m["state"])
        return replace(alert, via="classic subject")
    return None


def _nagios_fields(mail: ParsedMail, vouched: _Vouched) -> Alert | None:
    """A customised template: the body's Notification Type, Host and State (and Service) say it all.

    Tried last, after every tool's own subject: their bodies may carry such fields too.
    Only Nagios's own words count, at the start of a line (a quoted "> Host:" does not), and not in a reply
    or a forward: a person answering an alert is no alert.
    """
    body = mail.text
    if not _NOTIFICATION_TYPE.search(body):
        return None  # (most mail: one search instead of three)
    type_, host, state = (_field(body, name) for name in ("Notification Type", "Host", "State"))
    if _REPLY_OR_FORWARD.match(mail.subject) or not (type_ and host and state):
        return None
    type_, state = type_.split()[0].upper(), state.split()[0].upper()
    if type_ not in _NAGIOS_TYPES or state not in _NAGIOS_STATES:
        return None
    return replace(_nagios_alert(mail, vouched, type_, host, _field(body, "Service"), state), via="body fields")


def _nagios_alert(mail: ParsedMail, vouched: _Vouched, type_: str, host: str, service: str | None,
                  state: str) -> Alert:
    """The alert, the body's fields winning over the subject's words (a RECOVERY body under a PROBLEM subject)."""
    body = mail.text
    host = _field(body, "Host") or host
    service = _field(body, "Service") or service
    state = (_field(body, "State") or state).split()[0].upper()
    severity, recovery = _nagios_kind((_field(body, "Notification Type") or type_).split()[0], state)
    icinga = re.search(r"\*+\s*Icinga", body) or "icinga" in mail.sender.lower() or vouched("icinga")
    info = _field(body, "Additional Info") or _first_line_after(body, "Additional Info:") or _field(body, "Info") or ""
    source = "icinga" if icinga else "nagios"
    return Alert(source, host.strip(), service.strip() if service else None, state, severity, recovery, info)


def _first_line_after(text: str, marker: str) -> str | None:
    _, found, rest = text.partition(marker)
    if not found:
        return None
    return next((line.strip() for line in rest.splitlines() if line.strip()), None)


def _parse_icinga2(mail: ParsedMail, vouched: _Vouched) -> Alert | None:
    subject = mail.subject.strip()
    m = _ICINGA2_HOST.match(subject)
    service = None
    if m is None:
        m = _ICINGA2_SERVICE.match(subject)
        if m is None:
            return None
        service = m["service"]
    body = mail.text
    if "Monitoring on" not in body and "Icinga" not in body and "icinga" not in mail.sender.lower() and not vouched("icinga"):
        return None  # "[PROBLEM] ... is DOWN" alone is too thin to call a person's mail an alert
    state = m["state"].upper()
    severity, recovery = _nagios_kind(m["type"], state)
    info = _field(body, "Info") or _field(body, "Additional Info") or ""
    return Alert("icinga", m["host"], service, state, severity, recovery, info)


def _parse_zabbix(mail: ParsedMail, _: _Vouched) -> Alert | None:
    m = _ZABBIX_SUBJECT.match(mail.subject.strip())
    body = mail.text
    if not m or not re.search(r"Problem (started|has been resolved) at|Original problem ID|Problem name:", body):
        return None
    name = _field(body, "Problem name") or m["name"]
    host = _field(body, "Host") or ""
    recovery = m["type"].lower().startswith("resolved") or "has been resolved" in body
    level = (_field(body, "Severity") or "warning").strip()
    severity = Severity.INFORMATIONAL if recovery else _ZABBIX_SEVERITY.get(level.lower(), Severity.WARNING)
    state = "RESOLVED" if recovery else "PROBLEM"
    return Alert("zabbix", host, name.strip(), state, severity, recovery, _field(body, "Operational data") or name)


def _parse_alertmanager(mail: ParsedMail, _: _Vouched) -> Alert | None:
    m = _AM_SUBJECT.match(mail.subject.strip())
    if not m:
        return None
    body = mail.text
    labels = {k: _field(body, k) for k in ("alertname", "instance", "severity", "job")}
    group = m["group"].strip()
    service = labels["alertname"] or group.split(" ", 1)[0]
    recovery = m["resolved"] is not None
    level = (labels["severity"] or "warning").lower()
    severity = Severity.INFORMATIONAL if recovery else _AM_SEVERITY.get(level, Severity.WARNING)
    summary = _field(body, "summary") or _field(body, "description") or group
    host = _host(labels["instance"] or "")
    # One mail is one alert group: the group is what repeats and resolves. The default subject ends in
    # "(common labels)", which change as alerts join or leave the group: not part of the group's name.
    name = _AM_COMMON_LABELS.sub("", group).strip()
    return Alert("alertmanager", host, service, "resolved" if recovery else "firing", severity, recovery, summary,
                 key=f"group|{name}")


# "Action done" follows the restart/unmonitor Monit did about a failure: that failure is over.
_MONIT_RECOVERY = re.compile(r"succeeded|^exists\b|^status succeeded|^connection succeeded|^running\b|^action done", re.I)
_MONIT_INFO = re.compile(r"monit instance|monitoring (changed|disabled|enabled)|^pid changed|^ppid changed", re.I)
_MONIT_WARNING = re.compile(r"resource limit|size|timestamp|checksum|uptime", re.I)


def _parse_monit(mail: ParsedMail, _: _Vouched) -> Alert | None:
    m = _MONIT_SUBJECT.match(mail.subject.strip())
    body = mail.text
    if not m and "Your faithful employee" not in body:
        return None
    head = _field(body, "Event") or ""
    words = m["event"] if m else head
    service = None
    # Default Monit body's first line: "<Event> Service <name>"
    first = re.search(r"^\s*(?P<event>.+?)\s+Service\s+(?P<service>\S+)\s*$", body, re.M)
    event = first["event"] if first else words
    if first:
        service = first["service"]
    elif m:
        event, _space, service = words.rpartition(" ")  # `_` is the parameter
    host = _field(body, "Host") or ""
    if _MONIT_INFO.search(event):
        severity, recovery = Severity.INFORMATIONAL, False
    elif _MONIT_RECOVERY.search(event):
        severity, recovery = Severity.INFORMATIONAL, True
    elif _MONIT_WARNING.search(event):
        severity, recovery = Severity.WARNING, False
    else:
        severity, recovery = Severity.EXCEPTION, False
    summary = _field(body, "Description") or event
    return Alert("monit", host, service, event.strip(), severity, recovery, summary)


_LOGWATCH_BANNER = re.compile(r"^\s*#{5,}\s*Logwatch\b", re.M)
_SYSTEM_SENDERS = frozenset({"root", "logwatch", "cron", "daemon", "anacron"})


def _system_sent(mail: ParsedMail) -> bool:
    """Sent by cron or logwatch itself, not typed by a person (whose subject may well be "Logwatch for db01 ...")."""
    auto = (mail.header("auto-submitted") or "").split(";")[0].strip().lower()
    return (
        mail.sender.partition("@")[0] in _SYSTEM_SENDERS
        or (mail.from_ is not None and mail.from_.name.lower() == "cron daemon")
        or (auto not in ("", "no"))
        or bool(mail.headers.get("x-cron-env"))
    )


def _parse_cron(mail: ParsedMail, _: _Vouched) -> Alert | None:
    m = _CRON_SUBJECT.match(mail.subject.strip())
    if m and _system_sent(mail):
        return Alert("cron", m["host"], m["command"].strip()[:255] or None, "output", Severity.INFORMATIONAL,
                     summary=mail.text.strip()[:500])
    m = _LOGWATCH_SUBJECT.match(mail.subject.strip())
    if m and (_LOGWATCH_BANNER.search(mail.text[:5000]) or _system_sent(mail)):
        return Alert("logwatch", m["host"], "logwatch", "report", Severity.INFORMATIONAL, summary=mail.subject)
    return None


_PARSERS = (_parse_nagios, _parse_icinga2, _parse_zabbix, _parse_alertmanager, _parse_monit, _parse_cron, _nagios_fields)


def parse_alert(mail: ParsedMail, sources: EventSettings | None = None) -> Alert | None:
    """The alert a monitoring tool's mail carries, or None for any other mail.

    An integration switched off reads nothing; one with a sender pattern reads only mail from a sender
    that matches it whole (so a stranger cannot open or resolve its incidents by writing its words).
    """
    sources = sources or EventSettings()

    def vouched(source: str) -> bool:
        pattern = sources.source(source).sender
        return pattern is not None and pattern.fullmatch(mail.sender) is not None

    for parse in _PARSERS:
        alert = parse(mail, vouched)
        if alert is None:
            continue
        source = sources.source(alert.source)
        if source.enabled and (source.sender is None or vouched(alert.source)):
            return alert
    return None


def alerts_from_alertmanager(payload: dict[str, Any]) -> list[Alert]:
    """Alerts in an Alertmanager webhook body (version 4)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise EventPayloadError("expected Alertmanager's webhook JSON with an `alerts` list")
    alerts = []
    for raw in payload["alerts"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("labels"), dict):
            raise EventPayloadError("every alert needs a `labels` object")
        labels = {str(k): str(v) for k, v in raw["labels"].items()}
        annotations: dict[str, Any] = raw["annotations"] if isinstance(raw.get("annotations"), dict) else {}
        status = str(raw.get("status") or payload.get("status") or "firing").lower()
        recovery = status == "resolved"
        level = labels.get("severity", "warning").lower()
        host = _host(labels.get("instance") or labels.get("host") or labels.get("nodename") or "")
        service = labels.get("alertname") or "alert"
        alerts.append(
            Alert(
                source="alertmanager",
                host=host,
                service=service,
                state=status,
                severity=Severity.INFORMATIONAL if recovery else _AM_SEVERITY.get(level, Severity.WARNING),
                recovery=recovery,
                summary=str(annotations.get("summary") or annotations.get("description") or service),
                # Alertmanager's own per-alert fingerprint is stable across firing and resolved.
                key=f"fp|{raw['fingerprint']}" if raw.get("fingerprint") else None,
            )
        )
    return alerts


# --- handling ---------------------------------------------------------------------------


class EventAction(enum.Enum):
    RECORDED = "recorded"  # informational, or a recovery with nothing open
    OPENED = "opened"
    APPENDED = "appended"  # a repeat of an open incident
    RESOLVED = "resolved"


@dataclass(frozen=True)
class EventOutcome:
    event: Event
    action: EventAction
    ticket: Ticket | None
    repeats: int = 0  # events on the incident so far, this one included


_OPEN = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.IN_PROGRESS)


def open_incident(session: Session, fingerprint: str) -> Ticket | None:
    """The incident still open for this fingerprint, if any."""
    query = (
        select(Ticket)
        .join(Event, Event.ticket_id == Ticket.id)
        .where(Event.fingerprint == fingerprint, Ticket.status.in_(_OPEN))
        .order_by(Ticket.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def group_for(alert: Alert, rules: RuleSet) -> str | None:
    """The group the rules route this alert's incident to, for an alert that came without a mail (a webhook):
    the rules read the incident's title and the alert's summary as they would read its mail."""
    as_mail = ParsedMail(from_=None, subject=_title(alert), text=alert.summary, reply_text=alert.summary)
    return classify(as_mail, rules).group


def _title(alert: Alert) -> str:
    what = f"{alert.service} on {alert.host}" if alert.service else alert.host or alert.source
    return f"[{alert.source}] {what} is {alert.state}"


def handle_alert(
    session: Session,
    settings: Settings,
    alert: Alert,
    *,
    mail: ParsedMail | None = None,
    inbound_id: int | None = None,
    group: str | None = None,
) -> EventOutcome:
    """Record the event and open, update or resolve its incident (a new one in ``group``). Never acknowledges."""
    fingerprint = alert.fingerprint
    serialise(session)  # one incident per fingerprint, even with two workers
    event = Event(
        source=alert.source, host=alert.host[:255], service=(alert.service or None) and alert.service[:255],
        state=alert.state[:40], severity=alert.severity, recovery=alert.recovery, fingerprint=fingerprint,
        summary=alert.summary, inbound_id=inbound_id,
    )
    session.add(event)
    incident = open_incident(session, fingerprint) if alert.recovery or alert.severity is not Severity.INFORMATIONAL else None
    if alert.recovery:
        if incident is None:
            session.flush()
            return EventOutcome(event, EventAction.RECORDED, None)
        event.ticket_id = incident.id
        monitor = tickets.contact_for(session, mail.from_ if mail and mail.from_ else WEBHOOK_SENDER)
        if mail is not None:
            tickets.append_message(session, incident, tickets.message_from_mail(mail, inbound_id=inbound_id))
        tickets.add_note(session, incident, monitor, f"Recovered: {_title(alert)}. {alert.summary}".strip())
        tickets.change(session, incident, monitor.email, status=TicketStatus.RESOLVED, reason=f"{alert.source} recovery")
        return EventOutcome(event, EventAction.RESOLVED, incident, _count(session, incident))
    if alert.severity is Severity.INFORMATIONAL:
        session.flush()
        return EventOutcome(event, EventAction.RECORDED, None)
    if incident is not None:
        event.ticket_id = incident.id
        _append(session, incident, alert, mail, inbound_id)
        return EventOutcome(event, EventAction.APPENDED, incident, _count(session, incident))
    incident = _open(session, settings, alert, mail, group)
    event.ticket_id = incident.id
    _append(session, incident, alert, mail, inbound_id)
    return EventOutcome(event, EventAction.OPENED, incident, 1)


def _open(session: Session, settings: Settings, alert: Alert, mail: ParsedMail | None, group: str | None) -> Ticket:
    impact, urgency = (2, 1) if alert.severity is Severity.EXCEPTION else (3, 2)
    priority = priority_for(impact, urgency, matrix_for(settings))
    monitor = tickets.contact_for(session, mail.from_ if mail and mail.from_ and mail.sender else WEBHOOK_SENDER)
    incident = tickets.open_ticket(
        session,
        requester=monitor,
        subject=mail.subject if mail and mail.subject else _title(alert),
        kind=TicketKind.INCIDENT,
        category=CATEGORY,
        impact=impact,
        urgency=urgency,
        priority=priority,
        group=group,
        classification=[
            {
                "rule": f"event-{alert.source}",
                "reason": f"{alert.source} alert, state {alert.state}, severity {alert.severity.value}",
                "sets": {"kind": "incident", "category": CATEGORY, "priority": priority},
            }
        ],
    )
    sla.start(settings, incident)
    return incident


def _append(session: Session, incident: Ticket, alert: Alert, mail: ParsedMail | None, inbound_id: int | None) -> None:
    """Add the alert to the incident's thread: the mail itself, or a note for a webhook alert."""
    if mail is not None:
        tickets.append_message(session, incident, tickets.message_from_mail(mail, inbound_id=inbound_id))
    else:
        monitor = tickets.contact_for(session, WEBHOOK_SENDER)
        tickets.add_note(session, incident, monitor, f"{_title(alert)}: {alert.summary}")


def _count(session: Session, incident: Ticket) -> int:
    session.flush()
    return session.scalar(select(func.count()).select_from(Event).where(Event.ticket_id == incident.id)) or 0


def list_events(session: Session, limit: int | None = None) -> list[dict[str, Any]]:
    """Events, newest first, in the stable shape of ``helpdesk events --json``."""
    query = select(Event).order_by(Event.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [event_json(e) for e in session.scalars(query)]


def event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "received_at": _iso(e.received_at),
        "source": e.source,
        "host": e.host,
        "service": e.service,
        "state": e.state,
        "severity": e.severity.value,
        "recovery": e.recovery,
        "fingerprint": e.fingerprint,
        "summary": e.summary,
        "ticket": e.ticket_id,
    }


def _iso(at: datetime | None) -> str | None:
    return aware(at).isoformat() if at else None
