"""Outbound: drain the outbox over SMTP with aiosmtplib."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading

import aiosmtplib
from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.outbox import Claimed, RetryPolicy, claim_due, mark_failed, mark_sent
from core.settings import SmtpSettings, TlsMode

log = logging.getLogger(__name__)


class SendFailed(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _client(settings: SmtpSettings) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.tls is TlsMode.SSL,
        start_tls=True if settings.tls is TlsMode.STARTTLS else False,
        timeout=30,
    )


def _classify(exc: Exception) -> SendFailed:
    """5xx is permanent, everything else (4xx, connection trouble, timeouts) is worth a retry."""
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = bool(codes) and all(500 <= c < 600 for c in codes)
        return SendFailed(f"recipients refused: {'; '.join(str(r) for r in exc.recipients)}", permanent=permanent)
    if isinstance(code, int) and 500 <= code < 600:
        return SendFailed(f"{code} {getattr(exc, 'message', exc)}", permanent=True)
    return SendFailed(f"{type(exc).__name__}: {exc}", permanent=False)


async def _deliver_batch(settings: SmtpSettings, batch: list[Claimed]) -> dict[int, SendFailed | None]:
    results: dict[int, SendFailed | None] = {}
    client = _client(settings)
    try:
        await client.connect()
        if settings.user:
            await client.login(settings.user, settings.password or "")
    except Exception as exc:
        # Can't reach or log in to the server: the whole batch waits for the next round.
        failure = SendFailed(f"SMTP {settings.host}:{settings.port}: {type(exc).__name__}: {exc}", permanent=False)
        return {mail.id: failure for mail in batch}
    try:
        for n, mail in enumerate(batch):
            try:
                await client.sendmail(mail.mail_from, mail.recipients, mail.raw)
                results[mail.id] = None
            except Exception as exc:
                results[mail.id] = _classify(exc)
                if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                    try:
                        await client.connect()
                    except Exception as again:  # the rest of the batch waits for the next round
                        failure = SendFailed(f"reconnecting: {type(again).__name__}: {again}", permanent=False)
                        results.update({later.id: failure for later in batch[n + 1 :]})
                        break
    finally:
        try:
            await client.quit()
        except Exception:
            pass
    return results


def send_once(
    factory: sessionmaker[Session],
    settings: SmtpSettings,
    *,
    worker: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    batch_size: int = 50,
) -> tuple[int, int]:
    """Send everything that is due. Returns (sent, failed attempts)."""
    worker = worker or worker_name()
    sent = failed = 0
    while True:
        batch = claim_due(factory, worker, limit=batch_size, policy=policy)
        if not batch:
            return sent, failed
        results = asyncio.run(_deliver_batch(settings, batch))
        with transaction(factory) as session:
            for mail in batch:
                failure = results.get(mail.id)
                if failure is None:
                    mark_sent(session, mail.id)
                    sent += 1
                else:
                    status = mark_failed(session, mail.id, str(failure), permanent=failure.permanent, policy=policy)
                    log.warning("outbox %s to %s: %s (%s)", mail.id, mail.recipients, failure, status.value)
                    failed += 1
        if any(results.values()):
            return sent, failed  # don't hammer a failing server within one round
