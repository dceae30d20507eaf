"""What a request works with: one database session, closed (rolled back if uncommitted) when the request ends,
and the helpdesk's settings (read once per process, when the app is made)."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.settings import Settings


def db() -> Session:
    if "db" not in g:
        factory: sessionmaker[Session] = current_app.extensions["helpdesk"].session_factory
        g.db = factory()
    return g.db


def current_settings() -> Settings:
    found: Settings = current_app.extensions["helpdesk"].settings
    return found


def _close(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def install(app: Flask) -> None:
    app.teardown_appcontext(_close)
