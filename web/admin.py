"""Admin pages: quarantined mail, the outbox, console users."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes, policy

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from helpdesk.core import intake, outbox
from helpdesk.core.models import Contact, Inbound, InboundStatus, Outbox, OutboxStatus, Role
from helpdesk.core.users import (
    TokenScope,
    WeakPassword,
    create_user,
    issue_api_token,
    revoke_api_token,
    set_password,
    set_role,
    token_scope,
)
from helpdesk.web import outcome
from helpdesk.web.db import db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import current_user, roles

bp = Blueprint("admin", __name__, url_prefix="/admin")
CONSOLE_ROLES = (Role.ADMIN, Role.AGENT, Role.APPROVER)
LIST_LIMIT = 200


@bp.get("/quarantine")
@roles(Role.ADMIN)
def quarantine() -> ResponseReturnValue:
    rows = db().scalars(
        select(Inbound)
        .where(Inbound.status == InboundStatus.QUARANTINED)
        .order_by(Inbound.id.desc())
        .limit(LIST_LIMIT)
    )
    return render_template("web/admin/quarantine.html", rows=list(rows))


@bp.get("/quarantine/<int:inbound_id>")
@roles(Role.ADMIN)
def quarantined(inbound_id: int) -> ResponseReturnValue:
    row = db().scalars(select(Inbound).where(Inbound.id == inbound_id).options(joinedload(Inbound.raw))).first()
    if row is None:
        abort(404, _("No such inbound mail."))
    head = row.raw.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0][:65536]
    try:
        headers = list(message_from_bytes(head + b"\n\n", policy=policy.compat32).items())
    except Exception:  # noqa: BLE001 - a mail that broke intake may break this too: show the bytes
        headers = []
    return render_template(
        "web/admin/quarantined.html", row=row, headers=headers, head=head.decode("utf-8", "replace")
    )


def _quarantine_action(act: Callable[[], object], done: str) -> ResponseReturnValue:
    try:
        act()
    except (LookupError, ValueError) as exc:
        return outcome.refused(reason_of(exc), url_for("admin.quarantine"))
    return outcome.done(done, url_for("admin.quarantine"))


@bp.post("/quarantine/<int:inbound_id>/requeue")
@roles(Role.ADMIN)
def requeue(inbound_id: int) -> ResponseReturnValue:
    actor = _actor()
    return _quarantine_action(
        lambda: intake.requeue(db(), inbound_id, actor),
        _("Mail %(number)s requeued: the poller will process it again.", number=inbound_id),
    )


@bp.post("/quarantine/<int:inbound_id>/discard")
@roles(Role.ADMIN)
def discard(inbound_id: int) -> ResponseReturnValue:
    actor = _actor()
    reason = request.form.get("reason") or ""
    return _quarantine_action(
        lambda: intake.discard(db(), inbound_id, actor, reason),
        _("Mail %(number)s discarded; its raw bytes are kept.", number=inbound_id),
    )


@bp.get("/outbox", endpoint="outbox")
@roles(Role.ADMIN)
def outbox_page() -> ResponseReturnValue:
    show = request.args.get("show", "failed")
    statuses = {
        "failed": (OutboxStatus.FAILED,),
        "waiting": (OutboxStatus.PENDING, OutboxStatus.SENDING),
        "sent": (OutboxStatus.SENT,),
    }.get(show, (OutboxStatus.FAILED,))
    rows = db().scalars(select(Outbox).where(Outbox.status.in_(statuses)).order_by(Outbox.id.desc()).limit(LIST_LIMIT))
    return render_template("web/admin/outbox.html", rows=list(rows), show=show)


@bp.post("/outbox/<int:outbox_id>/retry")
@roles(Role.ADMIN)
def retry(outbox_id: int) -> ResponseReturnValue:
    try:
        outbox.retry(db(), outbox_id)
    except (LookupError, ValueError) as exc:
        return outcome.refused(reason_of(exc), url_for("admin.outbox"))
    return outcome.done(_("Mail %(number)s queued to be sent again.", number=outbox_id), url_for("admin.outbox"))


@bp.get("/users")
@roles(Role.ADMIN)
def users() -> ResponseReturnValue:
    return _users_page()


def _users_page(token: tuple[str, str] | None = None) -> ResponseReturnValue:
    staff = db().scalars(select(Contact).where(Contact.role.in_(CONSOLE_ROLES)).order_by(Contact.email))
    return render_template("web/admin/users.html", users=list(staff), roles=CONSOLE_ROLES, token=token)


def _role(raw: str | None) -> Role:
    try:
        role = Role(raw or "")
    except ValueError:
        abort(400, "Unknown role.")
    if role not in CONSOLE_ROLES and role is not Role.USER:
        abort(400, "Unknown role.")
    return role


@bp.post("/users")
@roles(Role.ADMIN)
def add_user() -> ResponseReturnValue:
    email = (request.form.get("email") or "").strip()
    if "@" not in email or len(email) > 320:
        flash(_("An email address is needed."), "error")
        return redirect(url_for("admin.users"))
    try:
        create_user(db(), email, _role(request.form.get("role")), request.form.get("password") or "", actor=_actor())
    except WeakPassword as exc:
        return outcome.refused(reason_of(exc), url_for("admin.users"))
    return outcome.done(_("%(email)s can now log in.", email=email), url_for("admin.users"))


def _me() -> Contact:
    """The signed-in admin: @roles has let only a signed-in user reach these views."""
    user = current_user()
    if user is None:
        abort(401)
    return user


def _actor() -> str:
    return _me().email


def _user(user_id: int) -> Contact:
    user = db().get(Contact, user_id)
    if user is None:
        abort(404, _("No such user."))
    return user


@bp.post("/users/<int:user_id>/role")
@roles(Role.ADMIN)
def change_role(user_id: int) -> ResponseReturnValue:
    user = _user(user_id)
    role = _role(request.form.get("role"))
    if user.id == _me().id and role is not Role.ADMIN:
        flash(_("You cannot take the admin role from yourself."), "error")
        return redirect(url_for("admin.users"))
    set_role(db(), user, role, actor=_actor())
    return outcome.done(_("%(email)s is now %(role)s.", email=user.email, role=_(role.value)), url_for("admin.users"))


@bp.post("/users/<int:user_id>/password")
@roles(Role.ADMIN)
def change_password(user_id: int) -> ResponseReturnValue:
    user = _user(user_id)
    try:
        set_password(db(), user, request.form.get("password") or "", actor=_actor())
    except WeakPassword as exc:
        return outcome.refused(reason_of(exc), url_for("admin.users"))
    return outcome.done(_("Password of %(email)s changed.", email=user.email), url_for("admin.users"))


@bp.post("/users/<int:user_id>/token")
@roles(Role.ADMIN)
def token(user_id: int) -> ResponseReturnValue:
    user = _user(user_id)
    if request.form.get("action") == "revoke":
        revoke_api_token(db(), user, actor=_actor())
        return outcome.done(_("API token of %(email)s revoked.", email=user.email), url_for("admin.users"))
    # Rotating keeps what the token may do; "issue-events" makes one for a monitoring tool.
    scope = TokenScope.EVENTS if request.form.get("action") == "issue-events" else token_scope(user)
    new_token = issue_api_token(db(), user, actor=_actor(), scope=scope)
    db().commit()
    # Shown once, in this response only: it is stored hashed.
    return _users_page(token=(user.email, new_token))
