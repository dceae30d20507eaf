"""The IMAP watcher: fetch new mail past the stored cursor, store it, then process it.

Store and cursor move commit together; only after that commit is the mail moved or flagged on
the server. A crash at any point therefore loses nothing and, thanks to the UID check and
Message-ID de-duplication, creates nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from core.db import transaction
from core.intake import Intake, process_pending
from core.models import MailboxCursor
from core.settings import MailboxSettings
from mailgateway.imap import MailboxClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollResult:
    fetched: int
    stored: int


def _cursor(session: Session, name: str) -> MailboxCursor:
    cursor = session.get(MailboxCursor, name, with_for_update=True)
    if cursor is None:
        cursor = MailboxCursor(mailbox=name, last_uid=0)
        session.add(cursor)
        session.flush()
    return cursor


def fetch_new(
    factory: sessionmaker[Session], intake: Intake, client: MailboxClient, mailbox: MailboxSettings, *, batch: int = 100
) -> PollResult:
    """Store every mail past the cursor, batch by batch, moving each batch on the server after its commit."""
    state = client.select(mailbox.folder)
    with transaction(factory) as session:
        cursor = _cursor(session, mailbox.name)
        if cursor.uidvalidity != state.uidvalidity:
            if cursor.uidvalidity is not None:
                log.warning(
                    "%s: UIDVALIDITY changed %s -> %s; reading the folder again (duplicates are recognised)",
                    mailbox.name, cursor.uidvalidity, state.uidvalidity,
                )
            cursor.uidvalidity = state.uidvalidity
            cursor.last_uid = 0
        last_uid = cursor.last_uid
    uids = client.uids_after(last_uid)
    fetched = stored = 0
    for start in range(0, len(uids), batch):
        chunk = uids[start : start + batch]
        with transaction(factory) as session:
            cursor = _cursor(session, mailbox.name)
            for uid, raw in client.fetch(chunk):
                fetched += 1
                if intake.store(session, raw, source=mailbox.name, uidvalidity=state.uidvalidity, uid=uid):
                    stored += 1
                cursor.last_uid = max(cursor.last_uid, uid)
        client.mark_processed(chunk, mailbox.processed_folder)
    return PollResult(fetched, stored)


def poll_once(factory: sessionmaker[Session], intake: Intake, mailbox: MailboxSettings) -> PollResult:
    """Connect, fetch what is new, process it, disconnect."""
    client = MailboxClient(mailbox)
    client.connect()
    try:
        result = fetch_new(factory, intake, client, mailbox)
    finally:
        client.close()
    process_pending(factory, intake)
    return result
