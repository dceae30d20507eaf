"""What the helpdesk reads out of one inbound mail.

The mail gateway fills these from raw bytes; the domain only ever sees these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    address: str  # lower-cased addr-spec, "" when unreadable
    name: str = ""


@dataclass(frozen=True)
class Part:
    """An attachment or inline part (e.g. a cid: image) with its decoded bytes."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False
    omitted_size: int | None = None  # not kept (over the size limit per mail): about this many bytes


class Protection(enum.Enum):
    """S/MIME or PGP/MIME on the sender's own message. Signatures are kept, never verified here."""

    SIGNED = "signed"  # the content is shown; the signature is an attachment, "signed, not verified"
    ENCRYPTED = "encrypted"  # kept as sent (an attachment); the helpdesk holds no key to read it


@dataclass(frozen=True)
class CalendarEvent:
    """One event of a calendar invitation (text/calendar), as the ticket shows it."""

    summary: str
    start: str = ""  # ISO 8601 as the invitation gives it (a date, or a date and time with its zone)
    end: str = ""
    organiser: str = ""  # address (or name) of the ORGANIZER
    location: str = ""
    method: str = ""  # REQUEST, CANCEL, REPLY, ... of the calendar object


@dataclass
class ParsedMail:
    from_: Address | None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    subject: str = ""
    date: datetime | None = None
    message_id: str | None = None  # without angle brackets
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    text: str = ""  # full text (HTML-only mail rendered to text)
    reply_text: str = ""  # text without quoted history and signature
    html: str | None = None  # sanitised HTML, safe to display (core.safehtml)
    html_note: str | None = None  # why an HTML part is not shown (over the sanitising budget)
    attachments: list[Part] = field(default_factory=list)
    # Header names lower-cased; values decoded. Used by loop guard and classification.
    headers: dict[str, list[str]] = field(default_factory=dict)
    content_type: str = "text/plain"  # of the top-level part
    report_type: str | None = None  # multipart/report; report-type=...
    # Message-IDs found inside attached messages/headers (bounces, forwards).
    embedded_message_ids: list[str] = field(default_factory=list)
    # Text of a message/delivery-status part (DSN) or message/feedback-report part (ARF).
    delivery_status: str | None = None
    feedback_report: str | None = None
    # Headers of a mail attached whole (message/rfc822, text/rfc822-headers), lower-cased names.
    attached_headers: list[dict[str, list[str]]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    # Which header gave the sender: "from", or a fallback when From had no usable address
    # ("sender", "reply-to", "return-path", "mbox" for the mbox From_ line); "" when none did.
    from_source: str = "from"
    # What the parser had to repair or guess to read the mail (e.g. "header-charset-guessed:gb18030").
    repairs: list[str] = field(default_factory=list)
    protection: Protection | None = None
    calendar: list[CalendarEvent] = field(default_factory=list)  # events of invitations in the mail

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def sender(self) -> str:
        return self.from_.address if self.from_ else ""
