"""Console pages for custom fields and groups: admin pages, and a ticket's fields and group from its page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import fields, groups, queue
from helpdesk.core.fields import APPLIES_TO
from helpdesk.core.models import FieldDef, FieldType, Group, Role
from helpdesk.web import outcome
from helpdesk.web.db import db, editing
from helpdesk.web.fields_api import define_from
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import current_user, roles
from helpdesk.web.tickets import WORKERS, ticket_or_404

bp = Blueprint("fields", __name__)


def _actor():  # type: ignore[no-untyped-def]
    user = current_user()
    assert user is not None
    return user


def _fields_page(**more: Any):  # type: ignore[no-untyped-def]
    return render_template("web/admin/fields.html", fields=fields.list_all(db()), types=list(FieldType),
                           applies=APPLIES_TO, **more)


@bp.get("/admin/fields", endpoint="index")
@roles(Role.ADMIN)
def index():  # type: ignore[no-untyped-def]
    return _fields_page()


@bp.post("/admin/fields")
@bp.post("/admin/fields/<int:field_id>")
@roles(Role.ADMIN)
def save(field_id: int | None = None):  # type: ignore[no-untyped-def]
    existing = editing(FieldDef, field_id, _("No such field."))
    try:
        saved = define_from(request.form, existing)
    except fields.FieldError as exc:
        outcome.undo(reason_of(exc))
        return _fields_page(draft=request.form), 422
    return outcome.done(_("Field %(key)s saved.", key=saved.key), url_for("fields.index"))


@bp.post("/admin/fields/<int:field_id>/delete")
@roles(Role.ADMIN)
def delete(field_id: int):  # type: ignore[no-untyped-def]
    found = db().get(FieldDef, field_id)
    if found is None:
        abort(404, _("No such field."))
    gone = fields.delete(db(), _actor(), found)
    return outcome.done(_("Field %(key)s deleted with %(count)s value(s).", key=found.key, count=gone), url_for("fields.index"))


def _groups_page(**more: Any):  # type: ignore[no-untyped-def]
    return render_template("web/admin/groups.html", groups=groups.list_all(db()), agents=queue.agents(db()), **more)


@bp.get("/admin/groups", endpoint="groups")
@roles(Role.ADMIN)
def groups_index():  # type: ignore[no-untyped-def]
    return _groups_page()


@bp.post("/admin/groups")
@bp.post("/admin/groups/<int:group_id>")
@roles(Role.ADMIN)
def save_group(group_id: int | None = None):  # type: ignore[no-untyped-def]
    existing = editing(Group, group_id, _("No such group."))
    try:
        saved = groups.save(db(), _actor(), request.form.get("name", ""), email=request.form.get("email"),
                            group=existing)
        groups.set_members(db(), _actor(), saved, request.form.getlist("members"))
    except groups.GroupError as exc:
        outcome.undo(reason_of(exc))
        return _groups_page(draft=request.form), 422
    return outcome.done(_("Group %(name)s saved.", name=saved.name), url_for("fields.groups"))


@bp.post("/admin/groups/<int:group_id>/delete")
@roles(Role.ADMIN)
def delete_group(group_id: int):  # type: ignore[no-untyped-def]
    found = db().get(Group, group_id)
    if found is None:
        abort(404, _("No such group."))
    groups.delete(db(), _actor(), found)
    return outcome.done(_("Group %(name)s deleted.", name=found.name), url_for("fields.groups"))


@bp.post("/tickets/<int:number>/fields")
@roles(*WORKERS)
def ticket_fields(number: int):  # type: ignore[no-untyped-def]
    """The ticket page's fields form: each field_KEY, and the group; all checked before any is set."""
    ticket = ticket_or_404(number)
    values = {f.key: request.form.get(f"field_{f.key}", "") for f in fields.applicable(db(), ticket)
              if f"field_{f.key}" in request.form}
    try:
        changed = fields.set_values(db(), ticket, _actor().email, values)
        if "group" in request.form and (request.form["group"] or None) != ticket.group:
            groups.assign(db(), ticket, _actor().email, request.form["group"] or None)
            changed.append("group")
    except (fields.FieldError, groups.GroupError) as exc:
        return outcome.refused(reason_of(exc), url_for("tickets.show", number=number))
    return outcome.done(_("Changed: %(fields)s", fields=", ".join(changed)) if changed else _("Nothing changed."),
                        url_for("tickets.show", number=number))
