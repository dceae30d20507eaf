"""Access approvals: pending requests and the grant register (approvers)."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from core.models import AccessGrant, AccessRequest, AccessStatus, Role
from web.db import db
from web.security import roles

bp = Blueprint("approvals", __name__, url_prefix="/approvals")


@bp.get("")
@roles(Role.APPROVER)
def pending():  # type: ignore[no-untyped-def]
    requests = db().scalars(
        select(AccessRequest)
        .where(AccessRequest.status == AccessStatus.PENDING)
        .options(joinedload(AccessRequest.requester), joinedload(AccessRequest.beneficiary), joinedload(AccessRequest.ticket))
        .order_by(AccessRequest.id)
    )
    return render_template("web/approvals/pending.html", requests=list(requests))


@bp.get("/grants")
@roles(Role.APPROVER)
def grants():  # type: ignore[no-untyped-def]
    rows = db().scalars(
        select(AccessGrant).options(joinedload(AccessGrant.contact)).order_by(AccessGrant.expires_at).limit(500)
    )
    return render_template("web/approvals/grants.html", grants=list(rows))
