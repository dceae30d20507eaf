"""The requester portal's JSON API under /api/portal, for apps and scripts acting for a requester.

The sign-in is the same: ask for a link (mailed), then trade the link's token for a portal token
(``hdp_...``), sent as ``Authorization: Bearer``. A portal token opens only these routes; a staff
API token opens none of them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from flask.typing import ResponseReturnValue

from helpdesk.core import portal
from helpdesk.core.models import Attachment, Contact, Message, Ticket
from helpdesk.web.api import _files, _text
from helpdesk.web.db import current_settings, db
from helpdesk.web.portal import ask_for_link, me, ticket_of_mine
from helpdesk.web.security import bearer_token, public, requester
from helpdesk.web.tickets import attachment_response

bp = Blueprint("portal_api", __name__, url_prefix="/api/portal")
LINK_ANSWER = "If the address has tickets with us, a sign-in link is on its way to it."


def _field(name: str) -> str:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get(name), str):
        abort(400, f'send a JSON object {{"{name}": "..."}}')
    return body[name]


def _attachment(a: Attachment) -> dict[str, Any]:
    return {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
            "kept": a.sha256 is not None}


def _message(ticket: Ticket, m: Message) -> dict[str, Any]:
    return {
        "id": m.id, "direction": m.direction.value, "from": m.from_address if m.direction.value == "in" else None,
        "text": m.reply_text or m.text, "created_at": m.created_at.isoformat() if m.created_at else None,
        "attachments": [_attachment(a) for a in m.attachments],
    }


def _summary(ticket: Ticket, me: Contact) -> dict[str, Any]:
    return {"number": ticket.id, "subject": ticket.subject, "status": ticket.status.value,
            "kind": ticket.kind.value, "requested_by_you": ticket.requester_id == me.id,
            "created_at": ticket.created_at.isoformat() if ticket.created_at else None,
            "updated_at": ticket.updated_at.isoformat() if ticket.updated_at else None}


def _full(ticket: Ticket) -> dict[str, Any]:
    progress = portal.progress(db(), ticket)
    return {
        **_summary(ticket, me()),
        "messages": [_message(ticket, m) for m in portal.public_messages(ticket)],
        "progress": {
            "step": progress.step, "due_at": progress.due_at.isoformat() if progress.due_at else None,
            "approvals": [{"what": a.what, "status": a.status, "reason": a.reason,
                           "decided_at": a.decided_at.isoformat() if a.decided_at else None} for a in progress.approvals],
            "checklist": [{"step": text, "done": done} for text, done in progress.checklist],
        },
    }


@bp.post("/link")
@public
def link() -> ResponseReturnValue:
    address = _field("email").strip()
    if "@" not in address or len(address) > 320:
        abort(400, "email: an address, as the desk has it")
    try:
        ask_for_link(address)
    except portal.TooManyLinks as exc:
        abort(429, str(exc))
    return jsonify(status=LINK_ANSWER), 202


@bp.post("/session")
@public
def session_open() -> ResponseReturnValue:
    token = _field("token").rsplit("/", 1)[-1]  # the link's last part, or the whole link
    try:
        contact = portal.redeem_link(db(), current_settings(), token)
    except portal.LinkRefused as exc:
        db().commit()
        abort(400, str(exc))
    opened = portal.open_session(db(), current_settings(), contact)
    db().commit()
    lifetime = portal.PortalPolicy().session_lifetime
    return jsonify(token=opened, requester=contact.email, expires_in=int(lifetime.total_seconds())), 201


@bp.delete("/session")
@requester
def session_end() -> ResponseReturnValue:
    portal.end_session(db(), bearer_token() or "")
    db().commit()
    return "", 204


@bp.get("/tickets")
@requester
def tickets() -> ResponseReturnValue:
    return jsonify(tickets=[_summary(t, me()) for t in portal.my_tickets(db(), me())])


@bp.get("/tickets/<int:number>")
@requester
def ticket(number: int) -> ResponseReturnValue:
    return jsonify(_full(ticket_of_mine(number)))


@bp.get("/tickets/<int:number>/attachments/<int:attachment_id>")
@requester
def attachment(number: int, attachment_id: int) -> ResponseReturnValue:
    item = portal.public_attachment(db(), ticket_of_mine(number), attachment_id)
    if item is None:
        abort(404, "no such attachment")
    return attachment_response(item)


@bp.post("/tickets/<int:number>/reply")
@requester
def reply(number: int) -> ResponseReturnValue:
    found = ticket_of_mine(number)
    try:
        message = portal.reply(db(), current_settings(), found, me(), _text(), _files())
    except portal.PortalError as exc:
        abort(422, str(exc))
    db().commit()
    return jsonify(_message(found, message)), 201


@bp.post("/tickets/<int:number>/close")
@requester
def close(number: int) -> ResponseReturnValue:
    found = ticket_of_mine(number)
    try:
        portal.close(db(), current_settings(), found, me())
    except portal.PortalError as exc:
        abort(422, str(exc))
    db().commit()
    return jsonify(_full(found))
