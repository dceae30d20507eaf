"""The queue and the ticket page, with the agent's actions on a ticket."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import select

from helpdesk.core import (
    audit,
    fields,
    fulfilment,
    groups,
    macros,
    merge,
    presence,
    processes,
    queue,
    safehtml,
    sla,
    visibility,
)
from helpdesk.core import tickets as ticket_service
from helpdesk.core.attachments import AttachmentStore
from helpdesk.core.i18n import N_
from helpdesk.core.models import (
    MAX_ID,
    AccessRequest,
    Attachment,
    Contact,
    Fulfilment,
    Message,
    Role,
    Ticket,
    TicketKind,
    TicketStatus,
    utcnow,
)
from helpdesk.core.notify import OutboundAttachment
from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.core.queue import QueueQuery, SlaState, Sort
from helpdesk.web import outcome
from helpdesk.web import presence as presence_views
from helpdesk.web.db import current_settings, db
from helpdesk.web.i18n import reason_of
from helpdesk.web.pagewords import PageWords
from helpdesk.web.security import STAFF, current_user, has_session, roles

bp = Blueprint("tickets", __name__)
WORKERS = (Role.AGENT, Role.ADMIN)
PRIORITIES = DESK_PRIORITIES
# Shown in the browser as they are; everything else downloads as opaque bytes.
_SAFE_TYPES = {"image/png", "image/jpeg", "image/gif", "application/pdf", "text/plain"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_UPLOAD_SLACK = 1024 * 1024  # the reply's text and the multipart framing around the files


def _enum(cls: Any, raw: str | None) -> Any:
    try:
        return cls(raw) if raw else None
    except ValueError:
        return None


_CATEGORY_TTL = 60.0


def categories() -> list[str]:
    """The categories in use, for the filter. Finding them scans every ticket: cached for a minute.

    Per process, deliberately: it is only the filter's list of choices, never a permission or a count,
    and each console process catches up within the minute.
    """
    cache = current_app.extensions.setdefault("category_cache", {})
    now = time.monotonic()
    if cache.get("until", 0.0) < now:
        cache["values"], cache["until"] = queue.categories(db()), now + _CATEGORY_TTL
    return list(cache["values"])


FILTERS = ("kind", "status", "priority", "category", "assignee", "group", "field", "sla", "q", "sort")
# No queue holds more tickets than there are ticket numbers; a larger page would overflow OFFSET.
MAX_PAGE = MAX_ID // QueueQuery.per_page + 1


def queue_query(args: Any) -> QueueQuery:
    """The queue query a URL's parameters describe (unknown values are ignored)."""
    # "unresolved" (the default) is any open status; "any" is every status.
    status_raw = args.get("status") or "unresolved"
    try:
        page = min(max(1, int(args.get("page", "1"))), MAX_PAGE)
    except ValueError:
        page = 1
    priority = args.get("priority") or None
    group = (args.get("group") or "").strip()[:80]
    key, colon, value = (args.get("field") or "").partition(":")  # field=KEY:VALUE
    return QueueQuery(
        kind=_enum(TicketKind, args.get("kind")),
        status=_enum(TicketStatus, status_raw),
        open_only=status_raw == "unresolved",
        priority=priority if priority in PRIORITIES else None,
        category=(args.get("category") or "").strip()[:80] or None,
        assignee=(args.get("assignee") or "").strip()[:320] or None,
        sla=_enum(SlaState, args.get("sla")),
        groups=_groups_named(group),
        no_group=group == "none",
        field=(key.strip().lower()[:40], value.strip()[:500]) if colon and key.strip() else None,
        text=(args.get("q") or "").strip()[:200],
        sort=_enum(Sort, args.get("sort")) or Sort.NEWEST,
        page=page,
    )


def _groups_named(group: str) -> tuple[str, ...] | None:
    """``mine``: the signed-in agent's groups; a name: that group; blank or ``none``: no such filter."""
    if not group or group == "none":
        return None
    return tuple(groups.of_agent(db(), _author())) if group == "mine" else (group,)


@bp.get("/")
@roles(*STAFF)
def home():  # type: ignore[no-untyped-def]
    return redirect(url_for("tickets.queue"))


@bp.get("/tickets", endpoint="queue")
@roles(*STAFF)
def queue_page():  # type: ignore[no-untyped-def]
    query = queue_query(request.args)
    mine = groups.of_agent(db(), _author())
    if "group" not in request.args:  # the default view: the agent's groups' tickets first
        query = replace(query, first=tuple(mine))
    page = queue.list_tickets(
        db(), query, only=visibility.ticket_filter(db(), current_settings(), _author()), count_cap=queue.COUNT_CAP
    )
    # Only the filters go into the pager's links: url_for would read "endpoint" or "_external" as its own.
    args = {k: v for k, v in request.args.items() if k in FILTERS and v}
    return render_template(
        "web/tickets/queue.html",
        page=page,
        args=args,
        kinds=list(TicketKind),
        statuses=list(TicketStatus),
        priorities=PRIORITIES,
        sla_options=list(SlaState),
        sorts=list(Sort),
        categories=categories(),
        agents=queue.agents(db()),
        sla_of=queue.sla_states(db(), page.tickets),
        group_names=groups.names(db()),
        my_groups=mine,
        field_choices=[(f, c) for f in fields.list_all(db()) if f.choices for c in f.choices],
        words=PageWords(),
    )


def readable_ticket(number: int) -> Ticket | None:
    """The ticket, if there is one and the signed-in user may read it (core.visibility): else None, as if missing."""
    ticket = ticket_service.get(db(), number)
    if ticket is None or not visibility.may_read(db(), current_settings(), _author(), ticket):
        return None
    return ticket


def ticket_or_404(number: int, missing: str | None = None) -> Ticket:
    """readable_ticket, or a 404 whose text is ``missing`` (the console's wording by default)."""
    ticket = readable_ticket(number)
    if ticket is None:
        abort(404, missing or gettext("There is no ticket #%(number)s.", number=number))
    return ticket


def _back(number: int, done: str | None = None, error: str | None = None) -> ResponseReturnValue:
    """Back to the ticket's page: the change committed and ``done`` said, or dropped and ``error`` said."""
    if error is not None:
        return outcome.refused(error, url_for("tickets.show", number=number))
    return outcome.done(done or gettext("Done."), url_for("tickets.show", number=number))


@bp.get("/tickets/<int:number>")
@roles(*STAFF)
def show(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    if safehtml.settle(ticket.messages):  # mail stored before HTML was sanitised at intake: once, then kept
        db().commit()
    return render_template(
        "web/tickets/ticket.html",
        ticket=ticket,
        messages=[m for m in ticket.messages if not m.internal or visibility.sees_notes(current_settings(), _author())],
        history=audit.history(db(), "ticket", ticket.id),
        sla=queue.sla_state(db(), ticket),
        clocks=sla.clocks(db(), current_settings(), ticket, utcnow()),
        kinds=list(TicketKind),
        statuses=processes.statuses_by_hand(ticket),
        priorities=PRIORITIES,
        agents=queue.agents(db()),
        may_act=current_user().role in WORKERS,  # type: ignore[union-attr]
        access_requests=db().scalars(select(AccessRequest).where(AccessRequest.ticket_id == ticket.id)).all(),
        fulfilment=db().get(Fulfilment, ticket.id),
        request_step=fulfilment.step_of(ticket),
        macros=macros.list_all(db()),
        first_message_id=min((m.id for m in ticket.messages), default=None),
        custom=fields.shown(db(), ticket),
        group_names=groups.names(db()),
    )


@bp.get("/tickets/<int:number>/attachments/<int:attachment_id>")
@roles(*STAFF)
def attachment(number: int, attachment_id: int):  # type: ignore[no-untyped-def]
    ticket_or_404(number)
    item = db().get(Attachment, attachment_id)
    message = db().get(Message, item.message_id) if item is not None else None
    if item is None or message is None or message.ticket_id != number or item.sha256 is None:
        abort(404, gettext("No such attachment."))
    if message.internal and not visibility.sees_notes(current_settings(), _author()):
        abort(404, "No such attachment.")
    return attachment_response(item)


def attachment_response(item: Attachment) -> Response:
    """A stored file as a download (console and portal alike): never rendered in our origin."""
    assert item.sha256 is not None
    store = AttachmentStore(current_settings().data_dir / "attachments")
    try:
        data = store.get(item.sha256)
    except FileNotFoundError:
        abort(404, "The attachment's file is missing from the store.")
    content_type = item.content_type.lower() if item.content_type.lower() in _SAFE_TYPES else "application/octet-stream"
    response = Response(data, content_type=content_type)
    # Always a download, never rendered in our origin; sandbox in case a browser renders it anyway.
    response.headers.set("Content-Disposition", "attachment", **download_names(item.filename, f"attachment-{item.id}"))
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


def download_names(name: str | None, fallback: str) -> dict[str, str]:
    """Content-Disposition parameters (RFC 6266) for a name from a mail: any script, no line breaks."""
    # A line break would make the header invalid (no download at all); other control characters go too.
    name = " ".join(_CONTROL.sub(" ", name or "").split()) or fallback
    if name.isascii():
        return {"filename": name}
    plain = " ".join(unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().split()) or fallback
    return {"filename": plain, "filename*": "UTF-8''" + quote(name, safe="!#$&+-.^_`|~")}


def _author() -> Contact:
    user = current_user()
    assert user is not None
    return user


def make_room_for_reply_files() -> None:
    """Let a signed-in user's reply carry files up to the mail size limit; every other request keeps the small one.

    Runs before CSRF protection, which reads the form (and so the body) before the view. An API reply's
    token is checked before its body is read; its files come base64-encoded, a third larger.
    """
    limit = current_settings().max_message_bytes
    if request.endpoint in ("tickets.reply", "portal.reply") and has_session(of_portal=request.endpoint == "portal.reply"):
        request.max_content_length = limit + _UPLOAD_SLACK
    elif request.endpoint in ("api.reply", "portal_api.reply") and request.headers.get("Authorization", "").startswith("Bearer "):
        request.max_content_length = limit * 4 // 3 + _UPLOAD_SLACK


def upload_name(raw: str | None) -> str:
    # Browsers send a bare name, some old ones a whole Windows path; never let a name carry a line break.
    name = _CONTROL.sub(" ", (raw or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return unicodedata.normalize("NFC", name)[:200] or "attachment"


def uploads() -> list[OutboundAttachment]:
    """The files of a form's `files` field (console and portal replies)."""
    files = []
    for upload in request.files.getlist("files"):
        data = upload.read()
        if upload.filename or data:  # a form with no file chosen still sends an empty part
            files.append(OutboundAttachment(upload_name(upload.filename), upload.mimetype or "application/octet-stream", data))
    return files


@bp.post("/tickets/<int:number>/reply")
@roles(*WORKERS)
def reply(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    settings = current_settings()
    text = request.form.get("text", "")
    try:
        _, too_big = ticket_service.reply_with_files(
            db(), settings, ticket, _author(), text, uploads(), seen=presence_views.seen_in(request.form)
        )
    except presence.NewerReply as exc:  # someone wrote since this page was loaded: show it, ask to send anyway
        return presence_views.confirm_reply(ticket, text, exc), 409
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    db().commit()
    flash(gettext("Reply sent."), "info")
    if too_big:
        flash(gettext("Kept on the ticket but not mailed, over the mail size limit: %(files)s", files=", ".join(too_big)),
              "error")
    return redirect(url_for("tickets.show", number=number))


@bp.post("/tickets/<int:number>/note")
@roles(*WORKERS)
def note(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    try:
        ticket_service.add_note(db(), ticket, _author(), request.form.get("text", ""))
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    return _back(number, gettext("Note added."))


def _level(raw: str | None) -> int | None:
    return int(raw) if raw in {"1", "2", "3"} else None


def requested_changes(form: Any, ticket: Any) -> dict[str, Any]:
    """The fields of the change form that differ from the ticket."""
    fields: dict[str, Any] = {}
    for name, cls in (("kind", TicketKind), ("status", TicketStatus)):
        value = _enum(cls, form.get(name))
        if value is not None and value is not getattr(ticket, name):
            fields[name] = value
    for name in ("impact", "urgency"):
        level = _level(form.get(name))
        if level is not None and level != getattr(ticket, name):
            fields[name] = level
    priority = form.get("priority")
    if priority in PRIORITIES and priority != ticket.priority:
        fields["priority"] = priority  # else a new impact or urgency gives it (processes.staff_change)
    category = (form.get("category") or "").strip()[:80]
    if category and category != ticket.category:
        fields["category"] = category
    assignee = (form.get("assignee") or "").strip().lower()
    current = ticket.assignee.email if ticket.assignee else ""
    if assignee != current:
        fields["assignee"] = None if not assignee else _assignable(assignee)
    return fields


def _assignable(email: str) -> Contact:
    person = next((a for a in queue.agents(db()) if a.email == email), None)
    if person is None:
        abort(400, gettext("%(email)s is not an agent.", email=email))
    return person


@bp.post("/tickets/<int:number>/change")
@roles(*WORKERS)
def change(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    fields = requested_changes(request.form, ticket)
    if not fields:
        flash(gettext("Nothing to change."), "info")
        return redirect(url_for("tickets.show", number=number))
    reason = (request.form.get("reason") or "").strip()[:500] or None
    try:
        changed = processes.staff_change(db(), current_settings(), ticket, _author(), fields, reason=reason)
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    return _back(number, gettext("Changed: %(fields)s", fields=", ".join(sorted(changed))) if changed
                 else gettext("Nothing changed."))


def _fulfilment_action(number: int, act: Callable[[Ticket], object], done: str):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    try:
        act(ticket)
    except fulfilment.FulfilmentError as exc:
        return _back(number, error=reason_of(exc))
    return _back(number, done)


@bp.post("/tickets/<int:number>/steps/<int:step>/done")
@roles(*WORKERS)
def step_done(number: int, step: int):  # type: ignore[no-untyped-def]
    """Tick off checklist step ``step`` (1-based, as agents write ``#done N`` by email)."""
    return _fulfilment_action(
        number, lambda ticket: fulfilment.complete_step(db(), ticket, step - 1, _author()),
        gettext("Step %(number)s done.", number=step),
    )


@bp.post("/tickets/<int:number>/fulfilled")
@roles(*WORKERS)
def fulfilled(number: int):  # type: ignore[no-untyped-def]
    settings = current_settings()
    return _fulfilment_action(
        number, lambda ticket: fulfilment.fulfil(db(), settings, ticket, _author()),
        gettext("Request fulfilled; the requester is told by email."),
    )


# -- merge, undo, split, canned replies: one core function each, shared with the API -------------


def _numbers(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit() and int(v) <= MAX_ID]


@bp.post("/tickets/merge")
@roles(*WORKERS)
def merge_selected():  # type: ignore[no-untyped-def]
    """The queue's "merge selected": the chosen tickets go into the one named (or the oldest chosen)."""
    chosen = _numbers(request.form.getlist("ticket"))
    into = _numbers([(request.form.get("into") or "").strip().lstrip("#")]) or sorted(chosen)[:1]
    if not into:
        flash(gettext("Choose the tickets to merge."), "error")
        return redirect(url_for("tickets.queue"))
    try:
        target, merged = merge.merge_into(db(), current_settings(), [n for n in chosen if n != into[0]], into[0], _author())
    except ticket_service.TicketError as exc:
        return outcome.refused(reason_of(exc), url_for("tickets.queue"))
    return _back(target.id, gettext("Merged %(tickets)s into #%(number)s.", tickets=", ".join(f"#{n}" for n in merged),
                                     number=target.id))


@bp.post("/tickets/<int:number>/merge")
@roles(*WORKERS)
def merge_one(number: int):  # type: ignore[no-untyped-def]
    ticket_or_404(number)
    into = _numbers([(request.form.get("into") or "").strip().lstrip("#")])
    try:
        if not into:
            raise ticket_service.TicketError(N_("give the number of the ticket to merge into"))
        target, _ = merge.merge_into(db(), current_settings(), [number], into[0], _author())
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    return _back(target.id, gettext("Merged %(tickets)s into #%(number)s.", tickets=f"#{number}", number=target.id))


@bp.post("/tickets/<int:number>/unmerge")
@roles(*WORKERS)
def unmerge(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    try:
        merge.undo(db(), current_settings(), ticket, _author())
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    return _back(number, gettext("Merge undone."))


def message_of(ticket: Ticket, message_id: int) -> Message:
    found = next((m for m in ticket.messages if m.id == message_id), None)
    if found is None:
        abort(404, gettext("No such message on this ticket."))
    return found


@bp.post("/tickets/<int:number>/messages/<int:message_id>/split")
@roles(*WORKERS)
def split(number: int, message_id: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    try:
        new = merge.split(db(), current_settings(), message_of(ticket, message_id), _author())
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    return _back(new.id, gettext("Split off #%(number)s into this ticket; the sender is told its number.", number=number))


@bp.post("/tickets/<int:number>/macro")
@roles(*WORKERS)
def macro(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number)
    name = request.form.get("macro", "")
    if not name.strip():
        return _back(number, error=gettext("Choose a canned reply."))
    try:
        done = macros.apply_named(db(), current_settings(), name, ticket, _author())
    except ticket_service.TicketError as exc:
        return _back(number, error=reason_of(exc))
    changed = ", ".join(f"{k} -> {v}" for k, v in done.changed.items())
    return _back(number, gettext("Canned reply %(name)s sent.", name=done.macro)
                 + (" " + gettext("Changed: %(fields)s.", fields=changed) if changed else ""))
