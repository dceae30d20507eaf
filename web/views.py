"""App-wide view helpers: template globals, filters and error pages."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException, InternalServerError

from helpdesk.core.mailauth import LoginStatus, failing
from helpdesk.core.models import Role, aware
from helpdesk.web.db import db
from helpdesk.web.security import allowed_roles, current_user

NAV = (
    ("tickets.queue", "Queue"),
    ("approvals.pending", "Approvals"),
    ("approvals.grants", "Grants"),
    ("events.recent", "Events"),
    ("reports.overview", "Reports"),
    ("admin.quarantine", "Quarantine"),
    ("admin.outbox", "Outbox"),
    ("admin.users", "Users"),
    ("macros.index", "Macros"),
    ("fields.index", "Fields"),
    ("fields.groups", "Groups"),
    ("webhooks.index", "Webhooks"),
    ("connect.mailboxes", "Mailboxes"),
)


def nav_for(role: Role) -> list[tuple[str, str]]:
    links = []
    for endpoint, label in NAV:
        allowed = allowed_roles(current_app, endpoint) if endpoint in current_app.view_functions else frozenset()
        if allowed is not None and role in allowed:
            links.append((endpoint, label))
    return links


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return aware(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def label(value: object) -> str:
    raw = getattr(value, "value", value)
    return str(raw).replace("_", " ") if raw is not None else "—"


def can(endpoint: str) -> bool:
    user = current_user()
    allowed = allowed_roles(current_app, endpoint)
    return user is not None and (allowed is None or user.role in allowed)


def failing_logins() -> list[LoginStatus]:
    """Mailbox logins whose last attempt failed: a banner on every page, for admins only."""
    user = current_user()
    if user is None or user.role is not Role.ADMIN:
        return []
    return failing(db())


def csrf() -> Markup:
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(escape(generate_csrf()))


def _error(exc: HTTPException) -> ResponseReturnValue:
    if exc.code == 500:
        exc = InternalServerError()  # its stock text: never the exception's
    code = exc.code or 500  # every HTTPException Flask hands here has one
    if request.path.startswith("/api/"):
        return {"error": exc.description or exc.name}, code
    return render_template("web/error.html", error=exc), code


def install(app: Flask) -> None:
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["label"] = label
    app.jinja_env.globals.update(
        current_user=current_user, nav_for=nav_for, can=can, csrf=csrf, failing_logins=failing_logins
    )
    for code in (400, 403, 404, 405, 413, 422, 429, 500):
        app.register_error_handler(code, _error)
