"""JSON API for scripts: token authentication (Authorization: Bearer), described by OpenAPI."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, jsonify, request

from helpdesk.core import csat, events, macros, merge, presence, processes, queue, visibility, webhooks
from helpdesk.core import tickets as ticket_service
from helpdesk.core.models import Contact, Macro, Role, Ticket, TicketStatus
from helpdesk.core.notify import OutboundAttachment
from helpdesk.web import approvals, contacts, fields_api
from helpdesk.web import presence as presence_views
from helpdesk.web import webhooks as hooks_views
from helpdesk.web.db import current_settings, db
from helpdesk.web.macros import fields_from
from helpdesk.web.openapi import document
from helpdesk.web.security import STAFF, current_user, roles
from helpdesk.web.tickets import WORKERS, message_of, queue_query, ticket_or_404, upload_name

bp = Blueprint("api", __name__, url_prefix="/api")
bp.register_blueprint(fields_api.bp)  # /api/fields, /api/groups, /api/tickets/N/fields|group


def _user() -> Contact:
    user = current_user()
    assert user is not None
    return user


def _ticket(number: int) -> Ticket:
    return ticket_or_404(number, f"no ticket #{number}")


def _text() -> str:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        abort(400, 'send a JSON object {"text": "..."}')
    return body["text"]


@bp.get("/openapi.json")
@roles(*STAFF)
def openapi():  # type: ignore[no-untyped-def]
    return jsonify(document(request.host_url.rstrip("/") + "/api"))


@bp.get("/tickets")
@roles(*STAFF)
def tickets():  # type: ignore[no-untyped-def]
    settings = current_settings()
    only = visibility.ticket_filter(db(), settings, _user())
    page = queue.list_tickets(db(), queue_query(request.args), with_watchers=True, only=only)
    return jsonify(
        tickets=[ticket_service.to_json(t, with_messages=False) for t in page.tickets],
        total=page.total,
        page=page.query.page,
        pages=page.pages,
    )


@bp.get("/tickets/<int:number>")
@roles(*STAFF)
def ticket(number: int):  # type: ignore[no-untyped-def]
    data = ticket_service.to_json(_ticket(number))
    if not visibility.sees_notes(current_settings(), _user()):
        data["messages"] = [m for m in data["messages"] if not m["internal"]]
    return jsonify(data)


def _created(message: Any, **more: Any):  # type: ignore[no-untyped-def]
    db().commit()
    response = jsonify(ticket_service.message_json(message) | more)
    response.status_code = 201
    return response


_MEDIA_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
_ATTACHMENT_SHAPE = '{"filename": "...", "content_base64": "...", "content_type": "image/png"}'


def _files() -> list[OutboundAttachment]:
    """The reply's optional ``attachments``: each a file name, its bytes in base64, and a media type."""
    body = request.get_json(silent=True)
    items = body.get("attachments", []) if isinstance(body, dict) else []
    if not isinstance(items, list):
        abort(400, f"attachments is a list of {_ATTACHMENT_SHAPE}")
    files = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("content_base64"), str):
            abort(400, f"each attachment is {_ATTACHMENT_SHAPE}")
        try:
            data = base64.b64decode(item["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            abort(400, f"attachment {str(item.get('filename'))[:100]!r}: content_base64 is not base64")
        media = item.get("content_type")
        files.append(OutboundAttachment(
            upload_name(item.get("filename") if isinstance(item.get("filename"), str) else None),
            media.lower() if isinstance(media, str) and _MEDIA_TYPE.fullmatch(media) else "application/octet-stream",
            data,
        ))
    return files


@bp.post("/tickets/<int:number>/reply")
@roles(*WORKERS)
def reply(number: int):  # type: ignore[no-untyped-def]
    ticket = _ticket(number)
    settings = current_settings()
    text, files = _text(), _files()
    seen = _body().get("seen")  # the newest message id the caller saw: a newer public one is a 409
    try:
        message, too_big = ticket_service.reply_with_files(
            db(), settings, ticket, _user(), text, files,
            seen=seen if isinstance(seen, int) and not isinstance(seen, bool) else None,
        )
    except presence.NewerReply as exc:
        response = jsonify(error=str(exc), newer=[ticket_service.message_json(m) for m in exc.newer])
        response.status_code = 409
        return response
    except ticket_service.TicketError as exc:
        abort(422, str(exc))
    # Files over the mail size limit are kept on the ticket: the caller learns which the requester will not get.
    return _created(message, not_mailed=too_big)


@bp.post("/tickets/<int:number>/note")
@roles(*WORKERS)
def note(number: int):  # type: ignore[no-untyped-def]
    ticket = _ticket(number)
    try:
        message = ticket_service.add_note(db(), ticket, _user(), _text())
    except ticket_service.TicketError as exc:
        abort(422, str(exc))
    return _created(message)


@bp.post("/tickets/<int:number>/status")
@roles(*WORKERS)
def status(number: int):  # type: ignore[no-untyped-def]
    ticket = _ticket(number)
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    try:
        new = TicketStatus(body.get("status"))
    except ValueError:
        abort(400, 'send a JSON object {"status": "resolved", "reason": "..."}; status is one of '
              + ", ".join(s.value for s in TicketStatus))
    given = body.get("reason")
    reason = given.strip()[:500] or None if isinstance(given, str) else None
    try:
        processes.staff_change(db(), current_settings(), ticket, _user(), {"status": new}, reason=reason)
    except ticket_service.TicketError as exc:
        abort(422, str(exc))
    db().commit()
    return jsonify(ticket_service.to_json(ticket, with_messages=False))


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _ticket_action(act: Callable[[], Ticket], status: int = 200):  # type: ignore[no-untyped-def]
    """Run a ticket use case; a refusal is a 422 with its reason, else the ticket it names."""
    try:
        ticket = act()
    except ticket_service.TicketError as exc:
        abort(422, str(exc))
    db().commit()
    response = jsonify(ticket_service.to_json(ticket, with_messages=False))
    response.status_code = status
    return response


@bp.post("/tickets/<int:number>/merge")
@roles(*WORKERS)
def merge_ticket(number: int):  # type: ignore[no-untyped-def]
    """This ticket (a duplicate) goes into ``into``; answers with the target."""
    _ticket(number)
    into = _body().get("into")
    if not isinstance(into, int) or isinstance(into, bool):
        abort(400, 'send a JSON object {"into": 12}')
    return _ticket_action(lambda: merge.merge_into(db(), current_settings(), [number], into, _user())[0])


@bp.post("/tickets/<int:number>/unmerge")
@roles(*WORKERS)
def unmerge_ticket(number: int):  # type: ignore[no-untyped-def]
    ticket = _ticket(number)

    def undo() -> Ticket:
        merge.undo(db(), current_settings(), ticket, _user())
        return ticket
    return _ticket_action(undo)


@bp.post("/tickets/<int:number>/messages/<int:message_id>/split")
@roles(*WORKERS)
def split_message(number: int, message_id: int):  # type: ignore[no-untyped-def]
    message = message_of(_ticket(number), message_id)
    return _ticket_action(lambda: merge.split(db(), current_settings(), message, _user()), 201)


@bp.post("/tickets/<int:number>/macro")
@roles(*WORKERS)
def apply_macro(number: int):  # type: ignore[no-untyped-def]
    ticket = _ticket(number)
    name = _body().get("name")
    if not isinstance(name, str):
        abort(400, 'send a JSON object {"name": "macro name"}')
    try:
        done = macros.apply_named(db(), current_settings(), name, ticket, _user())
    except macros.NoMacro as exc:
        abort(404, str(exc))
    except ticket_service.TicketError as exc:
        abort(422, str(exc))
    db().commit()
    return jsonify(changed={k: str(v) for k, v in done.changed.items()},
                   ticket=ticket_service.to_json(ticket, with_messages=False))


@bp.get("/macros")
@roles(*STAFF)
def list_macros():  # type: ignore[no-untyped-def]
    return jsonify(macros=[macros.to_json(m) for m in macros.list_all(db())])


@bp.post("/macros", defaults={"name": None})
@bp.put("/macros/<name>")
@roles(Role.ADMIN)
def save_macro(name: str | None):  # type: ignore[no-untyped-def]
    body = _body()
    existing: Macro | None = None
    if name is not None:
        existing = macros.find(db(), name)
        if existing is None:
            abort(404, f"no macro named {name!r}")
    new_name = body.get("name", name)
    if not isinstance(body.get("body"), str) or not isinstance(new_name, str):
        abort(400, 'send a JSON object {"name": "...", "body": "...", "status": ..., "priority": ..., '
                   '"category": ..., "assignee": ...}')
    try:
        saved = macros.save(db(), _user(), new_name, body["body"], macro=existing, **fields_from(body))
    except macros.MacroError as exc:
        abort(422, str(exc))
    db().commit()
    response = jsonify(macros.to_json(saved))
    response.status_code = 200 if existing else 201
    return response


@bp.delete("/macros/<name>")
@roles(Role.ADMIN)
def delete_macro(name: str):  # type: ignore[no-untyped-def]
    found = macros.find(db(), name)
    if found is None:
        abort(404, f"no macro named {name!r}")
    macros.delete(db(), _user(), found)
    db().commit()
    return "", 204


@bp.get("/webhooks")
@roles(Role.ADMIN)
def list_webhooks():  # type: ignore[no-untyped-def]
    return jsonify(webhooks=[hooks_views.to_json(h) for h in webhooks.list_all(db())])


@bp.post("/webhooks", defaults={"hook_id": None})
@bp.put("/webhooks/<int:hook_id>")
@roles(Role.ADMIN)
def save_webhook(hook_id: int | None):  # type: ignore[no-untyped-def]
    body = _body()
    fields = hooks_views.fields_from(body, body.get("events"))
    try:
        if hook_id is None:
            hook, secret = webhooks.create(db(), current_settings(), _user().email, **fields)
        else:
            hook, secret = webhooks.update(db(), _user().email, hooks_views.found(hook_id), **fields), None
    except webhooks.WebhookError as exc:
        abort(422, str(exc))
    db().commit()
    return jsonify(hooks_views.to_json(hook) | ({"secret": secret} if secret else {})), 201 if secret else 200


@bp.post("/webhooks/<int:hook_id>/secret")
@roles(Role.ADMIN)
def new_webhook_secret(hook_id: int):  # type: ignore[no-untyped-def]
    hook = hooks_views.found(hook_id)
    secret = webhooks.rotate_secret(db(), current_settings(), _user().email, hook)
    db().commit()
    return jsonify(hooks_views.to_json(hook) | {"secret": secret})


@bp.post("/webhooks/<int:hook_id>/test")
@roles(Role.ADMIN)
def test_webhook(hook_id: int):  # type: ignore[no-untyped-def]
    delivery = webhooks.send_test(db(), _user().email, hooks_views.found(hook_id))
    db().commit()
    return jsonify(hooks_views.delivery_json(delivery)), 202


@bp.get("/webhooks/<int:hook_id>/deliveries")
@roles(Role.ADMIN)
def webhook_deliveries(hook_id: int):  # type: ignore[no-untyped-def]
    hook = hooks_views.found(hook_id)
    return jsonify(deliveries=[hooks_views.delivery_json(d) for d in webhooks.recent_deliveries(db(), hook.id, 100)])


@bp.delete("/webhooks/<int:hook_id>")
@roles(Role.ADMIN)
def delete_webhook(hook_id: int):  # type: ignore[no-untyped-def]
    webhooks.remove(db(), _user().email, hooks_views.found(hook_id))
    db().commit()
    return "", 204


@bp.post("/access/<int:request_id>/approve", defaults={"choice": "approve"})
@bp.post("/access/<int:request_id>/reject", defaults={"choice": "reject"})
@roles(Role.APPROVER)
def decide(request_id: int, choice: str):  # type: ignore[no-untyped-def]
    body = request.get_json(silent=True)
    reason = body.get("reason") if isinstance(body, dict) and isinstance(body.get("reason"), str) else None
    done, message = approvals.decision(request_id, choice == "approve", reason)
    if not done:
        abort(422, message)
    return jsonify(status="approved" if choice == "approve" else "rejected", message=message)


@bp.post("/events/alertmanager")
@roles(Role.AGENT, Role.ADMIN)
def alertmanager():  # type: ignore[no-untyped-def]
    """Alertmanager's webhook (configure its http_config with a bearer token of a monitoring account).

    `[events.alertmanager] enabled = false` turns it off (404, so Alertmanager does not retry); the `sender`
    pattern is for alert mail only: the bearer token is what vouches for a webhook call."""
    settings = current_settings()
    if not settings.events.source("alertmanager").enabled:
        abort(404, "the Alertmanager integration is turned off ([events.alertmanager] enabled = false)")
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        abort(400, "send Alertmanager's webhook JSON")
    try:
        alerts = events.alerts_from_alertmanager(payload)
    except events.EventPayloadError as exc:
        abort(400, str(exc))
    rules = settings.rulebook.rules
    outcomes = [events.handle_alert(db(), settings, alert, group=events.group_for(alert, rules)) for alert in alerts]
    db().commit()
    return jsonify(
        events=[
            {"action": o.action.value, "ticket": o.ticket.id if o.ticket else None} for o in outcomes
        ]
    )


# One rule for both methods: two rules with `defaults` made a number past MAX_ID a 405, not a 404.
@bp.route("/tickets/<int:number>/presence", methods=["GET", "POST"])
@roles(*STAFF)
def ticket_presence(number: int):  # type: ignore[no-untyped-def]
    """Who else is on the ticket; a POST also says the caller is (``{"state": "viewing"|"typing"}``)."""
    state = _body().get("state", "viewing") if request.method == "POST" else None
    return jsonify(presence_views.poll(number, _user(), state if isinstance(state, str) or state is None else ""))


@bp.get("/reports/satisfaction")
@roles(*STAFF)
def satisfaction():  # type: ignore[no-untyped-def]
    """Satisfaction answers per month, agent and category; ``since=YYYY-MM`` for the months from then on."""
    since_raw = request.args.get("since", "")
    since = None
    if since_raw:
        try:
            since = datetime.strptime(since_raw, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            abort(400, "since is a month: YYYY-MM")
    return jsonify(results=csat.results_json(csat.results(db(), since=since)))


contacts.register_api(bp)  # GET contacts/N, PUT contacts/N/language
