"""The audit trail is append-only and tamper-evident."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from helpdesk.core import audit
from helpdesk.core.db import transaction


def test_entries_chain_and_verify(session_factory):
    with transaction(session_factory) as session:
        first = audit.record(
            session, actor="alice@example.org", action="ticket.priority", object_type="ticket",
            object_id=7, before={"priority": "P4"}, after={"priority": "P2"}, reason="VIP",
        )
        second = audit.record(session, actor="system", action="sla.warning", object_type="ticket", object_id=7)
    assert first.prev_hash == audit.GENESIS
    assert second.prev_hash == first.hash
    with transaction(session_factory) as session:
        result = audit.verify(session)
        assert result == audit.VerifyResult(ok=True, checked=2, first_bad_id=None)
        assert [e.action for e in audit.history(session, "ticket", 7)] == ["ticket.priority", "sla.warning"]


def test_editing_a_row_in_the_database_breaks_verify(session_factory):
    with transaction(session_factory) as session:
        ids = [
            audit.record(session, actor="bob@example.org", action=f"step{i}", object_type="ticket", object_id=1).id
            for i in range(4)
        ]
    with transaction(session_factory) as session:
        session.execute(text("UPDATE audit SET reason = 'nothing to see' WHERE id = :id"), {"id": ids[2]})
    with transaction(session_factory) as session:
        assert audit.verify(session) == audit.VerifyResult(ok=False, checked=3, first_bad_id=ids[2])


def test_deleting_a_row_breaks_verify(session_factory):
    with transaction(session_factory) as session:
        ids = [audit.record(session, actor="system", action="x", object_type="t", object_id=i).id for i in range(3)]
    with transaction(session_factory) as session:
        session.execute(text("DELETE FROM audit WHERE id = :id"), {"id": ids[1]})
    with transaction(session_factory) as session:
        result = audit.verify(session)
    assert not result.ok and result.first_bad_id == ids[2]


def test_values_that_are_not_json_are_stored_as_they_hash(session_factory):
    from datetime import datetime, timezone

    from helpdesk.core.models import TicketStatus

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with transaction(session_factory) as session:
        entry = audit.record(
            session, actor="system", action="ticket.status", object_type="ticket", object_id=3,
            before={"status": TicketStatus.OPEN, "due": when}, after={"status": TicketStatus.PENDING},
        )
    assert entry.before == {"status": "open", "due": "2026-01-02T03:04:05.000000"}
    with transaction(session_factory) as session:
        assert audit.verify(session).ok


def test_concurrent_writers_never_fork_the_chain(session_factory):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with transaction(session_factory) as session:
                    audit.record(session, actor=f"w{n}", action="write", object_type="t", object_id=i)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with transaction(session_factory) as session:
        result = audit.verify(session)
    assert result == audit.VerifyResult(ok=True, checked=45, first_bad_id=None)


def _entries(session_factory, n: int) -> list[int]:
    with transaction(session_factory) as session:
        ids = [audit.record(session, actor="system", action=f"step{i}", object_type="t", object_id=i).id for i in range(n)]
    with transaction(session_factory) as session:
        assert audit.verify(session) == audit.VerifyResult(ok=True, checked=n, first_bad_id=None)
    return ids


def test_deleting_the_newest_entries_breaks_verify(session_factory):
    ids = _entries(session_factory, 6)
    with transaction(session_factory) as session:
        session.execute(text("DELETE FROM audit WHERE id = :id"), {"id": ids[5]})
    with transaction(session_factory) as session:
        result = audit.verify(session)
    assert result == audit.VerifyResult(ok=False, checked=5, first_bad_id=None)
    assert result.reason == "the newest 1 of 6 entries were removed"
    with transaction(session_factory) as session:
        session.execute(text("DELETE FROM audit WHERE id >= :id"), {"id": ids[3]})
        assert audit.verify(session).reason == "the newest 3 of 6 entries were removed"


def test_moving_the_head_back_after_a_cut_breaks_verify(session_factory):
    ids = _entries(session_factory, 3)
    with transaction(session_factory) as session:
        session.execute(text("DELETE FROM audit WHERE id = :id"), {"id": ids[2]})
        session.execute(text("UPDATE audit_head SET count = 2, hash = (SELECT hash FROM audit WHERE id = :id)"), {"id": ids[1]})
    with transaction(session_factory) as session:
        result = audit.verify(session)
    assert not result.ok and result.reason.startswith("the head record was altered")


def test_deleting_the_head_row_breaks_verify(session_factory):
    _entries(session_factory, 2)
    with transaction(session_factory) as session:
        session.execute(text("DELETE FROM audit_head"))
    with transaction(session_factory) as session:
        result = audit.verify(session)
    assert result == audit.VerifyResult(ok=False, checked=2, first_bad_id=None)
    assert result.reason == "the head record is missing"


def test_a_chain_rebuilt_without_the_key_breaks_verify(session_factory):
    """Whoever can write to the database can recompute plain SHA-256 hashes, but not the keyed ones."""
    import hashlib
    import json

    from helpdesk.core.models import AuditEntry, AuditHead

    ids = _entries(session_factory, 3)
    with transaction(session_factory) as session:
        session.execute(text("UPDATE audit SET reason = 'forged' WHERE id = :id"), {"id": ids[1]})
        session.expire_all()
        prev = audit.GENESIS
        for entry in session.query(AuditEntry).order_by(AuditEntry.id):
            body = {"at": audit._instant(entry.at), "actor": entry.actor, "action": entry.action,
                    "object_type": entry.object_type, "object_id": entry.object_id, "before": entry.before,
                    "after": entry.after, "reason": entry.reason}
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            entry.prev_hash, entry.hash = prev, hashlib.sha256((prev + canonical).encode()).hexdigest()
            prev = entry.hash
        head = session.get(AuditHead, 1)
        assert head is not None
        head.hash, head.mac = prev, hashlib.sha256(f"head:3:{prev}".encode()).hexdigest()
    with transaction(session_factory) as session:
        result = audit.verify(session)
    assert result == audit.VerifyResult(ok=False, checked=1, first_bad_id=ids[0])


def test_verify_needs_the_secret_key_the_chain_was_written_with(session_factory):
    from sqlalchemy.orm import sessionmaker

    engine = session_factory.kw["bind"]
    ours, theirs = sessionmaker(engine), sessionmaker(engine)
    audit.use_secret(ours, "our secret")
    audit.use_secret(theirs, "another secret")
    ids = _entries(ours, 2)
    with transaction(theirs) as session:
        result = audit.verify(session)
    assert result == audit.VerifyResult(ok=False, checked=1, first_bad_id=ids[0])
    assert "secret key changed" in result.reason
