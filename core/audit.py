"""Append-only, tamper-evident audit trail.

Each entry's hash is sha256 over the previous entry's hash and the canonical JSON of the
entry, so editing or deleting any row breaks every hash after it. Writers serialise on the
chain head: two writers must never chain onto the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.locks import serialise, transaction_memo
from core.models import AuditEntry, utcnow

GENESIS = "0" * 64
SYSTEM = "system"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None


def _plain(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the JSON column will give back, so the hash is over what is stored."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _instant(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


def _instant(at: datetime) -> str:
    # SQLite hands datetimes back naive; both forms must hash the same.
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def _digest(entry: AuditEntry) -> str:
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
    return hashlib.sha256((entry.prev_hash + canonical).encode("utf-8")).hexdigest()


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
    until commit, so later entries of the same transaction chain onto the head they remember.
    """
    memo = transaction_memo(session)
    prev = memo.get("audit.head")
    if prev is None:
        serialise(session)
        prev = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    entry = AuditEntry(
        at=utcnow(),
        actor=actor or SYSTEM,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=_plain(before),
        after=_plain(after),
        reason=reason,
        prev_hash=prev or GENESIS,
    )
    entry.hash = _digest(entry)
    session.add(entry)
    if flush:
        session.flush()
    transaction_memo(session)["audit.head"] = entry.hash
    return entry


def verify(session: Session) -> VerifyResult:
    """Walk the chain in order; report the first entry whose links or contents do not match."""
    prev = GENESIS
    checked = 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(500):
        checked += 1
        if entry.prev_hash != prev or _digest(entry) != entry.hash:
            return VerifyResult(ok=False, checked=checked, first_bad_id=entry.id)
        prev = entry.hash
    return VerifyResult(ok=True, checked=checked, first_bad_id=None)


def history(session: Session, object_type: str, object_id: int) -> list[AuditEntry]:
    """Every entry about one object, oldest first."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.object_type == object_type, AuditEntry.object_id == object_id)
        .order_by(AuditEntry.id)
    )
    return list(session.scalars(query))
