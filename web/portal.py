"""The requester portal under /portal: a sign-in link by mail, then the requester's own tickets.

Every view but the two sign-in steps is marked ``requester``: the guard (web.security) lets only a
portal session in, never a console one, and a portal session reaches no staff view.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import portal
from helpdesk.core.models import Contact, Ticket
from helpdesk.web import outcome
from helpdesk.web.db import current_settings, db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import PORTAL_SESSION, current_requester, public, requester
from helpdesk.web.tickets import attachment_response, uploads

bp = Blueprint("portal", __name__, url_prefix="/portal")


def me() -> Contact:
    contact = current_requester()
    assert contact is not None
    return contact


def ticket_of_mine(number: int) -> Ticket:
    ticket = portal.my_ticket(db(), me(), number)
    if ticket is None:
        abort(404, _("There is no ticket #%(number)s of yours.", number=number))  # someone else's reads as missing
    return ticket


def _act(number: int, action: Callable[[Ticket], object], done: str) -> ResponseReturnValue:
    try:
        action(ticket_of_mine(number))
    except portal.PortalError as exc:
        return outcome.refused(reason_of(exc), url_for("portal.ticket", number=number))
    return outcome.done(done, url_for("portal.ticket", number=number))


def client_address() -> str:
    return request.remote_addr or "?"


# Every answer to "mail me a link" takes at least this long: writing the mail for a known address
# takes ~18 ms against ~2 ms for an unknown one, and the difference would tell who is on file.
ANSWER_FLOOR = 0.25


def ask_for_link(address: str) -> None:
    """Mail a sign-in link if the address is on file (raises portal.TooManyLinks), in steady time."""
    started = time.monotonic()
    try:
        portal.request_link(db(), current_settings(), address, client_address())
    except portal.TooManyLinks:
        db().commit()  # nothing was counted; the commit only ends the transaction
        raise
    finally:
        time.sleep(max(0.0, ANSWER_FLOOR - (time.monotonic() - started)))
    db().commit()


@bp.route("/", methods=["GET", "POST"])
@public
def start() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("web/portal/start.html")
    address = request.form.get("email", "").strip()
    if "@" not in address or len(address) > 320:
        flash(_("Type the email address you write to the service desk from."), "error")
        return render_template("web/portal/start.html", email=address), 400
    try:
        ask_for_link(address)
    except portal.TooManyLinks as exc:
        return render_template("web/portal/start.html", email=address, error=reason_of(exc)), 429
    # The same answer whether or not the address is on file: nobody learns who writes to the desk.
    return render_template("web/portal/sent.html", email=address)


@bp.get("/sign-in/<token>")
@public
def confirm(token: str) -> ResponseReturnValue:
    # A button, not a redirect: mail scanners that open every link must not use up the one-time link.
    return render_template("web/portal/confirm.html", token=token)


@bp.post("/sign-in")
@public
def sign_in() -> ResponseReturnValue:
    try:
        contact = portal.redeem_link(db(), current_settings(), request.form.get("token", ""))
    except portal.LinkRefused as exc:
        db().commit()  # the refusal is audited
        return render_template("web/portal/start.html", error=reason_of(exc)), 400
    session.pop(PORTAL_SESSION, None)
    session.permanent = True
    session[PORTAL_SESSION] = portal.open_session(db(), current_settings(), contact)
    db().commit()
    return redirect(url_for("portal.tickets"))


@bp.post("/sign-out")
@requester
def sign_out() -> ResponseReturnValue:
    token = session.pop(PORTAL_SESSION, None)
    if isinstance(token, str):
        portal.end_session(db(), token)
        db().commit()
    return redirect(url_for("portal.start"))


@bp.get("/tickets")
@requester
def tickets() -> ResponseReturnValue:
    return render_template("web/portal/tickets.html", me=me(), tickets=portal.my_tickets(db(), me()),
                           help_address=current_settings().address)


@bp.get("/tickets/<int:number>")
@requester
def ticket(number: int) -> ResponseReturnValue:
    found = ticket_of_mine(number)
    return render_template(
        "web/portal/ticket.html", me=me(), ticket=found, messages=portal.public_messages(found),
        progress=portal.progress(db(), found),
    )


@bp.get("/tickets/<int:number>/attachments/<int:attachment_id>")
@requester
def attachment(number: int, attachment_id: int) -> ResponseReturnValue:
    item = portal.public_attachment(db(), ticket_of_mine(number), attachment_id)
    if item is None:
        abort(404, _("No such attachment."))
    return attachment_response(item)


@bp.post("/tickets/<int:number>/reply")
@requester
def reply(number: int) -> ResponseReturnValue:
    text, files = request.form.get("text", ""), uploads()
    return _act(number, lambda t: portal.reply(db(), current_settings(), t, me(), text, files), _("Reply sent."))


@bp.post("/tickets/<int:number>/close")
@requester
def close(number: int) -> ResponseReturnValue:
    return _act(number, lambda t: portal.close(db(), current_settings(), t, me()), _("Ticket closed."))
