"""A mail that fails for a cause outside it (the data dir full or read-only) is tried again with backoff
and becomes a ticket once the cause is gone; only a mail that keeps failing that way is quarantined.

The data dir's attachment store is a real, tiny tmpfs: full (ENOSPC) or remounted read-only (EROFS).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.intake import RetryPolicy, process_pending
from helpdesk.core.models import Inbound, InboundStatus
from tests.core.desk import Desk, make_desk
from tests.core.test_oversize_attachment import mail_with_files
from tests.servers import require, running_as_root

LOG = b"disk log line\n" * 20_000  # 280 kB: more than the tmpfs holds


class TinyDisk:
    """A 64 kB tmpfs mounted where the attachments go."""

    def __init__(self, where: Path) -> None:
        self.where = where
        where.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True)
        self.mounted = True

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.where)], check=True)

    def remove(self) -> None:
        """The admin's fix: the attachments go to the (roomy, writable) disk beneath again."""
        if self.mounted:
            subprocess.run(["umount", str(self.where)], check=True)
            self.mounted = False


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[TinyDisk]:
    require("tmpfs mounts", running_as_root() and shutil.which("mount") is not None, "mounting a tmpfs needs root")
    disk = TinyDisk(tmp_path / "attachments")
    try:
        yield disk
    finally:
        disk.remove()


def _mail() -> bytes:
    return mail_with_files("Disk errors on the file server", "The log is attached.", {"disk.log": LOG})


def _store(desk: Desk) -> int:
    with transaction(desk.factory) as session:
        inbound = desk.intake.store(session, _mail(), source="test")
        assert inbound is not None
        return inbound.id


def _row(factory: sessionmaker[Session], inbound_id: int) -> Inbound:
    with factory() as session:
        row = session.get(Inbound, inbound_id)
        assert row is not None
        session.expunge(row)
        return row


@pytest.mark.parametrize("cause", ["full", "read-only"])
def test_mail_failing_for_a_full_or_read_only_data_dir_is_retried_and_becomes_a_ticket_after_the_fix(
    session_factory: sessionmaker[Session], tmp_path: Path, tiny_disk: TinyDisk, cause: str
) -> None:
    if cause == "read-only":
        tiny_disk.read_only()
    desk = make_desk(session_factory, tmp_path)
    desk.intake.retry = RetryPolicy(first_delay=1.0, max_delay=1.0, max_retries=5)
    inbound_id = _store(desk)

    [result] = process_pending(desk.factory, desk.intake)
    row = _row(session_factory, inbound_id)
    assert result.status is row.status is InboundStatus.NEW  # not quarantined: waiting for its next try
    assert row.retries == 1 and row.retry_at is not None
    expected = "No space left on device" if cause == "full" else "Read-only file system"
    assert row.reason is not None and expected in row.reason and "try 1 of 5" in row.reason
    assert process_pending(desk.factory, desk.intake) == []  # backing off: not again at once
    assert desk.tickets() == []

    tiny_disk.remove()
    time.sleep(1.1)
    [result] = process_pending(desk.factory, desk.intake)
    assert result.status is InboundStatus.PROCESSED and result.ticket_id is not None
    [message] = [m for m in desk.ticket(result.ticket_id)["messages"] if m["direction"] == "in"]
    assert [(a["filename"], a["size"]) for a in message["attachments"]] == [("disk.log", len(LOG))]


def test_mail_that_keeps_failing_the_same_transient_way_is_quarantined_in_the_end(
    session_factory: sessionmaker[Session], tmp_path: Path, tiny_disk: TinyDisk
) -> None:
    desk = make_desk(session_factory, tmp_path)
    desk.intake.retry = RetryPolicy(first_delay=0.0, max_delay=0.0, max_retries=3)
    inbound_id = _store(desk)
    statuses = [r.status for _ in range(5) for r in process_pending(desk.factory, desk.intake)]
    assert statuses == [InboundStatus.NEW, InboundStatus.NEW, InboundStatus.QUARANTINED]
    row = _row(session_factory, inbound_id)
    assert row.status is InboundStatus.QUARANTINED
    assert row.reason is not None and row.reason.startswith("failed 3 times for a transient cause")
    assert "No space left on device" in row.reason
    with session_factory() as session:  # nothing left waiting
        assert list(session.scalars(select(Inbound.id).where(Inbound.status == InboundStatus.NEW))) == []


# The database fails the first ticket insert once: refuses it (a deadlock victim, as PostgreSQL
# reports one) or drops the very connection (a restart, a failover). Real errors from the server.
_FAIL_ONCE = """
CREATE SEQUENCE fail_once;  -- nextval() is not rolled back with the failed transaction
CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('fail_once') = 1 THEN
    {action};
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fail_once BEFORE INSERT ON ticket FOR EACH ROW EXECUTE FUNCTION fail_once();
"""
_ACTIONS = {
    "deadlock": "RAISE EXCEPTION 'deadlock detected (test)' USING ERRCODE = '40P01'",
    "connection lost": "PERFORM pg_terminate_backend(pg_backend_pid())",
}


@pytest.mark.parametrize("failure", list(_ACTIONS))
def test_mail_whose_database_fails_mid_mail_is_retried_not_quarantined(
    postgres_cluster, tmp_path: Path, failure: str  # type: ignore[no-untyped-def]
) -> None:
    from helpdesk.core import db
    from sqlalchemy import text

    name = postgres_cluster.create_database()
    engine = db.make_engine(postgres_cluster.url(name))
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text(_FAIL_ONCE.replace("{action}", _ACTIONS[failure])))
        desk = make_desk(db.make_sessionmaker(engine), tmp_path)
        desk.intake.retry = RetryPolicy(first_delay=0.0, max_delay=0.0)
        inbound_id = _store(desk)
        results = []
        for _ in range(3):
            try:
                results += process_pending(desk.factory, desk.intake)
            except Exception as exc:  # the connection died under it: the runner tries again later
                results.append(type(exc).__name__)
        row = _row(desk.factory, inbound_id)
        assert row.status is InboundStatus.PROCESSED and row.ticket_id is not None
        assert InboundStatus.QUARANTINED not in [getattr(r, "status", None) for r in results]
    finally:
        engine.dispose()
        postgres_cluster.drop_database(name)
