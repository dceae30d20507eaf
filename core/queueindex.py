"""Indexes that serve the queue's sort orders, made at start-up like the search index.

The queue sorted by due date orders by ``due_at IS NULL, due_at, id DESC`` (no due date last, on both
databases). Only an index over those same expressions lets the database read the first page in order
instead of sorting every ticket; an expression index is kept out of the models because SQLite's schema
reflection skips it (the models-equal-migrations check would warn), as the search index is.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

DUE_ORDER = "ix_ticket_due_order"
_INDEXES = (f"CREATE INDEX IF NOT EXISTS {DUE_ORDER} ON ticket ((due_at IS NULL), due_at, id DESC)",)


def ensure_sort_indexes(engine: Engine) -> None:
    """Create the queue's sort indexes if missing (cheap when they exist)."""
    with engine.begin() as conn:
        for ddl in _INDEXES:
            conn.execute(text(ddl))
