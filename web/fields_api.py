"""JSON API for custom fields, their values on tickets, and groups (nested under /api, token or session)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from helpdesk.core import fields, groups
from helpdesk.core import tickets as ticket_service
from helpdesk.core.i18n import N_
from helpdesk.core.models import FieldDef, FieldType, Group, Role
from helpdesk.web.db import db
from helpdesk.web.security import STAFF, current_user, roles
from helpdesk.web.tickets import WORKERS, ticket_or_404

bp = Blueprint("fields", __name__)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return body


def _actor():  # type: ignore[no-untyped-def]
    user = current_user()
    assert user is not None
    return user


def _field(key: str) -> FieldDef:
    found = fields.find(db(), key)
    if found is None:
        abort(404, f"no field {key!r}")
    return found


def _group(group_id: int) -> Group:
    found = db().get(Group, group_id)
    if found is None:
        abort(404, f"no group {group_id}")
    return found


def _answer(data: dict[str, Any], status: int = 200):  # type: ignore[no-untyped-def]
    db().commit()
    response = jsonify(data)
    response.status_code = status
    return response


@bp.get("/fields")
@roles(*STAFF)
def list_fields():  # type: ignore[no-untyped-def]
    return jsonify(fields=[fields.to_json(f) for f in fields.list_all(db())])


def define_from(data: Any, existing: FieldDef | None, key: str | None = None) -> FieldDef:
    """A field from a JSON object or a form; FieldError says what is wrong."""
    type_raw = str(data.get("type") or (existing.type.value if existing else ""))
    try:
        type_ = FieldType(type_raw)
    except ValueError:
        raise fields.FieldError(N_("type is one of %(known)s, not %(value)r"), known=", ".join(t.value for t in FieldType),
                                value=type_raw) from None
    choices = data.get("choices", [])
    if isinstance(choices, str):  # a form's textarea: one choice a line
        choices = choices.splitlines()
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise fields.FieldError(N_("choices is a list of strings"))
    try:
        position = int(data.get("position") or 0)
    except (TypeError, ValueError):
        raise fields.FieldError(N_("position is a whole number")) from None
    required = data.get("required") in (True, "on", "yes", "true")
    return fields.define(
        db(), _actor(), str(data.get("key") or key or ""), str(data.get("label") or ""), type_,
        applies_to=str(data.get("applies_to") or "all"), choices=choices, required=required, position=position,
        field=existing,
    )


@bp.post("/fields", defaults={"key": None})
@bp.put("/fields/<key>")
@roles(Role.ADMIN)
def save_field(key: str | None):  # type: ignore[no-untyped-def]
    existing = _field(key) if key is not None else None
    try:
        saved = define_from(_body(), existing, key)
    except fields.FieldError as exc:
        abort(422, str(exc))
    return _answer(fields.to_json(saved), 200 if existing else 201)


@bp.delete("/fields/<key>")
@roles(Role.ADMIN)
def delete_field(key: str):  # type: ignore[no-untyped-def]
    fields.delete(db(), _actor(), _field(key))
    db().commit()
    return "", 204


@bp.put("/tickets/<int:number>/fields")
@roles(*WORKERS)
def set_fields(number: int):  # type: ignore[no-untyped-def]
    """Set several fields at once: {"key": "value", ...}; a blank value clears; all checked before any is set."""
    ticket = ticket_or_404(number, f"no ticket #{number}")
    body = _body()
    if not all(isinstance(v, str) for v in body.values()):
        abort(400, 'send a JSON object {"key": "value", ...} of strings')
    try:
        fields.set_values(db(), ticket, _actor().email, body)
    except fields.FieldError as exc:
        abort(422, str(exc))
    return _answer(ticket_service.to_json(ticket, with_messages=False))


@bp.put("/tickets/<int:number>/group")
@roles(*WORKERS)
def set_group(number: int):  # type: ignore[no-untyped-def]
    ticket = ticket_or_404(number, f"no ticket #{number}")
    name = _body().get("group")
    if name is not None and not isinstance(name, str):
        abort(400, 'send a JSON object {"group": "name"} (null: no group)')
    try:
        groups.assign(db(), ticket, _actor().email, name)
    except groups.GroupError as exc:
        abort(422, str(exc))
    return _answer(ticket_service.to_json(ticket, with_messages=False))


def group_json(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "email": group.email, "members": [m.email for m in group.members]}


@bp.get("/groups")
@roles(*STAFF)
def list_groups():  # type: ignore[no-untyped-def]
    return jsonify(groups=[group_json(g) for g in groups.list_all(db())])


@bp.post("/groups", defaults={"group_id": None})
@bp.put("/groups/<int:group_id>")
@roles(Role.ADMIN)
def save_group(group_id: int | None):  # type: ignore[no-untyped-def]
    existing = _group(group_id) if group_id is not None else None
    body = _body()
    name, members = body.get("name", existing.name if existing else None), body.get("members")
    email = body.get("email", existing.email if existing else None)
    if not isinstance(name, str) or not isinstance(email, (str, type(None))) or not (
        members is None or (isinstance(members, list) and all(isinstance(m, str) for m in members))
    ):
        abort(400, 'send a JSON object {"name": "...", "email": "..." or null, "members": ["agent@...", ...]}')
    try:
        saved = groups.save(db(), _actor(), name, email=email, group=existing)
        if members is not None:
            groups.set_members(db(), _actor(), saved, members)
    except groups.GroupError as exc:
        abort(422, str(exc))
    return _answer(group_json(saved), 200 if existing else 201)


@bp.delete("/groups/<int:group_id>")
@roles(Role.ADMIN)
def delete_group(group_id: int):  # type: ignore[no-untyped-def]
    groups.delete(db(), _actor(), _group(group_id))
    db().commit()
    return "", 204
