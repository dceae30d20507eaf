"""How a console form ends: its changes committed and a note, or dropped and the reason, then the next page."""

from __future__ import annotations

from flask import flash, redirect
from werkzeug.wrappers import Response

from helpdesk.web.db import db


def done(message: str, to: str) -> Response:
    """Commit what the request changed, say ``message`` on the next page, and redirect to ``to``."""
    db().commit()
    flash(message, "info")
    return redirect(to)


def undo(reason: str) -> None:
    """Drop what the request changed and say ``reason`` on the page the caller shows next."""
    db().rollback()
    flash(reason, "error")


def refused(reason: str, to: str) -> Response:
    """Drop what the request changed, say ``reason`` on the next page, and redirect to ``to``."""
    undo(reason)
    return redirect(to)
