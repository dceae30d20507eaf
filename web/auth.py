"""Log in and out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core.users import normalise_email, verify_password
from helpdesk.web import security, sso
from helpdesk.web.db import db
from helpdesk.web.security import STAFF, public, roles

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # Only a local path: never an open redirect to another site.
    # Browsers read a backslash as a slash: "/\\evil.example" would leave the site.
    if not target or not target.startswith("/") or "\\" in target or target.startswith("//") or urlsplit(target).netloc:
        return url_for("tickets.queue")
    return target


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("web/auth/login.html", next=request.args.get("next", ""))
    sso.refuse_password_login()
    email = normalise_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    client = request.remote_addr or "?"
    throttle = security.throttle()
    if not throttle.begin(client, email):  # counted now; it stays counted unless the password is right
        abort(429, _("Too many failed logins. Wait a few minutes and try again."))
    user = verify_password(db(), email, password)
    if user is None:
        flash(_("Wrong email or password."), "error")
        return render_template("web/auth/login.html", next=request.form.get("next", ""), email=email), 401
    db().commit()  # a rehashed password
    throttle.succeeded(client, email)
    security.login(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
@roles(*STAFF)
def logout() -> ResponseReturnValue:
    security.logout()
    flash(_("Logged out."), "info")
    return redirect(url_for("auth.login"))
