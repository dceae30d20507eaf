"""Agent collision in the console: the ticket page's presence poll, and the page that asks before a stale reply.

The page's script (static/console.js) polls every few seconds; no inline script (the CSP forbids it).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import presence, visibility
from helpdesk.core import tickets as ticket_service
from helpdesk.core.models import Contact, PresenceState, Ticket
from helpdesk.web.db import current_settings, db
from helpdesk.web.security import STAFF, current_user, roles

bp = Blueprint("presence", __name__)


def seen_in(form: Any) -> int | None:
    """The newest message the reply form's page showed; None (no check) when not said.

    The confirmation page carries the newest message it showed: one written after that asks again.
    """
    raw = str(form.get("seen") or "")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def confirm_reply(ticket: Ticket, text: str, refused: presence.NewerReply) -> str:
    """The draft kept, the newer messages shown, and a button that sends it anyway."""
    return render_template("web/tickets/confirm_reply.html", ticket=ticket, text=text, newer=refused.newer,
                           seen=refused.newer[-1].id)


def _ticket(number: int, user: Contact) -> Ticket:
    ticket = ticket_service.get(db(), number)
    if ticket is None or not visibility.may_read(db(), current_settings(), user, ticket):
        abort(404, _("There is no ticket #%(number)s.", number=number))
    return ticket


def poll(number: int, user: Contact, state: str | None) -> dict[str, Any]:
    """Record the caller on the ticket (when ``state`` is given) and say who else is there."""
    ticket = _ticket(number, user)
    if state is not None:
        try:
            presence.beat(db(), ticket, user, PresenceState(state))
        except ValueError:
            abort(400, "state is viewing or typing")
        db().commit()
    here = presence.others(db(), ticket, user)
    return {"others": [h.as_json() for h in here], "newest": presence.newest_public_id(ticket.messages),
            "poll_seconds": presence.POLL_SECONDS}


@bp.post("/tickets/<int:number>/presence")
@roles(*STAFF)
def here(number: int) -> ResponseReturnValue:
    body = request.get_json(silent=True)
    state = body.get("state") if isinstance(body, dict) else None
    user = current_user()
    assert user is not None
    return jsonify(poll(number, user, state if isinstance(state, str) else "viewing"))
