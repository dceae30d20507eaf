"""The satisfaction links of the resolution mail: public pages, authorised by the link's signed token alone.

One click records the rating and thanks; the page offers an optional comment (a CSRF-protected
form the same token authorises). No login: the requester may have none.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import csat
from helpdesk.core.models import Rating, Ticket
from helpdesk.web.db import current_settings, db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import public

bp = Blueprint("csat", __name__, url_prefix="/satisfaction")


def _ticket(token: str) -> Ticket:
    try:
        return csat.read_token(db(), current_settings(), token)
    except csat.BadToken as exc:
        abort(404, _("Sorry: %(reason)s.", reason=reason_of(exc)))


@bp.get("/<token>/<rating>")
@public
def rate(token: str, rating: str) -> ResponseReturnValue:
    if rating not in ("good", "bad"):
        abort(404, _("Sorry: this satisfaction link is not valid."))
    ticket = _ticket(token)
    answer = csat.record(db(), ticket, rating=Rating(rating))
    db().commit()
    return render_template("web/csat/thanks.html", token=token, answer=answer, commented=False)


@bp.post("/<token>")
@public
def comment(token: str) -> ResponseReturnValue:
    ticket = _ticket(token)
    rating = request.form.get("rating")
    answer = csat.record(
        db(), ticket, rating=Rating(rating) if rating in ("good", "bad") else None,
        comment=request.form.get("comment", "")[: csat.COMMENT_LIMIT],
    )
    db().commit()
    return render_template("web/csat/thanks.html", token=token, answer=answer, commented=True)
