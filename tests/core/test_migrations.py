"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

A model changed without a new migration fails here (``python -m helpdesk.core.migrations.revision "what"``
writes one), so `helpdesk init` on an existing database always gets what the code expects.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from helpdesk.core import db
from helpdesk.core.models import Base


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
