"""Outbound HTTP: deliver queued webhook deliveries (core.webhooks), as mailgateway.smtp sends the outbox.

The same claims, leases and records as mail (``_Lease`` with ``table=WebhookDelivery``): on PostgreSQL
"sent" is written before the request goes, holding the row, and a 2xx only commits it; a sender
killed meanwhile leaves the delivery to go again, under the same delivery id.

A 2xx is delivered. 408, 429, 5xx, timeouts and connection trouble are tried again with backoff until
the deadline; any other answer (other 4xx, and redirects, which are never followed: a signed event
goes only where the admin pointed it) fails for good, visibly on the webhooks page. Of an answer only
its status line and a short excerpt are kept, and only for a failure.
"""

from __future__ import annotations

import http.client
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message as HTTPMessage  # http.client.HTTPMessage's base, as the stubs type it
from typing import IO

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import webhooks
from helpdesk.core.db import transaction
from helpdesk.core.models import WebhookDelivery, utcnow
from helpdesk.core.outbox import RetryPolicy, claim_rows, release
from helpdesk.core.settings import Settings
from helpdesk.mailgateway.smtp import SendFailed, _Lease, drain, worker_name

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds, for connecting and for each read: well inside a claim (RetryPolicy.claim_for)
EXCERPT = 200  # characters of a failed answer's body kept for the admin
TEMPORARY = {408, 429}  # 4xx worth another try


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    delivery_id: str
    event: str
    url: str
    body: bytes  # rendered: the same bytes at every attempt
    secret: str | None  # None: sealed under another secret key
    enabled: bool
    recipients: list[str] = field(default_factory=list)  # for the lease's log lines: the URL


def claim(factory: sessionmaker[Session], settings: Settings, worker: str, *, limit: int,
          policy: RetryPolicy) -> list[ClaimedDelivery]:  # fmt: skip
    with transaction(factory) as session:
        rows: list[WebhookDelivery] = claim_rows(session, WebhookDelivery, worker, limit=limit, policy=policy)
        return [
            ClaimedDelivery(
                r.id, r.delivery_id, r.event, r.webhook.url, webhooks.render(settings, r.webhook.format, r.body),
                webhooks.secret_of(settings, r.webhook), r.webhook.enabled, [r.webhook.url],
            )
            for r in rows
        ]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> None:
        return None  # the 3xx comes back as an HTTPError, and fails the delivery


_opener = urllib.request.build_opener(_NoRedirects())


def _excerpt(answer: http.client.HTTPResponse | urllib.error.HTTPError) -> str:
    try:
        text = answer.read(EXCERPT * 4).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the status says enough
        return ""
    return " ".join(text.split())[:EXCERPT]


def post(item: ClaimedDelivery) -> SendFailed | None:
    """One attempt: None when delivered (2xx), else what went wrong and whether it is worth another try."""
    if not item.enabled:
        return SendFailed("the webhook is disabled", permanent=True)
    if item.secret is None:
        return SendFailed("the webhook's secret was sealed under another HELPDESK_SECRET_KEY: set a new secret",
                          permanent=True)  # fmt: skip
    request = urllib.request.Request(
        item.url, data=item.body, method="POST",
        headers=webhooks.headers(item.secret, item.delivery_id, item.event, item.body, utcnow()),
    )  # fmt: skip
    try:
        with _opener.open(request, timeout=TIMEOUT) as answer:
            answer.read(EXCERPT)  # the answer is not kept
            return None
    except urllib.error.HTTPError as exc:
        code = exc.code
        where = f" (to {exc.headers.get('Location')}, not followed)" if 300 <= code < 400 else ""
        failure = f"HTTP {code} {exc.reason}{where}: {_excerpt(exc)}".rstrip(": ")
        return SendFailed(failure, permanent=code < 500 and code not in TEMPORARY)
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused, reset
        reason = getattr(exc, "reason", exc)
        return SendFailed(f"{type(exc).__name__}: {reason}", permanent=False)


def deliver_once(factory: sessionmaker[Session], settings: Settings, *, worker: str | None = None,
                 policy: RetryPolicy = RetryPolicy(), batch_size: int = 50, stop: threading.Event | None = None,
                 ) -> tuple[int, int]:  # fmt: skip
    """Deliver everything that is due, or until ``stop`` is set. Returns (delivered, failed attempts)."""
    return drain(
        _Lease(factory, worker or worker_name(), policy, stop=stop, table=WebhookDelivery),
        lambda lease: claim(factory, settings, lease.worker, limit=batch_size, policy=policy),
        _deliver_batch,
    )


def _deliver_batch(batch: Sequence[ClaimedDelivery], lease: _Lease) -> None:
    for n, item in enumerate(batch):
        if lease.stopping:  # a restart: the rest is due again at once
            release(lease.factory, [i.id for i in batch[n:]], lease.worker, table=WebhookDelivery)
            return
        if lease.begin(item):  # else another sender took it over
            lease.record(item, post(item))
