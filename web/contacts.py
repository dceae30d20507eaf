"""A requester's language, set by agents: the ticket page's form and the API (same use case, audited).

The API's two routes join the api blueprint (register_api): its token authentication goes by blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, request, url_for
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]
from werkzeug.wrappers import Response

from helpdesk.core import contacts, i18n
from helpdesk.core.models import Contact
from helpdesk.web.db import db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import STAFF, current_user, roles
from helpdesk.web.tickets import WORKERS

bp = Blueprint("contacts", __name__)


def _contact(contact_id: int) -> Contact:
    contact = db().get(Contact, contact_id)
    if contact is None:
        abort(404, f"no contact {contact_id}")
    return contact


def _set(contact: Contact, wanted: str | None) -> bool:
    user = current_user()
    assert user is not None
    try:
        changed = contacts.set_language(db(), contact, wanted, actor=user.email)
    except contacts.UnknownLanguage as exc:
        abort(400, str(exc) if request.path.startswith("/api/") else reason_of(exc))  # the API speaks English
    db().commit()
    return changed


def contact_json(contact: Contact) -> dict[str, Any]:
    return {"id": contact.id, "email": contact.email, "name": contact.name, "language": contact.language}


@bp.post("/contacts/<int:contact_id>/language")
@roles(*WORKERS)
def set_language(contact_id: int) -> Response:
    contact = _contact(contact_id)
    _set(contact, request.form.get("language") or None)
    flash(_("Language of %(email)s: %(language)s", email=contact.email,
            language=_("as the mail reads") if contact.language is None else contact.language), "info")
    number = request.form.get("ticket", type=int)
    return redirect(url_for("tickets.show", number=number) if number else url_for("tickets.queue"))


@roles(*STAFF)
def api_contact(contact_id: int) -> Response:
    return jsonify(contact_json(_contact(contact_id)))


@roles(*WORKERS)
def api_set_language(contact_id: int) -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not (body.get("language") is None or isinstance(body.get("language"), str)):
        abort(400, 'send a JSON object {"language": "de"} (null: learnt from the next mail, English until then)')
    contact = _contact(contact_id)
    _set(contact, body.get("language"))
    return jsonify(contact_json(contact))


def register_api(api: Blueprint) -> None:
    api.add_url_rule("/contacts/<int:contact_id>", "contact", api_contact, methods=["GET"])
    api.add_url_rule("/contacts/<int:contact_id>/language", "set_contact_language", api_set_language, methods=["PUT"])


_CONTACT = {"application/json": {"schema": {"type": "object", "properties": {
    "id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": ["string", "null"]},
    "language": {"type": ["string", "null"], "enum": [*i18n.SUPPORTED, None],
                 "description": "the language of the desk's mail to them; null: not known yet (English)"}}}}}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ID = {"name": "contact_id", "in": "path", "required": True, "schema": {"type": "integer"}}


def contact_paths() -> dict[str, Any]:
    """OpenAPI paths of the contact routes (web.openapi merges them into the document)."""
    errors = {str(c): {"description": d, "content": _ERROR} for c, d in (
        (401, "No or bad token"), (403, "Not allowed for this role"), (404, "No such contact"))}
    return {
        "/contacts/{contact_id}": {"get": {
            "summary": "A contact (requester) with the language the desk writes to them in",
            "operationId": "getContact", "parameters": [_ID],
            "responses": {"200": {"description": "The contact", "content": _CONTACT}, **errors}}},
        "/contacts/{contact_id}/language": {"put": {
            "summary": "Set the language of the desk's mail to this contact (agents, admins; audited)",
            "operationId": "setContactLanguage", "parameters": [_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["language"], "properties": {
                    "language": {"type": ["string", "null"], "enum": [*i18n.SUPPORTED, None]}}}}}},
            "responses": {"200": {"description": "The contact after the change", "content": _CONTACT},
                          "400": {"description": "A language the desk does not ship", "content": _ERROR}, **errors}}},
    }
