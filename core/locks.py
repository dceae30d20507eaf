"""Transaction-scoped locks that serialise writers on one key, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction

# Every writer that audits holds this lock until commit anyway (the audit chain has one head), so
# sections that need serialising take the same lock: one lock, no lock-ordering deadlocks.
WRITES = "helpdesk-writes"

_MEMO = "helpdesk.transaction_memo"


def _key(name: str) -> int:
    # PostgreSQL advisory locks take a signed 64-bit key.
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def transaction_memo(session: Session) -> dict[str, Any]:
    """A dict that lives as long as the session's current transaction.

    Any rollback, a savepoint's too, forgets it: what was remembered may have been undone. Holds
    what is known to stay true until commit (locks held, the audit chain's head).
    """
    root = session.get_transaction()
    memo = session.info.get(_MEMO)
    if root is None or memo is None or memo[0] is not root:
        memo = (root, {})
        if root is not None:
            session.info[_MEMO] = memo
    return memo[1]


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: SessionTransaction) -> None:
    session.info.pop(_MEMO, None)


def serialise(session: Session, name: str = WRITES) -> None:
    """Hold the lock called ``name`` until the session's transaction ends.

    PostgreSQL: an advisory transaction lock, so a second writer waits and then reads what the
    first committed. SQLite has one writer at a time: a write that changes nothing takes that lock.
    Taken once per transaction (again after a rollback to a savepoint, which may have released it).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        name = "sqlite"  # one lock for the whole database, whatever the name
    if name in transaction_memo(session).get("locks", ()):
        return
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key(name)})
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit SET id = id WHERE 0"))
    transaction_memo(session).setdefault("locks", set()).add(name)
