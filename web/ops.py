"""For operators and their tools: /healthz, /readyz and /metrics, unauthenticated and revealing only counts.

- /healthz: the process answers (no database access): for a supervisor deciding to restart it.
- /readyz: the database answers and no mailbox login is failing: for a load balancer deciding to send
  traffic, and for alerting. 503 otherwise; each check is one word.
- /metrics: Prometheus text, computed from the database at scrape time (core.metrics), so that it is
  the same whichever console process answers and counts the work of pollers and senders elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from helpdesk.core import mailauth
from helpdesk.core.metrics import DeskFigures, figures
from helpdesk.web.db import db
from helpdesk.web.security import public

bp = Blueprint("ops", __name__)

OK, UNREACHABLE, FAILING, UNKNOWN = "ok", "unreachable", "failing", "unknown"


@bp.get("/health")
@bp.get("/healthz")
@public
def healthz() -> ResponseReturnValue:
    return jsonify(status=OK)


def _readiness() -> dict[str, str]:
    try:
        db().execute(text("SELECT 1"))
    except SQLAlchemyError:
        return {"database": UNREACHABLE, "mailboxes": UNKNOWN}
    try:
        failing = mailauth.failing(db())
    except SQLAlchemyError:  # gone between the two statements
        return {"database": UNREACHABLE, "mailboxes": UNKNOWN}
    return {"database": OK, "mailboxes": FAILING if failing else OK}


@bp.get("/readyz")
@public
def readyz() -> ResponseReturnValue:
    checks = _readiness()
    ready = all(value == OK for value in checks.values())
    response = jsonify(status=OK if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response


class _DeskCollector(Collector):
    """The figures of one scrape as Prometheus metric families."""

    def __init__(self, desk: DeskFigures) -> None:
        self.desk = desk

    def collect(self) -> Iterator[Metric]:
        desk = self.desk
        yield CounterMetricFamily("helpdesk_mails_received", "Mails taken in (fetched or piped), ever", value=desk.inbound_total)
        mails = GaugeMetricFamily("helpdesk_mails", "Mails by inbound status now", labels=["status"])
        for status, n in desk.inbound.items():
            mails.add_metric([status], n)
        yield mails
        yield CounterMetricFamily(
            "helpdesk_mails_processed", "Mails whose processing ended (ticket, duplicate, ignored or quarantined)",
            value=desk.latency.count,
        )
        yield HistogramMetricFamily(
            "helpdesk_mail_processing_seconds", "From a mail's arrival to the end of its processing (stored times)",
            buckets=[*((repr(bound), n) for bound, n in desk.latency.buckets), ("+Inf", desk.latency.count)],
            sum_value=desk.latency.total_seconds,
        )
        yield GaugeMetricFamily(
            "helpdesk_outbox_depth", "Outgoing mails not yet sent (pending or sending)", value=desk.outbox_depth
        )
        yield GaugeMetricFamily(
            "helpdesk_outbox_retrying", "Unsent outgoing mails whose last attempt failed", value=desk.outbox_retrying
        )
        outbox = GaugeMetricFamily("helpdesk_outbox_mails", "Outgoing mails by status (failed: given up)", labels=["status"])
        for status, n in desk.outbox.items():
            outbox.add_metric([status], n)
        yield outbox
        breaches = CounterMetricFamily("helpdesk_sla_breaches", "SLA targets breached, ever", labels=["metric"])
        for metric, n in desk.sla_breaches.items():
            breaches.add_metric([metric], n)
        yield breaches
        logins = GaugeMetricFamily("helpdesk_mail_logins", "Mailbox and SMTP logins known, by auth kind", labels=["auth"])
        failing = GaugeMetricFamily(
            "helpdesk_mail_logins_failing", "Mailbox and SMTP logins whose last attempt failed (password or token)",
            labels=["auth"],
        )
        for kind, n in desk.mail_logins.items():
            logins.add_metric([kind], n)
            failing.add_metric([kind], desk.mail_logins_failing.get(kind, 0))
        yield logins
        yield failing


REUSE_SECONDS = 1.0  # figures this fresh are served again (app.config["METRICS_REUSE_SECONDS"])


class _Latest:
    """The figures last computed in this process, shared by concurrent scrapes.

    /metrics needs no login and reads every processed mail: hammering it costs the database at most
    one computation per process and second. Far under any scrape interval, so a counter read from
    one worker and then another still never goes back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._desk: DeskFigures | None = None

    def get(self, reuse: float) -> DeskFigures:
        with self._lock:
            if self._desk is None or time.monotonic() - self._at >= reuse:
                self._desk = figures(db())
                self._at = time.monotonic()
            return self._desk


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    state.app.extensions["desk_figures"] = _Latest()
    state.app.config.setdefault("METRICS_REUSE_SECONDS", REUSE_SECONDS)


@bp.get("/metrics")
@public
def metrics() -> ResponseReturnValue:
    try:
        desk = current_app.extensions["desk_figures"].get(current_app.config["METRICS_REUSE_SECONDS"])
    except SQLAlchemyError:
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DeskCollector(desk))
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
