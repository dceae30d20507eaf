"""Outbound mail: render a template, compose the message, write it to the outbox.

Everything is rendered at enqueue time, so a retry resends the very same bytes and Message-ID.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

import jinja2
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from helpdesk.core import csat, i18n, ratelimit
from helpdesk.core.attachments import store_for
from helpdesk.core.conversation import STAFF_ROLES, agent_addresses, make_message_id, reply_address, subject_tag
from helpdesk.core.models import Attachment, Contact, Direction, Message, Outbox, Ticket, TicketStatus, utcnow
from helpdesk.core.settings import Settings
from helpdesk.core.text import SUBJECT_LIMIT, one_line

log = logging.getLogger(__name__)


@functools.cache
def _env(language: str) -> jinja2.Environment:
    """The mail templates' environment for one language (one each: rendering never swaps them in between)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("helpdesk.templates", "mail"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]  # added by jinja2.ext.i18n at run time
    return env

SEND_DEADLINE = timedelta(days=2)


class AutoSubmitted(enum.Enum):
    NO = "no"  # a person wrote it (an agent's reply)
    AUTO_REPLIED = "auto-replied"  # acknowledgement of a mail
    AUTO_GENERATED = "auto-generated"  # notifications, status changes


def render(template: str, context: dict[str, Any], language: str = i18n.DEFAULT) -> tuple[str, str, str | None]:
    """Return (subject, text, html or None) in ``language``. The text template's first line is ``Subject: ...``."""
    env = _env(i18n.supported(language) or i18n.DEFAULT)
    text = env.get_template(f"{template}.txt").render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"mail template {template}.txt must start with a 'Subject:' line")
    try:
        html: str | None = env.get_template(f"{template}.html").render(**context)
    except jinja2.TemplateNotFound:
        html = None
    # (A CR left in the line would make the header refuse it; the context's text is cleaned on intake.)
    return one_line(first.removeprefix("Subject:"), SUBJECT_LIMIT), body.lstrip("\n"), html


# Built once: building these costs about as much as running them, and they run for every mail queued.
_THREAD = (
    select(Message.message_id)
    .where(Message.ticket_id == bindparam("ticket"), Message.message_id.is_not(None), Message.internal.is_(False))
    .order_by(Message.id.desc())
    .limit(bindparam("limit"))
)
_KNOWN = select(Contact.email, Contact.undeliverable, Contact.role, Contact.language).where(
    Contact.email.in_(bindparam("wanted", expanding=True))
)


def thread_references(session: Session, ticket: Ticket, limit: int = 20) -> list[str]:
    ids = session.scalars(_THREAD, {"ticket": ticket.id, "limit": limit}).all()
    return [i for i in reversed(ids) if i]


@dataclass(frozen=True)
class OutboundAttachment:
    """A file to send along: what the attachment store holds for one of a ticket's attachments."""

    filename: str
    content_type: str
    data: bytes


def load_attachments(settings: Settings, attachments: Iterable[Attachment]) -> list[OutboundAttachment]:
    """The stored bytes of ``attachments``; those not stored (over the size limit at intake) stay behind."""
    store = store_for(settings)
    return [
        OutboundAttachment(a.filename or "attachment", a.content_type or "application/octet-stream", store.get(a.sha256))
        for a in attachments
        if a.sha256
    ]


# Room for the headers, the text and HTML parts, and each attachment's part headers.
_MAIL_OVERHEAD = 64 * 1024
_PART_OVERHEAD = 1024


def _encoded_size(data: bytes) -> int:
    """Bytes of ``data`` once base64-encoded in lines of 76 characters plus CRLF."""
    encoded = (len(data) + 2) // 3 * 4
    return encoded + (encoded // 76 + 1) * 2 + _PART_OVERHEAD


def fit_attachments(
    settings: Settings, files: Sequence[OutboundAttachment], *, room: int | None = None
) -> tuple[list[OutboundAttachment], list[str]]:
    """The files that fit in one mail of at most ``settings.max_message_bytes``, in order; names of the rest."""
    left = (settings.max_message_bytes - _MAIL_OVERHEAD) if room is None else room
    kept: list[OutboundAttachment] = []
    dropped: list[str] = []
    for file in files:
        size = _encoded_size(file.data)
        if size <= left:
            kept.append(file)
            left -= size
        else:
            dropped.append(file.filename)
    return kept, dropped


def _attach(msg: EmailMessage, file: OutboundAttachment) -> None:
    maintype, _, subtype = file.content_type.lower().partition("/")
    if maintype in ("", "multipart", "message") or not subtype:
        # Sent as opaque bytes: a part of these types would be parsed, and might be rewritten, on the way.
        maintype, subtype = "application", "octet-stream"
    msg.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=file.filename)


@dataclass(frozen=True)
class Queued:
    """What enqueue wrote: one outbox row per recipient, and the thread's copy of the mail.

    ``message`` is None when the mail is not recorded in the thread, or nobody was left to mail.
    """

    rows: list[Outbox]
    message: Message | None = None


def enqueue(
    session: Session,
    settings: Settings,
    *,
    template: str,
    ticket: Ticket,
    to: list[str],
    context: dict[str, Any] | None = None,
    auto_submitted: AutoSubmitted = AutoSubmitted.AUTO_GENERATED,
    purpose: str | None = None,
    in_reply_to: str | None = None,
    record: bool = True,
    attachments: Sequence[OutboundAttachment] = (),
    flush: bool = True,
) -> Queued:
    """Render ``template`` for ``ticket`` and queue one mail per recipient.

    Each recipient gets a Reply-To carrying a token valid for them. With ``record`` the mail also
    appears in the ticket's thread as one outgoing message. ``attachments`` go along as MIME parts
    as far as they fit within ``settings.max_message_bytes``; the rest are left out (and logged).
    ``flush=False``: the rows go in with the session's next flush (one flush less on intake's hot path).
    """
    recipients, languages = _recipients(session, settings, to, template,
                                        automatic=auto_submitted is not AutoSubmitted.NO)
    if not recipients:
        return Queued([])
    ctx = {"ticket": ticket, "settings": settings, "tag": subject_tag(settings, ticket.id), **(context or {})}
    # Each recipient reads it in their contact's language; the first recipient's version is the one recorded.
    rendered = {lang: render(template, ctx, lang) for lang in dict.fromkeys(languages[r] for r in recipients)}
    largest = max(len((h or "").encode()) + len(t.encode()) for _, t, h in rendered.values())
    room = settings.max_message_bytes - _MAIL_OVERHEAD - 2 * largest
    files, dropped = fit_attachments(settings, attachments, room=room)
    if dropped:
        log.warning("ticket %s: %s left out of %r, over the size limit", ticket.id, ", ".join(dropped), template)
    refs = thread_references(session, ticket)
    parent = in_reply_to or (refs[-1] if refs else None)
    rows: list[Outbox] = []
    for rcpt in recipients:
        mid = make_message_id(settings, ticket.id)
        subject, text, html = rendered[languages[rcpt]]
        msg = EmailMessage()
        msg["From"] = formataddr((i18n.gettext(languages[rcpt], "IT Service Desk"), settings.address))
        msg["To"] = rcpt
        msg["Subject"] = subject
        msg["Date"] = format_datetime(utcnow())
        msg["Message-ID"] = f"<{mid}>"
        if parent:
            msg["In-Reply-To"] = f"<{parent}>"
        if refs:
            msg["References"] = " ".join(f"<{r}>" for r in refs)
        msg["Reply-To"] = reply_address(settings, ticket.id, rcpt)
        msg["Auto-Submitted"] = auto_submitted.value
        # Ask Exchange and friends not to answer our mail with out-of-office notes.
        msg["X-Auto-Response-Suppress"] = "All"
        if auto_submitted is not AutoSubmitted.NO:
            msg["Precedence"] = "bulk"  # older vacation programs only know this one
        msg["X-Helpdesk-Ticket"] = str(ticket.id)
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype="html")
        for file in files:
            _attach(msg, file)
        msg["Content-Language"] = languages[rcpt]  # after the parts: setting content drops Content-* headers
        row = Outbox(
            ticket_id=ticket.id,
            message_id=mid,
            purpose=purpose or template,
            mail_from=settings.address,
            recipients=[rcpt],
            raw=msg.as_bytes(),
            deadline_at=utcnow() + SEND_DEADLINE,
            automatic=auto_submitted is not AutoSubmitted.NO,
            rcpt=rcpt,
        )
        session.add(row)
        rows.append(row)
    message = None
    subject, text, _ = rendered[languages[recipients[0]]]
    if record:
        message = Message(
            direction=Direction.OUT,
            from_address=settings.address,
            to=recipients,
            subject=subject,
            text=text,
            message_id=rows[0].message_id,
            in_reply_to=parent,
            references=refs,
        )
        ticket.messages.append(message)  # through the relationship: ticket.messages shows it at once
    if flush:
        session.flush()
    return Queued(rows, message)


def _recipients(
    session: Session, settings: Settings, addresses: list[str], template: str, *, automatic: bool
) -> tuple[list[str], dict[str, str]]:
    """Drop duplicates and addresses known to bounce; for automatic mail, also recipients over the rate limit.

    Also each wanted address's language: its contact's, else the default.
    """
    wanted = list(dict.fromkeys(a.lower() for a in addresses if a))
    if not wanted:
        return [], {}
    known = session.execute(_KNOWN, {"wanted": wanted}).all()
    bouncing = {email for email, undeliverable, _, _ in known if undeliverable}
    kept = [a for a in wanted if a not in bouncing]
    if automatic:
        staff = {email for email, _, role, _ in known if role in STAFF_ROLES}
        kept = _within_rate_limit(session, settings, kept, staff, template)
    languages = dict.fromkeys(wanted, i18n.DEFAULT)
    languages.update({email: i18n.supported(language) or i18n.DEFAULT for email, _, _, language in known})
    return kept, languages


def _within_rate_limit(
    session: Session, settings: Settings, recipients: list[str], staff: set[str], template: str
) -> list[str]:
    """Drop recipients who already got their share of automatic mail; staff are exempt.

    Agents get a notification for every ticket, and their own auto-replies are caught by the
    loop guard; a user-side robot the loop guard misses is what this limit is for.
    """
    conv = settings.conversation
    limit = ratelimit.RateLimit(per_hour=conv.auto_mail_per_hour, per_day=conv.auto_mail_per_day)
    staff = staff | {a.lower() for a in settings.agent_addresses}
    kept = []
    for rcpt in recipients:
        if rcpt in staff or ratelimit.allows(session, rcpt, limit):
            kept.append(rcpt)
        else:
            log.warning("automatic mail %r to %s not sent: over the rate limit", template, rcpt)
    return kept


def public_recipients(settings: Settings, ticket: Ticket) -> list[str]:
    """Requester and watchers: who gets public replies and status changes.

    At most ``max_watchers`` of the watchers, the earliest: a ticket may hold more from before the cap.
    """
    limit = settings.conversation.max_watchers
    watchers = sorted(ticket.watchers, key=lambda w: (w.id is None, w.id or 0))
    if len(watchers) > limit:
        log.warning("ticket %s: %d watchers over the cap of %d not mailed", ticket.id, len(watchers) - limit, limit)
    return [ticket.requester.email, *(w.contact.email for w in watchers[:limit])]


def notify_agents(
    session: Session, settings: Settings, ticket: Ticket, message: Message | None, *, new: bool
) -> Queued:
    """Tell the assignee (else every agent) about a new ticket or a user's new mail on it.

    Not part of the thread the user sees; an agent's reply to it comes back with a reply token.
    """
    if not settings.conversation.notify_agents:
        return Queued([])
    to = [ticket.assignee.email] if ticket.assignee is not None else agent_addresses(session, settings)
    author = message.from_address.lower() if message is not None else ""
    to = [a for a in to if a != author]
    if not to:
        return Queued([])
    return enqueue(
        session,
        settings,
        template="agent_notification",
        ticket=ticket,
        to=to,
        context={
            "new": new,
            "message": message,
            "comment_address": settings.comment_address,
            "requester": ticket.requester,
        },
        auto_submitted=AutoSubmitted.AUTO_GENERATED,
        purpose="agent notification",
        in_reply_to=message.message_id if message is not None else None,
        record=False,
    )


def notify_status(session: Session, settings: Settings, ticket: Ticket, *, actor: str,
                  note: str | None = None) -> Queued:
    """Tell requester and watchers the ticket's new status (resolution has its own template)."""
    template = "resolution" if ticket.status is TicketStatus.RESOLVED else "status_change"
    to = [a for a in public_recipients(settings, ticket) if a != actor.lower()]
    context = {"status": ticket.status.value.replace("_", " "), "note": note}
    if template == "resolution":
        return enqueue_resolution(session, settings, template=template, ticket=ticket, to=to, context=context)
    return enqueue(session, settings, template=template, ticket=ticket, to=to, context=context,
                   purpose=template.replace("_", " "))


def enqueue_resolution(
    session: Session, settings: Settings, *, template: str, ticket: Ticket, to: list[str], context: dict[str, Any],
    purpose: str | None = None,
) -> Queued:
    """A mail that tells of a ticket's resolution: the requester's copy carries the satisfaction links.

    Only when the ticket is surveyed (core.csat); watchers get the same mail without them. The
    template sees ``survey`` (the links, or None).
    """
    links = csat.survey(session, settings, ticket)
    requester = ticket.requester.email
    others = [a for a in to if a.lower() != requester] if links is not None else list(to)
    first = Queued([])
    if links is not None and len(others) < len(to):
        first = enqueue(session, settings, template=template, ticket=ticket, to=[ticket.requester.email],
                        context={**context, "survey": links}, purpose=purpose)
    rest = enqueue(session, settings, template=template, ticket=ticket, to=others,
                   context={**context, "survey": None}, purpose=purpose, record=first.message is None)
    return Queued(first.rows + rest.rows, first.message or rest.message)
