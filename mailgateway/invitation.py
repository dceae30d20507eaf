"""Calendar invitations (text/calendar, .ics): what the ticket shows of each event, read with icalendar."""

from __future__ import annotations

from datetime import date, datetime

from icalendar import Calendar

from helpdesk.core.mail import CalendarEvent

CALENDAR_TYPES = ("text/calendar", "application/ics")
MAX_EVENTS = 20  # shown per invitation; a feed of thousands is still kept whole as the .ics


class UnreadableCalendar(Exception):
    """Not an iCalendar object icalendar can read."""


def is_calendar(ctype: str, filename: str) -> bool:
    return ctype in CALENDAR_TYPES or filename.lower().endswith((".ics", ".vcs"))


def read_events(data: bytes) -> list[CalendarEvent]:
    """The events of one calendar object. Raises ``UnreadableCalendar``."""
    try:
        calendar = Calendar.from_ical(data)
        method = str(calendar.get("method", "") or "").upper()
        events = []
        for event in calendar.walk("VEVENT")[:MAX_EVENTS]:
            events.append(CalendarEvent(
                summary=_text(event.get("summary")),
                start=_when(event.get("dtstart")),
                end=_when(event.get("dtend")),
                organiser=_person(event.get("organizer")),
                location=_text(event.get("location")),
                method=method,
            ))
    except Exception as exc:  # any failure on a hostile calendar means "unreadable"
        raise UnreadableCalendar(f"{type(exc).__name__}: {exc}"[:200]) from exc
    if not events and not calendar.walk("VTODO"):
        raise UnreadableCalendar("no event in the calendar")
    return events


def _text(value: object) -> str:
    return " ".join(str(value or "").split())[:500]


def _when(prop: object) -> str:
    """ISO 8601; a zone that is only a name (Outlook's "W. Europe Standard Time") is given beside it."""
    value = getattr(prop, "dt", None)
    if isinstance(value, datetime):
        text = value.isoformat()
        tzid = getattr(prop, "params", {}).get("TZID")
        if value.tzinfo is None and tzid:
            text += f" ({tzid})"
        return text
    if isinstance(value, date):
        return value.isoformat()
    return ""


def _person(prop: object) -> str:
    if prop is None:
        return ""
    address = str(prop)
    if address.lower().startswith("mailto:"):
        address = address[7:]
    name = _text(getattr(prop, "params", {}).get("CN"))
    return f"{name} <{address}>" if name and address else name or address
