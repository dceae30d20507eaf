"""Reports: ticket volumes by kind and priority over time, SLA compliance, response and resolution times.

The figures are core.reports'; only the weekly series is counted here, for the charts.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_babel import format_date  # type: ignore[import-untyped, unused-ignore]
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core import csat, reports
from helpdesk.core.models import Role, Ticket, TicketKind, utcnow
from helpdesk.core.priority import DESK_PRIORITIES
from helpdesk.web.charts import Series, bars, stacked_columns
from helpdesk.web.db import current_settings, db
from helpdesk.web.security import roles

bp = Blueprint("reports", __name__, url_prefix="/reports")
WEEKS = 12
PRIORITIES = DESK_PRIORITIES


def weekly(field: str, keys: list[str]) -> tuple[list[str], list[Series]]:
    """Tickets opened per week over the last WEEKS weeks, split by a field."""
    now = utcnow()
    start = (now - timedelta(days=now.weekday(), weeks=WEEKS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = reports.weekly_counts(db(), getattr(Ticket, field), start, WEEKS)
    labels = [format_date(start + timedelta(weeks=w), "dd MMM") for w in range(WEEKS)]  # "05 Dec", "05 Dez."
    return labels, [Series(_(k.replace("_", " ")), tuple(float(counts[(w, k)]) for w in range(WEEKS))) for k in keys]


@bp.get("")
@roles(Role.ADMIN, Role.AGENT, Role.APPROVER)
def overview() -> ResponseReturnValue:
    settings = current_settings()
    figures = reports.report(db(), utcnow(), sla=settings.sla)
    kind_labels, by_kind = weekly("kind", [k.value for k in TicketKind])
    prio_labels, by_priority = weekly("priority", list(PRIORITIES))
    compliance = {
        _(metric): round(100 * values["compliance"], 1)
        for metric, values in figures["sla"].items()
        if values["compliance"] is not None
    }
    satisfaction = csat.results(db())
    times = {
        _("first response"): figures["mean_minutes_to_first_response"] or 0,
        _("resolution"): figures["mean_minutes_to_resolution"] or 0,
    }
    return render_template(
        "web/reports/overview.html",
        figures=figures,
        kind_chart=stacked_columns(kind_labels, by_kind),
        priority_chart=stacked_columns(prio_labels, by_priority),
        compliance_chart=bars(compliance, unit="%") if compliance else None,
        times_chart=bars(times, unit=" min"),
        backlog_chart=bars({_(age): n for age, n in figures["backlog"]["by_age"].items()}),  # core.reports.AGE_BUCKETS
        satisfaction=satisfaction,
        satisfaction_chart=satisfaction_chart(satisfaction) if satisfaction else None,
    )


def satisfaction_chart(rows: list[csat.ResultRow]) -> ResponseReturnValue:
    """Good and bad answers per month (oldest first), stacked."""
    months = sorted({r.month for r in rows})[-WEEKS:]
    good = tuple(float(sum(r.good for r in rows if r.month == m)) for m in months)
    bad = tuple(float(sum(r.bad for r in rows if r.month == m)) for m in months)
    return stacked_columns(months, [Series(_("good"), good), Series(_("bad"), bad)])
