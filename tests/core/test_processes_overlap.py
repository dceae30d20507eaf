"""Two workers processing mail on one PostgreSQL database overlap: what used to make them take turns.

- the audit chain's head: a mail's entries are chained at its commit (core.audit.chain_at_commit),
  so the writers' lock is held for that moment, not from the mail's first audited change;
- a new sender's contact, created by two workers' mails at once;
- the claim of a stored mail, which another worker must not claim again before it is processed.

No timing: where a worker must wait, the test waits until PostgreSQL shows it waiting.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import audit, tickets
from helpdesk.core.db import transaction
from helpdesk.core.intake import _claim, process_pending
from helpdesk.core.models import AuditEntry, Contact, InboundStatus, TicketKind
from helpdesk.core.sharing import release_claims, sharing, worker_connection
from tests.core.desk import mail, make_desk


def _open(session: Session, subject: str) -> None:
    requester = tickets.contact_for(session, f"{subject.lower()}@example.com")
    tickets.open_ticket(session, requester=requester, subject=subject, kind=TicketKind.INCIDENT)


def _verified(factory: sessionmaker[Session], count: int) -> list[str]:
    with transaction(factory) as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=count, first_bad_id=None)
        return [e.after["status"] for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_an_uncommitted_audited_change_does_not_hold_up_another_writer(pg_session_factory):
    factory = pg_session_factory
    with factory() as first, first.begin():
        audit.chain_at_commit(first)
        _open(first, "Printer")  # audited, not committed
        with factory() as second, second.begin():
            # Waited for the first's commit before (the writers' lock from its first entry on).
            second.execute(text("SET LOCAL lock_timeout = '20s'"))
            _open(second, "VPN")
        assert first.execute(select(AuditEntry.id)).all() == [(1,)]  # the second's, committed; its own kept
    _verified(factory, 2)
    with factory() as session:
        assert [e.object_id for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))] == [2, 1]


def test_entries_kept_for_the_commit_are_dropped_with_their_savepoint(session_factory):
    with transaction(session_factory) as session:
        audit.chain_at_commit(session)
        audit.record(session, actor="system", action="one", object_type="t", object_id=1, after={"status": "kept"})
        with pytest.raises(RuntimeError), session.begin_nested():
            audit.record(session, actor="system", action="two", object_type="t", object_id=2, after={"status": "undone"})
            raise RuntimeError("the mail fails: its savepoint is rolled back")
        with session.begin_nested():
            audit.record(session, actor="system", action="three", object_type="t", object_id=3, after={"status": "released"})
    assert _verified(session_factory, 2) == ["kept", "released"]


def test_a_status_change_is_chained_at_once_for_the_clocks_of_the_same_transaction(session_factory):
    with transaction(session_factory) as session:
        audit.chain_at_commit(session)
        kept = audit.record(session, actor="system", action="ticket.open", object_type="ticket", object_id=1,
                            after={"status": "new"})
        moved = audit.record(session, actor="system", action="ticket.status", object_type="ticket", object_id=1,
                             before={"status": "new"}, after={"status": "resolved"})
        assert kept.id is not None and moved.id == kept.id + 1  # the kept one first, in order
        assert session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all() == ["ticket.open", "ticket.status"]
    _verified(session_factory, 2)


def test_processing_a_mail_waits_for_the_writers_lock_only_at_its_commit(pg_session_factory, tmp_path: Path):
    desk = make_desk(pg_session_factory, tmp_path)
    with transaction(desk.factory) as session:
        desk.intake.store(session, mail(), source="test")
    done: list[object] = []
    with desk.factory() as console, console.begin():
        audit.record(console, actor="admin@example.org", action="console.change", object_type="t", object_id=1)
        # The console holds the writers' lock until its commit. A worker starts on the stored mail:
        worker = threading.Thread(target=lambda: done.append(process_pending(desk.factory, desk.intake)))
        worker.start()
        with desk.factory() as watcher:
            def waiter() -> int | None:
                return watcher.scalar(text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ))
            while (pid := waiter()) is None and not done:
                threading.Event().wait(0.02)
                watcher.rollback()
            assert pid is not None
            # It waits with the whole mail done: ticket, message, acknowledgement in the outbox (before, it
            # waited at the ticket's first audit entry, with the acknowledgement not yet written).
            held = watcher.scalars(text(
                "SELECT relation::regclass::text FROM pg_locks WHERE pid = :p AND mode = 'RowExclusiveLock'"
            ), {"p": pid}).all()
            assert {"ticket", "message", "outbox"} <= set(held)
    worker.join()
    [[result]] = done
    assert result.status is InboundStatus.PROCESSED  # type: ignore[attr-defined]
    with transaction(desk.factory) as session:
        assert audit.verify(session).ok


def test_two_workers_mails_from_one_new_sender_make_one_contact(pg_session_factory):
    factory = pg_session_factory
    found: list[int] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with transaction(factory) as session:
                found.append(tickets.contact_for(session, "new@example.com").id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with factory() as first, first.begin():
        mine = tickets.contact_for(first, "new@example.com").id
        pid = first.scalar(text("SELECT pg_backend_pid()"))
        thread = threading.Thread(target=second)
        thread.start()
        with factory() as watcher:
            while not (found or errors) and watcher.scalar(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_locks h ON h.transactionid = l.transactionid"
                " WHERE NOT l.granted AND h.granted AND h.pid = :p"), {"p": pid}) == 0:
                threading.Event().wait(0.02)
    thread.join()
    assert errors == [] and found == [mine]  # failed before: the second mail was quarantined (unique email)
    with factory() as session:
        assert session.scalars(select(Contact.email)).all() == ["new@example.com"]


def test_a_claimed_mail_is_not_claimed_again_by_another_worker(pg_session_factory, tmp_path: Path):
    desk = make_desk(pg_session_factory, tmp_path)
    with transaction(desk.factory) as session:
        desk.intake.store(session, mail(subject="first"), source="test")
        desk.intake.store(session, mail(subject="second"), source="test")
    share = sharing(desk.factory)
    with worker_connection(desk.factory) as one, worker_connection(desk.factory) as two:
        claimed = _claim(one, desk.intake, 1, share)
        again = _claim(two, desk.intake, 1, share)  # another worker, before the first locks its mail
        assert claimed is not None and again is not None
        assert claimed[0] != again[0]  # before: the same mail twice, a run counted that never happened
        release_claims(one)
        assert _claim(two, desk.intake, 1, share) == (claimed[0], [])  # (a claim that died: taken up again)
