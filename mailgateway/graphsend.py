"""Outbound through Microsoft Graph's sendMail: the outbox drained as mailgateway.smtp drains it over SMTP.

The same claims, leases and records (``_Lease``): on PostgreSQL "sent" is written before the request
goes and Graph's 202 only commits it. Each mail goes out as the mailbox whose address is its sender
(else the first Graph mailbox), as our rendered MIME, so Message-ID, References and the ticket tag
are exactly what the outbox holds. Graph takes the recipients from the mail's headers, not from an
envelope: a mail whose recipients are not all named there is refused here, never sent elsewhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.outbox import Claimed, RetryPolicy, claim_due, release
from helpdesk.core.settings import MailboxSettings, Settings, Transport
from helpdesk.mailgateway.graph import GraphClient, GraphError, GraphLoginFailed
from helpdesk.mailgateway.smtp import SendFailed, _Lease, drain, worker_name

log = logging.getLogger(__name__)

TEMPORARY = {408, 429}  # 4xx worth another try (429 only once Retry-After was waited out several times)


def graph_mailboxes(settings: Settings) -> list[MailboxSettings]:
    return [m for m in settings.mailboxes if m.transport is Transport.GRAPH]


def sends_through_graph(settings: Settings) -> bool:
    """SMTP when a server is configured; otherwise Graph, when a mailbox is read through it."""
    return settings.smtp is None and bool(graph_mailboxes(settings))


def send_once(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    worker: str | None = None,
    policy: RetryPolicy | None = None,
    batch_size: int = 50,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Send everything that is due through Graph, or until ``stop`` is set. Returns (sent, failed attempts)."""
    mailboxes = graph_mailboxes(settings)
    policy = policy or RetryPolicy()
    return drain(
        _Lease(factory, worker or worker_name(), policy, stop=stop),
        lambda lease: claim_due(factory, lease.worker, limit=batch_size, policy=policy),
        lambda batch, lease: _deliver_batch(mailboxes, batch, lease),
    )


def _deliver_batch(mailboxes: list[MailboxSettings], batch: Sequence[Claimed], lease: _Lease) -> None:
    clients: dict[str, GraphClient] = {}
    try:
        for n, mail in enumerate(batch):
            if lease.stopping:  # a restart: the rest is due again at once
                release(lease.factory, [m.id for m in batch[n:]], lease.worker)
                return
            sender = next((m for m in mailboxes if (m.address or "").lower() == mail.mail_from.lower()), mailboxes[0])
            client = clients.get(sender.name) or clients.setdefault(sender.name, GraphClient(sender))
            if lease.begin(mail):  # else another sender took it over
                lease.record(mail, _send(client, mail))
    finally:
        for client in clients.values():
            client.close()


def _send(client: GraphClient, mail: Claimed) -> SendFailed | None:
    """One attempt: None when Graph accepted it (202), else what went wrong and whether to try again."""
    named = _header_recipients(mail.raw)
    missing = [r for r in mail.recipients if r.lower() not in named]
    if missing:
        return SendFailed(f"Graph sends to the mail's To/Cc/Bcc only; {', '.join(missing)} not among them",
                          permanent=True)  # fmt: skip
    try:
        client.send_mime(mail.raw)
    except GraphLoginFailed as exc:  # the app's consent or permission: the admin's to fix, the mail waits
        return SendFailed(str(exc), permanent=False)
    except GraphError as exc:
        status = exc.status or 0
        return SendFailed(str(exc), permanent=400 <= status < 500 and status not in TEMPORARY)
    return None


def _header_recipients(raw: bytes) -> set[str]:
    headers = BytesHeaderParser().parsebytes(raw)
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
    return {address.lower() for _, address in getaddresses(fields) if address}
