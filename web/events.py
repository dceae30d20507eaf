"""Events from monitoring tools, and the incidents they opened."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from helpdesk.core import events
from helpdesk.core.models import Event, Role, Ticket
from helpdesk.core.tickets import OPEN_STATUSES
from helpdesk.web.db import db
from helpdesk.web.security import roles

bp = Blueprint("events", __name__, url_prefix="/events")
RECENT = 200


@bp.get("")
@roles(Role.AGENT, Role.ADMIN)
def recent() -> ResponseReturnValue:
    incidents = db().scalars(
        select(Ticket)
        .where(Ticket.id.in_(select(Event.ticket_id)), Ticket.status.in_(OPEN_STATUSES))
        .order_by(Ticket.priority, Ticket.id.desc())
    )
    return render_template(
        "web/events/recent.html", events=events.list_events(db(), RECENT), incidents=list(incidents)
    )
