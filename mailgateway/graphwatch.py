"""A mailbox read through Microsoft Graph: delta rounds instead of UIDs, with the IMAP watcher's guarantees.

Each delta page's mail is fetched (MIME, byte for byte), stored in one short transaction, and only
after that commit moved to the processed folder; then the link to the next page (or the round's
deltaLink) is kept on the mailbox's cursor row. A crash before the move leaves the mail in the folder
and the link where it was: the page is read again and the repeat is recognised by its Message-ID
(the intake's duplicate check), so nothing is lost and no ticket is opened twice. An expired delta
link starts the folder over from scratch, with the same safety net.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import lease
from helpdesk.core.db import transaction
from helpdesk.core.intake import Intake
from helpdesk.core.settings import MailboxSettings
from helpdesk.mailgateway.graph import GraphClient, SyncStateExpired
from helpdesk.mailgateway.watcher import Backoff, LeaseLost, PollResult, WatchOptions, _held_cursor

log = logging.getLogger(__name__)


def fetch_new(
    factory: sessionmaker[Session],
    intake: Intake,
    client: GraphClient,
    mailbox: MailboxSettings,
    *,
    holder: str,
    lease_seconds: float = 60.0,
) -> PollResult:
    """One delta round: store what is new page by page, move each page's mail after its commit."""
    assert mailbox.processed_folder is not None  # the settings make sure
    folder, processed = client.folder_id(mailbox.folder), client.folder_id(mailbox.processed_folder, create=True)
    with transaction(factory) as session:
        link = _held_cursor(session, mailbox, holder, lease_seconds).delta_link
    fetched = stored = 0
    while True:
        try:
            page = client.delta(link, folder)
        except SyncStateExpired as exc:
            if link is None:
                raise
            log.warning("%s: %s; reading the folder again (repeats are recognised)", mailbox.name, exc)
            link = None
            continue
        mails = [(message_id, raw) for message_id in page.ids if (raw := client.mime(message_id)) is not None]
        fetched += len(mails)
        if mails:
            with transaction(factory) as session:
                _held_cursor(session, mailbox, holder, lease_seconds)
                new = intake.store_many(session, [(None, raw) for _, raw in mails], source=mailbox.name)
                stored += sum(1 for inbound in new if inbound is not None)
        for message_id, _ in mails:  # after the commit: never move what is not stored
            client.move(message_id, processed)
        link = page.next_link or page.delta_link
        with transaction(factory) as session:
            _held_cursor(session, mailbox, holder, lease_seconds).delta_link = link
        if page.next_link is None:
            return PollResult(fetched, stored)


def serve(
    factory: sessionmaker[Session],
    intake: Intake,
    mailbox: MailboxSettings,
    stop: threading.Event,
    options: WatchOptions,
    holder: str,
    backoff: Backoff,
) -> None:
    """Read the folder every poll interval (Graph's change notifications need an address reachable from the
    internet) until stopped or something breaks (the caller backs off). Stored mail is processed by the
    worker loop (``helpdesk.runner.process_loop``), as the IMAP watcher's is."""
    with GraphClient(mailbox) as client:
        wait = min(options.poll_interval, options.lease_seconds / 3)
        while not stop.is_set():
            result = fetch_new(factory, intake, client, mailbox, holder=holder, lease_seconds=options.lease_seconds)
            backoff.reset()
            if result.fetched:
                log.info("%s: fetched %d, stored %d", mailbox.name, result.fetched, result.stored)
            if stop.wait(wait):
                break
            if not lease.acquire(factory, mailbox.name, holder, options.lease_seconds):
                raise LeaseLost("ran out while waiting")
