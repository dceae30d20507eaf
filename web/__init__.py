"""The web console: a thin Flask layer over the core services.

`create_app` builds the app; `serve` runs it under waitress (blocking); `WebServer` runs it in a
thread and stops it cleanly (for `helpdesk run` and tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.middleware.proxy_fix import ProxyFix

from helpdesk.core import slastate
from helpdesk.core.db import UNAVAILABLE, transaction, unavailable_reason
from helpdesk.core.queueindex import ensure_sort_indexes
from helpdesk.core.search import ensure_index
from helpdesk.core.settings import Settings
from helpdesk.web import (
    admin,
    api,
    approvals,
    auth,
    connect,
    contacts,
    csat,
    db,
    events,
    fields_api,
    fields_views,
    i18n,
    macros,
    ops,
    portal,
    portal_api,
    presence,
    reports,
    security,
    sso,
    tickets,
    views,
    webhooks,
)
from helpdesk.web.server import WebServer, serve

__all__ = ["create_app", "serve", "WebServer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Helpdesk:
    """What the views need, kept on the app (no globals)."""

    settings: Settings
    session_factory: sessionmaker[Session]


def _derived_data(bind: Engine, settings: Settings, factory: sessionmaker[Session]) -> None:
    """The search and queue indexes, and the tickets' SLA outcomes under the configured policy (kept current after)."""
    ensure_index(bind, settings.search_language)
    ensure_sort_indexes(bind)
    with transaction(factory) as session:
        slastate.refresh(session, settings.sla)


def _derived_data_when_reachable(app: Flask, bind: Engine, settings: Settings, factory: sessionmaker[Session]) -> None:
    """Make the derived data now, or before the first request once the database answers.

    A console started while the database is down must still come up (``/healthz``, ``/readyz`` 503).
    """
    try:
        _derived_data(bind, settings, factory)
        return
    except UNAVAILABLE as exc:
        log.warning("search index and SLA outcomes not checked yet, the database is unavailable: %s", unavailable_reason(exc))
    done = False

    @app.before_request
    def ensure() -> None:
        nonlocal done
        if not done and request.blueprint != "ops":  # health checks answer without waiting on it
            try:
                _derived_data(bind, settings, factory)
                done = True
            except UNAVAILABLE:
                pass  # the view's own query reports it; tried again on the next request


def create_app(settings: Settings, session_factory: sessionmaker[Session], *, testing: bool = False) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(resources.files("helpdesk.templates")),
        static_folder="static",
    )
    app.url_map.converters["int"] = security.IdConverter  # before any route is added
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=testing,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="helpdesk_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session, which expires itself
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions["helpdesk"] = Helpdesk(settings=settings, session_factory=session_factory)
    slastate.use_policy(session_factory, settings.sla)  # tickets changed here keep outcomes under it
    bind = session_factory.kw.get("bind")
    if bind is not None:
        _derived_data_when_reachable(app, bind, settings, session_factory)

    if settings.web_proxies:
        # Only as many hops as are really ours: a client could send X-Forwarded-* itself.
        n = settings.web_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]

    app.before_request(tickets.make_room_for_reply_files)  # before CSRF protection reads the body
    csrf = CSRFProtect(app)
    db.install(app)
    security.install(app)
    sso.install(app)

    for blueprint in (auth.bp, sso.bp, tickets.bp, approvals.bp, events.bp, admin.bp, macros.bp, connect.bp, reports.bp,
                      api.bp, ops.bp, csat.bp, presence.bp, webhooks.bp, contacts.bp, fields_views.bp):
        app.register_blueprint(blueprint)
    csrf.exempt(api.bp)  # token-authenticated, never cookie-authenticated
    csrf.exempt(fields_api.bp)  # (nested in api.bp: exempt by its own name)
    app.register_blueprint(portal.bp)  # the requester portal: its own sessions (web.security.requester)
    app.register_blueprint(portal_api.bp)
    csrf.exempt(portal_api.bp)  # a portal token in the Authorization header, never a cookie
    views.install(app)
    i18n.install(app)  # after views: wraps its label filter
    return app
