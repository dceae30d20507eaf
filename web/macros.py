"""Admin page for canned replies (macros): list, add, change, delete; core.macros checks and audits."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import macros, queue
from helpdesk.core.i18n import N_
from helpdesk.core.models import Contact, Macro, Role, TicketStatus
from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.web import outcome
from helpdesk.web.db import db, editing
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import current_user, roles

bp = Blueprint("macros", __name__, url_prefix="/admin/macros")


def _text(data: Any, key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


def fields_from(data: Any) -> dict[str, Any]:
    """The optional fields a macro sets, from a form or a JSON object (blank or missing: leave alone)."""
    status = _text(data, "status")
    assignee = _text(data, "assignee").lower()
    found: Contact | None = next((a for a in queue.agents(db()) if a.email == assignee), None) if assignee else None
    if assignee and found is None:
        raise macros.MacroError(N_("%(email)s is not an agent"), email=assignee)
    try:
        return {
            "status": TicketStatus(status) if status else None,
            "priority": _text(data, "priority").upper() or None,
            "category": _text(data, "category") or None,
            "assignee": found,
        }
    except ValueError:
        raise macros.MacroError(N_("unknown status %(status)r"), status=status) from None


def _page(**more: Any) -> str:
    return render_template(
        "web/admin/macros.html", macros=macros.list_all(db()), placeholders=macros.PLACEHOLDERS,
        statuses=[s for s in TicketStatus if s is not TicketStatus.AWAITING_APPROVAL], priorities=DESK_PRIORITIES,
        agents=queue.agents(db()), **more,
    )


@bp.get("", endpoint="index")
@roles(Role.ADMIN)
def index() -> ResponseReturnValue:
    return _page()


@bp.post("")
@bp.post("/<int:macro_id>")
@roles(Role.ADMIN)
def save(macro_id: int | None = None) -> ResponseReturnValue:
    macro = editing(Macro, macro_id, _("No such macro."))
    actor = current_user()
    assert actor is not None
    try:
        saved = macros.save(db(), actor, request.form.get("name", ""), request.form.get("body", ""), macro=macro,
                            **fields_from(request.form))
    except macros.MacroError as exc:
        outcome.undo(reason_of(exc))
        return _page(draft=request.form), 422
    return outcome.done(_("Macro %(name)s saved.", name=saved.name), url_for("macros.index"))


@bp.post("/<int:macro_id>/delete")
@roles(Role.ADMIN)
def delete(macro_id: int) -> ResponseReturnValue:
    macro = db().get(Macro, macro_id)
    actor = current_user()
    if macro is None or actor is None:
        abort(404, _("No such macro."))
    macros.delete(db(), actor, macro)
    return outcome.done(_("Macro %(name)s deleted.", name=macro.name), url_for("macros.index"))
