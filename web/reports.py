"""Reports: ticket volumes, SLA compliance, response and resolution times."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("reports", __name__, url_prefix="/reports")
