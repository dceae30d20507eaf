"""Access approvals: pending requests with approve/reject, and the grant register with revoke.

The policy (who may decide, no self-approval) is core.access's; this only asks and reports.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from helpdesk.core import access, visibility
from helpdesk.core.models import AccessGrant, AccessRequest, Role
from helpdesk.web import outcome
from helpdesk.web.db import current_settings, db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import current_user, roles

bp = Blueprint("approvals", __name__, url_prefix="/approvals")
GRANT_LIMIT = 500


@bp.get("")
@roles(Role.APPROVER)
def pending() -> ResponseReturnValue:
    # Only what this approver decides: another group's requests are not theirs to see.
    settings, user = current_settings(), current_user()
    assert user is not None
    mine = [r for r in access.pending(db()) if visibility.decides_group(db(), settings, user, r.resource_group)]
    return render_template("web/approvals/pending.html", requests=mine)


def decision(request_id: int, approve: bool, reason: str | None) -> tuple[bool, str]:
    """Ask core.access to decide; (done, message). A refusal's audit entry is kept."""
    item = db().get(AccessRequest, request_id)
    if item is None:
        abort(404, _("No such access request."))
    settings = current_settings()
    user = current_user()
    assert user is not None
    try:
        access.decide(db(), settings, item, user, approve, reason)
    except access.PolicyViolation as exc:
        db().commit()  # the refusal is evidence
        return False, _("Refused: %(reason)s", reason=reason_of(exc))
    except access.AccessError as exc:
        db().rollback()
        return False, reason_of(exc)
    db().commit()
    return True, (_("Access to %(resource)s for %(email)s approved.", resource=item.resource, email=item.beneficiary.email)
                  if approve else
                  _("Access to %(resource)s for %(email)s rejected.", resource=item.resource, email=item.beneficiary.email))


@bp.post("/<int:request_id>/decide")
@roles(Role.APPROVER)
def decide(request_id: int) -> ResponseReturnValue:
    choice = request.form.get("decision")
    if choice not in ("approve", "reject"):
        abort(400, _("Approve or reject."))
    done, message = decision(request_id, choice == "approve", (request.form.get("reason") or "").strip()[:500] or None)
    flash(message, "info" if done else "error")
    if request.form.get("back") == "ticket":
        item = db().get(AccessRequest, request_id)
        assert item is not None
        return redirect(url_for("tickets.show", number=item.ticket_id))
    return redirect(url_for("approvals.pending"))


@bp.get("/grants")
@roles(Role.APPROVER, Role.ADMIN)
def grants() -> ResponseReturnValue:
    rows = db().scalars(
        select(AccessGrant)
        .options(joinedload(AccessGrant.contact))
        .order_by(AccessGrant.revoked_at.is_not(None), AccessGrant.expires_at)
        .limit(GRANT_LIMIT)
    )
    return render_template("web/approvals/grants.html", grants=list(rows))


@bp.post("/grants/<int:grant_id>/revoke")
@roles(Role.APPROVER, Role.ADMIN)
def revoke(grant_id: int) -> ResponseReturnValue:
    grant = db().get(AccessGrant, grant_id)
    if grant is None:
        abort(404, _("No such grant."))
    reason = (request.form.get("reason") or "").strip()[:500]
    if not reason:
        flash(_("Say why the access is revoked."), "error")
        return redirect(url_for("approvals.grants"))
    user = current_user()
    assert user is not None
    try:
        access.revoke(db(), current_settings(), grant, user, reason)
    except (access.AccessError, access.PolicyViolation) as exc:
        return outcome.refused(reason_of(exc), url_for("approvals.grants"))
    return outcome.done(_("Access to %(resource)s for %(email)s revoked.", resource=grant.resource, email=grant.contact.email),
                        url_for("approvals.grants"))
