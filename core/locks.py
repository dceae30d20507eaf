"""Transaction-scoped locks that serialise writers on one key, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session


# Every writer that audits holds this lock until commit anyway (the audit chain has one head), so
# sections that need serialising take the same lock: one lock, no lock-ordering deadlocks.
WRITES = "helpdesk-writes"


def _key(name: str) -> int:
    # PostgreSQL advisory locks take a signed 64-bit key.
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def serialise(session: Session, name: str = WRITES) -> None:
    """Hold the lock called ``name`` until the session's transaction ends.

    PostgreSQL: an advisory transaction lock, so a second writer waits and then reads what the
    first committed. SQLite has one writer at a time: a write that changes nothing takes that lock.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key(name)})
    elif dialect == "sqlite":
        session.execute(text("UPDATE audit SET id = id WHERE 0"))
