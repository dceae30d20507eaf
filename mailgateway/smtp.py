"""Outbound: drain the outbox over SMTP with aiosmtplib."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import aiosmtplib
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import UNAVAILABLE, transaction, unavailable_reason
from helpdesk.core.models import Outbox
from helpdesk.core.outbox import Claimed, Queue, RetryPolicy, claim_due, mark_failed, mark_sent, release, renew_claim
from helpdesk.core.settings import AuthKind, SmtpSettings, TlsMode
from helpdesk.core.sharing import sharing
from helpdesk.mailgateway import oauth

log = logging.getLogger(__name__)

# The longest one mail may take, MAIL FROM to the reply after DATA. Each mail's outbox claim is
# renewed just before it is sent and every third of RetryPolicy.claim_for while it is on the wire,
# and its result is recorded right after, so the claim cannot expire while the mail is on the wire
# or unrecorded and no second sender takes it over. Renewing per mail rather than leasing a whole
# batch keeps a killed sender's mail waiting one claim (a minute), not the batch's worst case.
SEND_TIMEOUT = 120.0
AUTH_REQUIRED = 530  # the session is not (or no longer) logged in: nothing wrong with the mail


class SendFailed(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


SMTP_TOKEN_NAME = "smtp"  # the SMTP login's name in token statuses (`helpdesk mailboxes`)


def _client(settings: SmtpSettings) -> aiosmtplib.SMTP:
    login: dict[str, object] = {"username": settings.user or None, "password": settings.password}
    if settings.auth is AuthKind.OAUTH2:
        assert settings.oauth is not None  # the settings make sure
        source = oauth.source_for(SMTP_TOKEN_NAME, settings.oauth)

        async def token() -> str:  # fetched (or taken from the cache) at each login, off the event loop
            try:
                return await asyncio.to_thread(source.access_token)
            except oauth.TokenError as exc:
                raise aiosmtplib.SMTPException(f"no OAuth2 token for SMTP login as {settings.user!r}: {exc}") from None

        login = {"username": settings.user, "oauth_token_generator": token}
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.tls is TlsMode.SSL,
        start_tls=settings.tls is TlsMode.STARTTLS,
        timeout=30,
        # aiosmtplib logs in on every connect(), so a reconnect mid-batch logs in again too.
        **login,  # type: ignore[arg-type]
    )


async def _connect(client: aiosmtplib.SMTP, settings: SmtpSettings) -> None:
    """Connect and log in, recording how the login went (`helpdesk mailboxes`)."""
    try:
        await _log_in(client, settings)
    except aiosmtplib.SMTPAuthenticationError as exc:
        refused = f"SMTP login as {settings.user!r} on {settings.host}:{settings.port} was refused: {exc.code} {exc.message}"
        await asyncio.to_thread(oauth.login_refused, SMTP_TOKEN_NAME, settings.auth, refused)
        raise
    if settings.auth is AuthKind.PASSWORD and settings.user:  # XOAUTH2 logins report through their token source
        await asyncio.to_thread(oauth.login_succeeded, SMTP_TOKEN_NAME, settings.auth)


async def _log_in(client: aiosmtplib.SMTP, settings: SmtpSettings) -> None:
    """With XOAUTH2 a refused token is replaced by a fresh one once."""
    if settings.auth is not AuthKind.OAUTH2:
        await client.connect()
        return
    assert settings.oauth is not None
    source = oauth.source_for(SMTP_TOKEN_NAME, settings.oauth)
    try:
        await client.connect()
    except aiosmtplib.SMTPAuthenticationError as exc:
        client.close()
        source.login_failed(f"{exc.code} {exc.message}")
        await client.connect()
    source.logged_in()


def _permanent(code: int) -> bool:
    return 500 <= code < 600 and code != AUTH_REQUIRED


def _classify(exc: Exception) -> SendFailed:
    """5xx other than 530 is permanent, everything else (4xx, connection trouble, timeouts) is worth a retry."""
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = bool(codes) and all(_permanent(c) for c in codes)
        return SendFailed(f"recipients refused: {'; '.join(str(r) for r in exc.recipients)}", permanent=permanent)
    if isinstance(code, int) and _permanent(code):
        return SendFailed(f"{code} {getattr(exc, 'message', exc)}", permanent=True)
    return SendFailed(f"{type(exc).__name__}: {exc}", permanent=False)


class Queued(Protocol):
    """A claimed item of a queue: a mail (core.outbox.Claimed) or a webhook delivery."""

    @property
    def id(self) -> int: ...
    @property
    def recipients(self) -> list[str]: ...


Q = TypeVar("Q", bound=Queued)


@dataclass
class _Lease:
    """One worker's claims: renewed just before each mail is sent, its result recorded right after.

    Recording each result at once (not after the batch) matters as much as the renewal: a
    mail sent but not yet recorded is still SENDING, and its claim must not expire meanwhile.
    A sender killed between the server's 250 and that record sends the mail again (the same
    bytes, the same Message-ID), so the record is made as short as the database allows:

    - PostgreSQL: "sent" is written before the mail goes, in a transaction that holds the row
      (other senders skip it, FOR UPDATE SKIP LOCKED) and that the 250 only has to commit;
      anything else rolls it back.
    - SQLite cannot hold its one write lock over a network call: the claim is renewed before
      the mail goes and while it is on the wire, and "sent" is one UPDATE after the 250.

    Webhook deliveries go the same way (``table=WebhookDelivery``, mailgateway.webhook): their 2xx is the 250.
    """

    factory: sessionmaker[Session]
    worker: str
    policy: RetryPolicy
    # Held for the whole run (set by drain): no pool check-out (and its ping) between the server's 250 and the commit.
    conn: Connection = field(init=False)
    stop: threading.Event | None = None  # set: finish the mail on the wire, give the rest back
    sent: int = 0
    failed: int = 0
    table: Queue = Outbox  # the queue drained: each claimed item has .id and .recipients

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    @property
    def holds_rows(self) -> bool:
        return sharing(self.conn).holds_rows_while_sending

    def begin(self, mail: Queued) -> bool:
        """Before sending: False if another sender has taken the mail over (then it is not sent)."""
        if self.holds_rows:
            if mark_sent(self.conn, mail.id, self.worker, table=self.table):
                return True  # uncommitted until the server's 250
            self.conn.rollback()
            log.warning("%s %s: %s lost its claim before sending; another sender has it",
                        self.table.__tablename__, mail.id, self.worker)
            return False
        renewed = renew_claim(self.conn, mail.id, self.worker, policy=self.policy, table=self.table)
        self.conn.commit()
        return renewed

    def _record_sent_later(self, mail: Queued, exc: BaseException) -> bool:
        """The database went away right after the server's 250: record "sent" once it is back.

        Nobody can claim the mail again while the database is away; once it is back the
        conditional UPDATE tells whether another sender took it over meanwhile. Given up only
        when the sender is asked to stop (then the mail goes again, under the same Message-ID).
        """
        delay = 0.5
        while True:
            log.warning(f"{self.table.__tablename__} %s: sent, but the database is unavailable (%s); recording it in %.1f s",
                        mail.id, unavailable_reason(exc), delay)
            if (self.stop or threading.Event()).wait(delay):  # asked to stop meanwhile
                raise exc
            try:
                with transaction(self.factory) as session:
                    return mark_sent(session, mail.id, self.worker, table=self.table)
            except UNAVAILABLE as again:
                exc, delay = again, min(delay * 2, 30.0)

    async def keep(self, mail: Queued) -> None:
        """Renew the claim while the mail is on the wire (a slow server, a big mail); PostgreSQL holds the row instead."""
        if self.holds_rows:
            return
        every = max(self.policy.claim_for.total_seconds() / 3, 1.0)
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(
                    renew_claim, self.factory, mail.id, self.worker, policy=self.policy, table=self.table
                )
            except Exception as exc:  # noqa: BLE001 - the send goes on; its result is recorded all the same
                log.warning("outbox %s: could not renew the claim: %s", mail.id, type(exc).__name__)

    def record(self, mail: Queued, failure: SendFailed | None) -> None:
        if failure is None:
            try:
                done = self.holds_rows or mark_sent(self.conn, mail.id, self.worker, table=self.table)
                if done:
                    self.conn.commit()
            except UNAVAILABLE as exc:
                self.conn.rollback()  # the connection is gone; the next statement gets a new one
                done = self._record_sent_later(mail, exc)
            if done:
                self.sent += 1
            else:
                log.warning(f"{self.table.__tablename__} %s: sent, but %s's claim was taken over meanwhile", mail.id, self.worker)
            return
        if self.holds_rows and self.conn.in_transaction():
            self.conn.rollback()  # not sent after all: the row is free again
        with transaction(self.factory) as session:
            status = mark_failed(
                session, mail.id, self.worker, str(failure), permanent=failure.permanent, policy=self.policy,
                table=self.table,
            )
            if status is not None:
                log.warning(f"{self.table.__tablename__} %s to %s: %s (%s)", mail.id, mail.recipients, failure, status.value)
            self.failed += 1


async def _deliver_batch(settings: SmtpSettings, batch: Sequence[Claimed], lease: _Lease) -> None:
    """Send a claimed batch over one connection. A mail whose claim was lost is not sent and not recorded."""
    client = _client(settings)
    try:
        await _connect(client, settings)  # and logs in, if settings.user is set
    except Exception as exc:  # noqa: BLE001 - any failure to connect or log in is recorded on each mail
        # Can't reach or log in to the server: the whole batch waits for the next round.
        failure = SendFailed(f"SMTP {settings.host}:{settings.port}: {type(exc).__name__}: {exc}", permanent=False)
        for mail in batch:
            lease.record(mail, failure)
        return
    try:
        for n, mail in enumerate(batch):
            if lease.stopping:
                # Asked to stop (a restart): the rest is due again at once, not after the claim runs out.
                release(lease.factory, [m.id for m in batch[n:]], lease.worker)
                break
            if not lease.begin(mail):
                continue  # another sender took it over
            keeper = asyncio.create_task(lease.keep(mail))
            try:
                await asyncio.wait_for(client.sendmail(mail.mail_from, mail.recipients, mail.raw), SEND_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - recorded on the mail, classified as permanent or not
                keeper.cancel()
                lease.record(mail, _classify(exc))
                if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, TimeoutError)):
                    # Connection lost, or in an unknown state after a timeout: a new one, logged in again.
                    client.close()
                    try:
                        await _connect(client, settings)
                    except Exception as again:  # noqa: BLE001 - the rest of the batch waits for the next round
                        failure = SendFailed(f"reconnecting: {type(again).__name__}: {again}", permanent=False)
                        for later in batch[n + 1 :]:
                            lease.record(later, failure)
                        break
            else:
                keeper.cancel()
                lease.record(mail, None)
    finally:
        with contextlib.suppress(Exception):  # the mail is recorded; a failed goodbye changes nothing
            await client.quit()


def send_once(
    factory: sessionmaker[Session],
    settings: SmtpSettings,
    *,
    worker: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    batch_size: int = 50,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Send everything that is due, or until ``stop`` is set. Returns (sent, failed attempts)."""
    return drain(
        _Lease(factory, worker or worker_name(), policy, stop=stop),
        lambda lease: claim_due(factory, lease.worker, limit=batch_size, policy=policy),
        lambda batch, lease: asyncio.run(_deliver_batch(settings, batch, lease)),
    )


def drain(
    lease: _Lease, claim: Callable[[_Lease], Sequence[Q]], deliver: Callable[[Sequence[Q], _Lease], None]
) -> tuple[int, int]:
    """Claim and deliver batches until none is due, one had a failure, or the lease is asked to stop.

    Returns (sent, failed attempts). The lease's connection is held for the whole run.
    """
    with lease.factory.kw["bind"].connect() as lease.conn:
        while not lease.stopping:
            batch = claim(lease)
            if not batch:
                break
            failed_before = lease.failed
            deliver(batch, lease)
            if lease.failed > failed_before:
                break  # don't hammer a failing server within one round
        return lease.sent, lease.failed
