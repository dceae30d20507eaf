"""The IMAP watcher: fetch new mail past the stored cursor and store it. It processes nothing.

Per batch: FETCH (no database transaction open), then store and cursor move in one short
transaction, then move or flag the mail on the server after that commit. A crash at any point
therefore loses nothing and, thanks to the UID check and Message-ID de-duplication, creates
nothing twice. A mailbox is read by one watcher at a time, the holder of its lease
(``core.lease``); the lease is checked again under the cursor's row lock before every batch is
committed. Stored mail (inbound rows, status new) is processed by the worker loop
(``helpdesk.runner.process_loop``), which the store's commit wakes (``Intake.arrived``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import lease
from helpdesk.core.db import UNAVAILABLE, transaction, unavailable_reason
from helpdesk.core.intake import Intake, process_pending
from helpdesk.core.mailauth import WHAT_TO_CHECK
from helpdesk.core.models import Inbound, MailboxCursor
from helpdesk.core.settings import MailboxSettings, Transport
from helpdesk.mailgateway.grapherrors import GraphError, GraphLoginFailed
from helpdesk.mailgateway.imap import ImapError, LoginFailed, MailboxClient

log = logging.getLogger(__name__)

class LeaseLost(Exception):
    """Another watcher holds this mailbox now (ours ran out); stop reading it."""


@dataclass(frozen=True)
class PollResult:
    fetched: int
    stored: int


@dataclass(frozen=True)
class WatchOptions:
    lease_seconds: float = 60.0
    poll_interval: float = 30.0  # servers without IDLE
    idle_seconds: float = 10.0  # IDLE is re-issued this often, to renew the lease and notice a stop
    batch: int = 100  # mails per fetch round trip and per commit
    first_backoff: float = 1.0
    max_backoff: float = 300.0
    max_database_backoff: float = 60.0
    database_label: str = "database"  # how log lines name it, e.g. after the setting that configures it


class Backoff:
    """Delays for reconnecting: doubling from `first` up to `ceiling`, reset after success."""

    def __init__(self, first: float = 1.0, ceiling: float = 300.0) -> None:
        self.first, self.ceiling, self.current = first, ceiling, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self.current = self.first


def _cursor(session: Session, name: str) -> MailboxCursor:
    cursor = session.get(MailboxCursor, name, with_for_update=True)
    if cursor is None:
        cursor = MailboxCursor(mailbox=name, last_uid=0)
        session.add(cursor)
        session.flush()
    return cursor


def _held_cursor(session: Session, mailbox: MailboxSettings, holder: str, lease_seconds: float) -> MailboxCursor:
    cursor = _cursor(session, mailbox.name)
    # Under the row lock the mailbox is ours unless another watcher took it (taking writes its name): a
    # lease that ran out while a long FETCH was on the wire, with nobody taking over, is renewed here.
    if cursor.lease_holder != holder:
        raise LeaseLost(f"{mailbox.name}: now held by {cursor.lease_holder}")
    lease.extend(cursor, lease_seconds)
    return cursor


def fetch_new(
    factory: sessionmaker[Session],
    intake: Intake,
    client: MailboxClient,
    mailbox: MailboxSettings,
    *,
    holder: str,
    lease_seconds: float = 60.0,
    batch: int = 100,
    sweep: bool = False,
) -> PollResult:
    """Store every mail past the cursor, batch by batch, moving each batch on the server after its commit.

    The caller holds the lease for ``holder``. ``sweep``: first move (or flag) mail below the cursor that
    was stored but not yet moved (the watcher died between the commit and the move), and read again what
    was never stored (the server sent no content); do it once per connection.
    """
    state = client.select(mailbox.folder)
    with transaction(factory) as session:
        cursor = _held_cursor(session, mailbox, holder, lease_seconds)
        if cursor.uidvalidity != state.uidvalidity:
            if cursor.uidvalidity is not None:
                log.warning(
                    "%s: UIDVALIDITY changed %s -> %s; reading the folder again (duplicates are recognised)",
                    mailbox.name, cursor.uidvalidity, state.uidvalidity,
                )
            cursor.uidvalidity = state.uidvalidity
            cursor.last_uid = 0
        last_uid = cursor.last_uid
    unread: list[int] = []
    if sweep and last_uid:
        # Moved or flagged mail is done; what is left below the cursor was stored but not moved or
        # flagged (the watcher died in between), or never stored (the server sent no content).
        left = client.uids_left(last_uid, mailbox.processed_folder)
        done = _stored_uids(factory, mailbox, state.uidvalidity, left)
        if done:
            log.info("%s: marking %d mail stored before an interruption processed", mailbox.name, len(done))
            client.mark_processed(done, mailbox.processed_folder)
        unread = sorted(set(left) - set(done))
        if unread:
            log.warning("%s: %d mail behind the cursor was never stored; reading it now", mailbox.name, len(unread))
    uids = unread + client.uids_after(last_uid)
    fetched = stored = 0
    for start in range(0, len(uids), batch):
        chunk = uids[start : start + batch]
        # Fetched before the transaction begins: a slow server must hold no lock and no open transaction.
        # The lease is renewed first, to keep other watchers off for the FETCH's time.
        if not lease.acquire(factory, mailbox.name, holder, lease_seconds):
            raise LeaseLost(f"{mailbox.name}: held by {lease.current_holder(factory, mailbox.name)}")
        mails: list[tuple[int | None, bytes]] = list(client.fetch(chunk, batch))
        got = {uid for uid, _ in mails if uid is not None}
        fetched += len(mails)
        with transaction(factory) as session:
            cursor = _held_cursor(session, mailbox, holder, lease_seconds)
            new = intake.store_many(session, mails, source=mailbox.name, uidvalidity=state.uidvalidity)
            fresh = sum(1 for inbound in new if inbound is not None)
            stored += fresh
            log.debug("%s: UID %s fetched, %d new", mailbox.name, ",".join(map(str, sorted(got))), fresh)
            del mails, new
            cursor.last_uid = max(cursor.last_uid, chunk[-1])
        missing = [uid for uid in chunk if uid not in got]
        if missing:
            # Expunged meanwhile, or the server sent no content: never move what was not stored.
            # Mail still there is read again by the next connection's sweep.
            log.warning("%s: no content for UID %s; left in %s", mailbox.name, ", ".join(map(str, missing)), mailbox.folder)
        client.mark_processed([uid for uid in chunk if uid in got], mailbox.processed_folder)
    return PollResult(fetched, stored)


def _stored_uids(
    factory: sessionmaker[Session], mailbox: MailboxSettings, uidvalidity: int, uids: list[int]
) -> list[int]:
    """Those of ``uids`` already stored from this mailbox (under this UIDVALIDITY)."""
    found: set[int] = set()
    with factory() as session:
        for start in range(0, len(uids), 500):
            found.update(session.scalars(select(Inbound.uid).where(
                Inbound.source == mailbox.name, Inbound.uidvalidity == uidvalidity,
                Inbound.uid.in_(uids[start : start + 500]),
            )))
    return [uid for uid in uids if uid in found]


def poll_once(
    factory: sessionmaker[Session], intake: Intake, mailbox: MailboxSettings, *, lease_seconds: float = 60.0
) -> PollResult:
    """Take the mailbox's lease (waiting for a dead holder's to run out) and store what is new; once the
    connection is closed and the lease given back, process stored mail (``helpdesk poll --once``)."""
    holder = lease.holder_name()
    if not lease.wait_for(factory, mailbox.name, holder, lease_seconds, timeout=lease_seconds + 1):
        raise LeaseLost(f"{mailbox.name}: held by {lease.current_holder(factory, mailbox.name)}; try again later")
    started = time.perf_counter()
    try:
        if mailbox.transport is Transport.GRAPH:
            from helpdesk.mailgateway import graphwatch
            from helpdesk.mailgateway.graph import GraphClient

            with GraphClient(mailbox) as graph:
                result = graphwatch.fetch_new(factory, intake, graph, mailbox, holder=holder, lease_seconds=lease_seconds)
        else:
            client = MailboxClient(mailbox)
            client.connect()
            try:
                result = fetch_new(factory, intake, client, mailbox, holder=holder, lease_seconds=lease_seconds, sweep=True)
            finally:
                client.close()
    finally:
        lease.release(factory, mailbox.name, holder)
    stored_at = time.perf_counter()
    processed = len(process_pending(factory, intake))
    log.info(
        "%s: stored %d in %.2f s, processed %d in %.2f s",
        mailbox.name, result.stored, stored_at - started, processed, time.perf_counter() - stored_at,
    )
    return result


def watch_mailbox(
    factory: sessionmaker[Session],
    intake: Intake,
    mailbox: MailboxSettings,
    stop: threading.Event,
    options: WatchOptions = WatchOptions(),
    *,
    holder: str | None = None,
) -> None:
    """Keep one mailbox drained until `stop` is set: fetch and store, wait with IDLE (or poll).

    Never raises: a dropped connection, a server restart or a refused login is logged in one line and
    retried with backoff; a mailbox another watcher holds is waited for.
    """
    holder = holder or lease.holder_name()
    backoff = Backoff(options.first_backoff, options.max_backoff)
    database_backoff = Backoff(options.first_backoff, options.max_database_backoff)
    renew_every = options.lease_seconds / 3
    waiting_logged = False
    try:
        while not stop.is_set():
            try:
                acquired = lease.acquire(factory, mailbox.name, holder, options.lease_seconds)
                database_backoff.reset()
                if not acquired:
                    if not waiting_logged:
                        log.info("%s: held by %s; standing by", mailbox.name, lease.current_holder(factory, mailbox.name))
                        waiting_logged = True
                    stop.wait(min(renew_every, 5.0))  # (this process's worker helps with the holder's backlog)
                    continue
                waiting_logged = False
                _serve_for(mailbox)(factory, intake, mailbox, stop, options, holder, backoff)
            except LeaseLost as exc:
                log.warning("%s: lease lost (%s); standing by", mailbox.name, exc)
            except (LoginFailed, GraphLoginFailed) as exc:
                delay = backoff.next()
                log.error("%s: %s; %s; retrying in %.0f s", mailbox.name, exc, WHAT_TO_CHECK[mailbox.auth], delay)
                stop.wait(delay)
            except (ImapError, GraphError, OSError) as exc:
                delay = backoff.next()
                log.warning("%s: %s; reconnecting in %.0f s", mailbox.name, exc, delay)
                stop.wait(delay)
            except UNAVAILABLE as exc:  # down or restarting: one line per try, no traceback; the lease stays ours
                delay = database_backoff.next()
                log.warning("%s: %s unavailable: %s; retrying in %.0f s",
                            mailbox.name, options.database_label, unavailable_reason(exc), delay)
                stop.wait(delay)
            except Exception:  # a bug: log it, never let the thread die
                delay = backoff.next()
                log.exception("%s: watcher failed; retrying in %.0f s", mailbox.name, delay)
                stop.wait(delay)
    finally:
        try:
            lease.release(factory, mailbox.name, holder)
        except Exception:  # noqa: BLE001 - stopping must not fail over it
            log.warning("%s: could not release the lease; it runs out by itself", mailbox.name)


# One connection's life for a mailbox, until stopped or something breaks (the caller backs off):
# _serve below for IMAP, graphwatch.serve for Microsoft Graph.
Serve = Callable[[sessionmaker[Session], Intake, MailboxSettings, threading.Event, WatchOptions, str, Backoff], None]


def _serve_for(mailbox: MailboxSettings) -> Serve:
    """How a mailbox is kept drained: an IMAP connection, or Microsoft Graph's delta rounds."""
    if mailbox.transport is Transport.GRAPH:
        from helpdesk.mailgateway import graphwatch  # it builds on this module

        return graphwatch.serve
    return _serve


def _serve(
    factory: sessionmaker[Session],
    intake: Intake,
    mailbox: MailboxSettings,
    stop: threading.Event,
    options: WatchOptions,
    holder: str,
    backoff: Backoff,
) -> None:
    """One connection's life: connect, then fetch/store/wait until stopped or something breaks."""
    client = MailboxClient(mailbox)
    try:
        client.connect()
        idle = client.has_idle
        log.info("%s: connected (%s)", mailbox.name, "IDLE" if idle else "polling")
        backoff.reset()
        wait = min(options.idle_seconds if idle else options.poll_interval, options.lease_seconds / 3)
        sweep = True
        while not stop.is_set():
            result = fetch_new(
                factory, intake, client, mailbox,
                holder=holder, lease_seconds=options.lease_seconds, batch=options.batch, sweep=sweep,
            )  # fmt: skip
            sweep = False
            if result.fetched:
                log.info("%s: fetched %d, stored %d", mailbox.name, result.fetched, result.stored)
            if stop.is_set():
                break
            if idle:
                client.wait_for_mail(wait)
            else:
                stop.wait(wait)
            if not lease.acquire(factory, mailbox.name, holder, options.lease_seconds):
                raise LeaseLost("ran out while waiting")
    finally:
        client.close()
