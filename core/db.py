"""Engine, sessions and schema upgrades (Alembic, run from code)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.files import create_private_database

if TYPE_CHECKING:
    from alembic.config import Config

# The database cannot be reached now (down, restarting, refusing connections, locked): worth waiting for.
UNAVAILABLE: tuple[type[DBAPIError], ...] = (OperationalError, InterfaceError)


# Seconds to wait for PostgreSQL to accept and answer a new connection: a host that drops packets or a server
# that never answers would otherwise hold /readyz and the runner for the TCP timeout (minutes). The URL's own
# ?connect_timeout= wins.
CONNECT_TIMEOUT = 10


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed. Session.execute is typed as returning a Result; for these statements
    it is a CursorResult, the one that carries the count."""
    return cast(CursorResult[Any], result).rowcount


def unavailable_reason(exc: BaseException) -> str:
    """The driver's first line on why: no statement, no parameters, no password."""
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(reason).strip().splitlines()
    return lines[0] if lines else type(reason).__name__


def make_engine(url: str) -> Engine:
    # hide_parameters: a database error's text (logged, quarantined) must not quote the mail's values.
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        create_private_database(engine.url.database)  # before SQLite would make it world-readable

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            # WAL lets the web console read while the poller writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    timeout = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": CONNECT_TIMEOUT}
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=timeout)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # Imported for its flush listener: every process that writes tickets keeps their SLA outcomes.
    from helpdesk.core import slastate  # noqa: F401

    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("helpdesk.core") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create the schema, or bring an existing one up to the newest migration."""
    if _at_head(engine):
        return  # the common case: every command and process start, without loading Alembic (~0.2 s)
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine)
    if current_revision(engine) == ScriptDirectory.from_config(cfg).get_current_head():
        return
    command.upgrade(cfg, "head")


_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]\s*$", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(.*)$", re.MULTILINE)


def _head_of_the_files() -> str | None:
    """The one migration no other revises, from the files' `revision =` lines; None for anything
    unusual (no file, two heads, a line this does not read), which Alembic then decides."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (resources.files("helpdesk.core") / "migrations" / "versions").iterdir():
        if not path.name.endswith(".py") or path.name == "__init__.py":
            continue
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        revised.update(re.findall(r"['\"]([^'\"]+)['\"]", down[0]))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    head = _head_of_the_files()
    if head is None:
        return False
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        return list(conn.scalars(text("SELECT version_num FROM alembic_version"))) == [head]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
