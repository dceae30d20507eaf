"""What a request works with: one database session, closed (rolled back if uncommitted) when the request ends,
and the helpdesk's settings (read once per process, when the app is made)."""

from __future__ import annotations

from typing import TypeVar

from flask import Flask, abort, current_app, g
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.settings import Settings


def db() -> Session:
    if "db" not in g:
        factory: sessionmaker[Session] = current_app.extensions["helpdesk"].session_factory
        g.db = factory()
    return g.db


T = TypeVar("T")


def editing(model: type[T], object_id: int | None, missing: str) -> T | None:
    """The row an edit form names, None when the form makes a new one, or a 404 (``missing``) if it names none."""
    if object_id is None:
        return None
    found = db().get(model, object_id)
    if found is None:
        abort(404, missing)
    return found


def current_settings() -> Settings:
    found: Settings = current_app.extensions["helpdesk"].settings
    return found


def _close(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def install(app: Flask) -> None:
    app.teardown_appcontext(_close)
