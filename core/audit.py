"""Append-only, tamper-evident audit trail.

Each entry's hash is an HMAC-SHA256 over the previous entry's hash and the canonical JSON of the
entry, so editing or deleting any row breaks every hash after it. The HMAC is keyed with a key
derived from the settings' secret key, which is not in the database: whoever can write to the
database cannot rebuild a valid chain. Cutting entries off the end leaves a valid chain, so a head
row (count and newest hash, itself HMAC'd) is written with every entry and verify compares the
chain's end with it. Writers serialise on the chain head: two writers must never chain onto the
same predecessor.

Where several processes write at once (PostgreSQL), a transaction may keep its entries until its
commit (``chain_at_commit``): they are chained and written just before it, and the writers' lock is
held for that moment only, not for the whole transaction. Chain order is then commit order; an
entry's ``at`` is still the moment it was recorded.

What it cannot show: the whole database put back to an earlier copy (head included), or emptied.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from helpdesk.core.locks import WRITES, serialise, transaction_memo
from helpdesk.core.models import AuditEntry, AuditHead, utcnow
from helpdesk.core.settings import Settings

GENESIS = "0" * 64
SYSTEM = "system"

_KEY = "audit.key"  # in Session.info, put there for a whole sessionmaker by use_secret()
_PENDING = "audit.pending"  # in Session.info: (root transaction, [(entry, savepoint it was recorded in)])
_HEAD_ID = 1


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str = field(default="", compare=False)  # one line, for people


def use_secret(factory: sessionmaker[Session], secret_key: str) -> None:
    """Key the chain of every session ``factory`` makes with ``secret_key``; called once at start-up."""
    factory.configure(info={**factory.kw.get("info", {}), _KEY: _derive(secret_key)})


def _derive(secret_key: str) -> bytes:
    # A key of its own rather than the secret itself: the secret also signs our Message-IDs.
    return hmac.new(secret_key.encode(), b"helpdesk audit chain", hashlib.sha256).digest()


# A session of a factory that use_secret() never saw (tests, benchmarks) keys with the default
# settings' secret, as everything else does with default settings.
_DEFAULT_KEY = _derive(Settings.secret_key)


def _key(session: Session) -> bytes:
    key: bytes = session.info.get(_KEY, _DEFAULT_KEY)
    return key


def _plain(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the JSON column will give back, so the hash is over what is stored."""
    if value is None:
        return None
    stored: dict[str, Any] = json.loads(json.dumps(value, default=_jsonable))
    return stored


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _instant(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


def _instant(at: datetime) -> str:
    # SQLite hands datetimes back naive; both forms must hash the same.
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def _digest(entry: AuditEntry, key: bytes) -> str:
    body = {
        "at": _instant(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "before": entry.before,
        "after": entry.after,
        "reason": entry.reason,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, (entry.prev_hash + canonical).encode("utf-8"), hashlib.sha256).hexdigest()


def _head_mac(key: bytes, count: int, newest: str) -> str:
    # Without it the head could be set to any entry's hash (they are in the database) after a cut.
    return hmac.new(key, f"head:{count}:{newest}".encode(), hashlib.sha256).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    flush: bool = True,
) -> AuditEntry:
    """Append one entry to the chain (flushed, committed with the caller's transaction).

    ``flush=False``: leave the insert to the session's next flush (one flush less on a hot path).

    The first entry of a transaction takes the writers' lock and reads the head; the lock is held
    until commit, so later entries of the same transaction chain onto the head they remember. The
    head row moves on with each entry, in the same transaction.

    In a transaction that chains at commit (``chain_at_commit``) the entry is kept until then (no
    id yet), unless the writers' lock is held already or it changes a status, which the SLA clocks
    of the same transaction read back from the trail: then it is chained now, after those kept.
    """
    entry = AuditEntry(
        at=utcnow(),
        actor=actor or SYSTEM,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=_plain(before),
        after=_plain(after),
        reason=reason,
    )
    pending = _pending(session)
    if pending is not None and not _holds_lock(session) and not _status_change(entry):
        pending.append((entry, session.get_nested_transaction()))
        if flush:
            session.flush()
    else:
        _chain(session, [entry], flush=flush)
    from helpdesk.core import webhooks  # imported here: webhooks audits its own changes through this module

    webhooks.from_audit(session, entry)  # every ticket change passes here: the one place events come from
    return entry


def chain_at_commit(session: Session) -> None:
    """Keep the entries of ``session``'s current transaction until its commit, then chain them.

    The writers' lock is then taken just before the commit rather than at the first entry, so
    writers that audit (two processes handling mail) overlap instead of taking turns. An entry
    recorded in a savepoint that is rolled back is dropped with it.
    """
    root = session.get_transaction()
    if root is None:
        raise ValueError("chain_at_commit needs a transaction begun")
    if _pending(session) is None:
        session.info[_PENDING] = (root, [])


def _pending(session: Session) -> list[tuple[AuditEntry, SessionTransaction | None]] | None:
    kept = session.info.get(_PENDING)
    if kept is None or kept[0] is not session.get_transaction():
        return None  # not asked for, or for a transaction that has ended
    pending: list[tuple[AuditEntry, SessionTransaction | None]] = kept[1]
    return pending


def _holds_lock(session: Session) -> bool:
    memo = transaction_memo(session)
    return "audit.head" in memo or WRITES in memo.get("locks", ())


def _status_change(entry: AuditEntry) -> bool:
    before, after = entry.before or {}, entry.after or {}
    return "status" in after and before.get("status", after["status"]) != after["status"]


def _chain(session: Session, entries: list[AuditEntry], *, flush: bool = True) -> None:
    """Chain the kept entries, then ``entries``, onto the head, under the writers' lock."""
    head: AuditHead | None = transaction_memo(session).get("audit.head")
    if head is None:
        serialise(session)
        head = session.get(AuditHead, _HEAD_ID, populate_existing=True)
        if head is None:
            head = AuditHead(id=_HEAD_ID, count=0, hash=GENESIS, mac="")
            session.add(head)
    pending = _pending(session)
    kept = [entry for entry, _ in pending] if pending else []
    if pending:
        pending.clear()
    key = _key(session)
    for entry in [*kept, *entries]:
        entry.prev_hash = head.hash
        entry.hash = _digest(entry, key)
        head.count, head.hash = head.count + 1, entry.hash
        session.add(entry)
    head.mac = _head_mac(key, head.count, head.hash)
    if flush:
        session.flush()
    transaction_memo(session)["audit.head"] = head


@event.listens_for(Session, "before_commit")
def _chain_kept(session: Session) -> None:
    if not _pending(session) or session.get_nested_transaction() is not None:
        return  # nothing kept, or a savepoint released: its entries wait for the transaction's commit
    session.flush()  # the transaction's other writes first, outside the writers' lock
    _chain(session, [])


@event.listens_for(Session, "after_soft_rollback")
def _drop_undone(session: Session, previous: SessionTransaction) -> None:
    pending = _pending(session)
    if not pending:
        return
    boundary: SessionTransaction | None = previous  # what the rollback undid: a savepoint, or everything
    while boundary is not None and not boundary.nested:
        boundary = boundary.parent
    pending[:] = [(entry, where) for entry, where in pending if boundary is not None and not _within(where, boundary)]


def _within(where: SessionTransaction | None, boundary: SessionTransaction) -> bool:
    while where is not None:
        if where is boundary:
            return True
        where = where.parent
    return False


def verify(session: Session) -> VerifyResult:
    """Walk the chain in order; report the first entry whose links or contents do not match, then
    whether the chain ends where its head says."""
    key = _key(session)
    prev = GENESIS
    checked = 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(500):
        checked += 1
        if entry.prev_hash != prev or _digest(entry, key) != entry.hash:
            cause = "altered, or an entry before it removed" + (", or the secret key changed" if checked == 1 else "")
            return VerifyResult(
                ok=False, checked=checked, first_bad_id=entry.id,
                reason=f"entry {entry.id} does not match its hash or its predecessor ({cause})",
            )
        prev = entry.hash
    head = session.get(AuditHead, _HEAD_ID)

    def broken(reason: str) -> VerifyResult:
        return VerifyResult(ok=False, checked=checked, first_bad_id=None, reason=reason)

    if head is None:
        return broken("the head record is missing") if checked else VerifyResult(ok=True, checked=0, first_bad_id=None)
    if not hmac.compare_digest(head.mac, _head_mac(key, head.count, head.hash)):
        return broken("the head record was altered (or the secret key changed)")
    if head.count > checked:
        return broken(f"the newest {head.count - checked} of {head.count} entries were removed")
    if (head.count, head.hash) != (checked, prev):
        return broken(f"the chain does not end where its head record says ({head.count} entries, found {checked})")
    return VerifyResult(ok=True, checked=checked, first_bad_id=None)


def history(session: Session, object_type: str, object_id: int) -> list[AuditEntry]:
    """Every entry about one object, oldest first."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.object_type == object_type, AuditEntry.object_id == object_id)
        .order_by(AuditEntry.id)
    )
    return list(session.scalars(query))
