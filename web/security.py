"""Who may see what: login, roles per view, API tokens, login throttling, security headers.

Access is denied by default: every view must be marked `public` or carry the roles allowed to
use it, and one `before_request` hook enforces that for the whole app. Input no view can use
(a number past any id, a NUL character) is refused here too, before it reaches the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, abort, current_app, g, jsonify, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter, Map

from helpdesk.core import portal
from helpdesk.core.login_throttle import ThrottlePolicy, begin_attempt, login_succeeded
from helpdesk.core.models import MAX_ID, Contact, Role
from helpdesk.core.users import TokenScope, end_session, open_session, session_user, token_scope, user_for_token
from helpdesk.web.db import current_settings, db

F = TypeVar("F", bound=Callable[..., object])
STAFF = frozenset({Role.ADMIN, Role.AGENT, Role.APPROVER})
EVENT_ENDPOINTS = frozenset({"api.alertmanager"})  # all an `events` token may reach
PORTAL_SESSION = "portal_sid"  # the cookie's key for a portal session; staff sessions use "sid" alone

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def roles(*allowed: Role) -> Callable[[F], F]:
    """Mark a view as usable by these roles only."""

    def mark(view: F) -> F:
        view.allowed_roles = frozenset(allowed)  # type: ignore[attr-defined]  # a mark on the view function, read by _guard
        return view

    return mark


def public(view: F) -> F:
    view.public = True  # type: ignore[attr-defined]  # a mark on the view function, read by _guard
    return view


def requester(view: F) -> F:
    """Mark a view as the requester portal's: reached with a portal session only, never with a console one."""
    view.requester = True  # type: ignore[attr-defined]  # a mark on the view function, read by _guard
    return view


def allowed_roles(app: Flask, endpoint: str) -> frozenset[Role] | None:
    """None for a public endpoint; the allowed roles otherwise (empty: nobody)."""
    if endpoint == "static":
        return None
    view = app.view_functions.get(endpoint)
    if getattr(view, "public", False):
        return None
    return getattr(view, "allowed_roles", frozenset())


def current_user() -> Contact | None:
    return g.get("user")


def current_requester() -> Contact | None:
    """The requester signed in to the portal (portal views only; never set together with a staff user)."""
    return g.get("requester")


def login(user: Contact) -> None:
    session.clear()  # a fresh session on login: no fixation
    session.permanent = True
    session["sid"] = open_session(db(), user, lifetime=current_app.permanent_session_lifetime)
    db().commit()


def logout() -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        end_session(db(), sid)
        db().commit()
    session.clear()


def has_session(*, of_portal: bool = False) -> bool:
    """The request names a console (or portal) session (not yet checked: for what may run before the guard)."""
    return isinstance(session.get(PORTAL_SESSION if of_portal else "sid"), str)


def _session_user() -> Contact | None:
    # The signed cookie only names a session; whether it is still open is the database's to say.
    sid = session.get("sid")
    if not isinstance(sid, str):
        return None
    user = session_user(db(), sid, lifetime=current_app.permanent_session_lifetime)
    db().commit()  # its last use, written now and then
    return user


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _token_user() -> Contact | None:
    token = bearer_token()
    return user_for_token(db(), token) if token else None


def _unauthorized(error: str, realm: str) -> Response:
    """An API's 401: the reason as JSON, and the bearer realm a client should sign in to."""
    response = jsonify(error=error)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response


def _requester_guard(endpoint: str) -> ResponseReturnValue | None:
    # A portal view reads only a portal session (cookie key or a portal API token), so that a
    # requester never reaches a staff view and a staff session never stands in for a requester.
    is_api = endpoint.startswith("portal_api.")
    token = bearer_token() if is_api else session.get(PORTAL_SESSION)
    settings = current_settings()
    contact = portal.session_contact(db(), settings, token) if isinstance(token, str) else None
    db().commit()  # its last use, written now and then
    if contact is None:
        if is_api:
            return _unauthorized("sign in to the portal first", "helpdesk portal")
        return redirect(url_for("portal.start"))
    g.requester = contact
    return None


def _guard() -> ResponseReturnValue | None:
    endpoint = request.endpoint
    if endpoint is None:
        return None  # 404 / 405 follow
    if getattr(current_app.view_functions.get(endpoint), "requester", False):
        return _requester_guard(endpoint)
    allowed = allowed_roles(current_app, endpoint)
    if allowed is None:
        return None
    is_api = endpoint.startswith("api.")
    user = _token_user() if is_api else _session_user()
    if user is None:
        if is_api:
            return _unauthorized("authentication required", "helpdesk")
        return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))
    g.user = user
    if is_api and token_scope(user) is TokenScope.EVENTS:
        # A monitoring tool's token: the webhook it posts to, and nothing else, whatever its holder's role.
        if endpoint not in EVENT_ENDPOINTS:
            response = jsonify(error="this token may only post monitoring events")
            response.status_code = 403
            return response
        return None
    if user.role not in allowed:
        if is_api:
            response = jsonify(error="forbidden for your role")
            response.status_code = 403
            return response
        abort(403)
    return None


class IdConverter(IntegerConverter):
    """`<int:...>` bounded by MAX_ID: a number no row can have is a 404, not a database error."""

    def __init__(
        self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID, signed: bool = False
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):  # a MultiDict's items() would give only the first value per key
        items = value.items(multi=True) if isinstance(value, MultiDict) else value.items()
        return any(_has_nul(k) or _has_nul(v) for k, v in items)
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _refuse_nul() -> None:
    # PostgreSQL cannot store NUL in text and no field of ours needs one: refuse it everywhere alike.
    body = request.get_json(silent=True) if request.is_json else None
    if _has_nul(request.args) or _has_nul(request.form) or _has_nul(body):
        abort(400, "Text must not contain NUL characters.")


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if g.get("user") is not None or g.get("requester") is not None:
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


class TlsAwareSessionInterface(SecureCookieSessionInterface):
    """The session cookie is marked Secure whenever the request came over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (request and request.is_secure))


class LoginThrottle:
    """Failed logins per client address, and per account from that address (core.login_throttle).

    Counted in the database, not in this process: guesses spread over console processes add up.
    """

    def __init__(self, factory: sessionmaker[Session], policy: ThrottlePolicy | None = None) -> None:
        self._factory = factory
        self.policy = policy or ThrottlePolicy()

    def begin(self, client: str, account: str) -> bool:
        """Count this attempt before the password is checked; False: refuse it (too many)."""
        return begin_attempt(self._factory, self.policy, client, account)

    def succeeded(self, client: str, account: str) -> None:
        login_succeeded(self._factory, client, account)


def install(app: Flask) -> None:
    app.session_interface = TlsAwareSessionInterface()
    app.extensions["login_throttle"] = LoginThrottle(app.extensions["helpdesk"].session_factory)
    app.before_request(_guard)
    app.before_request(_refuse_nul)
    app.after_request(_headers)


def throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]
