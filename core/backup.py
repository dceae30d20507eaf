"""Backup and restore: the whole database, the attachments and the local secret key in one zip.

The database goes in a portable form (one JSON line per row, table by table, in the order foreign
keys need), not as an SQLite file or a pg_dump: a backup of SQLite restores into PostgreSQL and back,
and needs no server tools of the matching version. The rows are read from one consistent snapshot:
SQLite's online backup API copies the file first, PostgreSQL reads in a REPEATABLE READ transaction.

What the archive holds (zip, written owner-only):
  meta.json             format, schema revision, row counts, a check value of the secret key
  tables/NAME.jsonl     the rows of one table, ordered by primary key
  attachments/SHA256    each attachment's bytes, once per content hash
  secret_key            the data dir's secret key, when the key comes from there (not from HELPDESK_SECRET_KEY)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Enum,
    LargeBinary,
    Table,
    bindparam,
    create_engine,
    func,
    inspect,
    select,
    text,
)

from helpdesk.core.attachments import store_for
from helpdesk.core.db import alembic_config, current_revision
from helpdesk.core.files import FILE_MODE, private_dir, write_private
from helpdesk.core.models import Attachment, Base
from helpdesk.core.settings import Settings

FORMAT = "helpdesk-backup/1"
_BATCH = 500


class BackupError(Exception):
    """The archive cannot be read or does not fit this helpdesk: one line for people."""


class RestoreRefused(BackupError):
    """The target holds data (or another key) and --force was not given."""


@dataclass(frozen=True)
class Summary:
    revision: str | None
    rows: dict[str, int]
    attachments: int
    secret_key: bool  # the archive carries the local secret key
    missing: tuple[str, ...] = field(default=())  # attachment files referenced but not on disk


# -- backup ---------------------------------------------------------------------------------------


def backup(engine: Engine, settings: Settings, target: Path) -> Summary:
    """Write the archive to ``target`` (a new file, owner-only); what went into it."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)  # never someone else's file
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            summary = _write(engine, settings, zf)
    except BaseException:
        target.unlink(missing_ok=True)  # half an archive is no backup
        raise
    return summary


def _write(engine: Engine, settings: Settings, zf: zipfile.ZipFile) -> Summary:
    rows: dict[str, int] = {}
    hashes: set[str] = set()
    with _snapshot(engine) as conn:
        revision = _revision(conn)
        present = set(inspect(conn).get_table_names())
        for table in Base.metadata.sorted_tables:
            if table.name not in present:
                continue
            with zf.open(f"tables/{table.name}.jsonl", "w", force_zip64=True) as out:
                rows[table.name] = _dump_table(conn, table, out)
        if Attachment.__tablename__ in present:
            hashes = set(conn.scalars(select(Attachment.sha256).where(Attachment.sha256.is_not(None)).distinct()))
    store = store_for(settings)
    missing = []
    for digest in sorted(hashes):
        path = store.path(digest)
        if path.is_file():
            zf.write(path, f"attachments/{digest}")
        else:
            missing.append(digest)
    local_key = _local_key(settings)
    if local_key is not None:
        zf.writestr("secret_key", local_key)
    meta = {
        "format": FORMAT,
        "revision": revision,
        "rows": rows,
        "attachments": len(hashes) - len(missing),
        "key_check": key_check(settings.secret_key),
        "made_at": datetime.now(UTC).isoformat(),
    }
    zf.writestr("meta.json", json.dumps(meta, indent=1))
    return Summary(revision, rows, len(hashes) - len(missing), local_key is not None, tuple(missing))


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that sees the database as it was at one moment, however long the dump takes."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        return
    database = engine.url.database
    with tempfile.TemporaryDirectory(prefix="helpdesk-backup-") as tmp:
        copy = Path(tmp) / "snapshot.db"
        source = sqlite3.connect(database or ":memory:")
        dest = sqlite3.connect(copy)
        try:
            source.backup(dest)  # the online backup API: consistent even while others write
        finally:
            dest.close()
            source.close()
        snapshot = create_engine(f"sqlite:///{copy}")
        try:
            with snapshot.connect() as conn:
                yield conn
        finally:
            snapshot.dispose()


def _revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _dump_table(conn: Connection, table: Table, out: IO[bytes]) -> int:
    count = 0
    query = select(table).order_by(*table.primary_key.columns)
    for row in conn.execution_options(yield_per=_BATCH).execute(query).mappings():
        line = {key: _encode(value) for key, value in row.items()}
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        count += 1
    return count


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite gives naive UTC back, PostgreSQL aware: both leave as UTC with an offset.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "value") and not isinstance(value, (dict, list)):  # enums
        return value.value
    return value


def key_check(secret_key: str) -> str:
    """A value that tells whether two secret keys are the same without telling anything about either."""
    return hmac.new(secret_key.encode(), b"helpdesk backup key check", hashlib.sha256).hexdigest()


def _local_key(settings: Settings) -> str | None:
    path = settings.data_dir / "secret_key"
    try:
        stored = path.read_text().strip()
    except OSError:
        return None
    return stored if stored == settings.secret_key else None


# -- restore --------------------------------------------------------------------------------------


def restore(engine: Engine, settings: Settings, source: Path, *, force: bool = False) -> Summary:
    """Load the archive into the database at ``engine`` and the data dir; then migrate to the newest schema.

    The database must be empty (no schema yet, or no rows) unless ``force``: then its rows are replaced.
    """
    try:
        zf = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BackupError(f"{source}: not a helpdesk backup ({exc})") from None
    with zf:
        meta = _meta(zf, source)
        archived_key = zf.read("secret_key").decode().strip() if "secret_key" in zf.namelist() else None
        key_to_write = _check_key(settings, meta, archived_key, force=force)
        revision = meta["revision"]
        _schema_at(engine, revision, force=force)
        rows = _load_tables(engine, zf, force=force)
        from helpdesk.core import db

        db.upgrade(engine)
        attachments = _load_attachments(zf, settings)
    if key_to_write is not None:
        _replace_secret(settings.data_dir / "secret_key", key_to_write)
    return Summary(revision, rows, attachments, archived_key is not None)


def _meta(zf: zipfile.ZipFile, source: Path) -> dict[str, Any]:
    try:
        meta = json.loads(zf.read("meta.json"))
    except (KeyError, ValueError):
        raise BackupError(f"{source}: not a helpdesk backup (no readable meta.json)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BackupError(f"{source}: unknown backup format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    return meta


def _check_key(settings: Settings, meta: dict[str, Any], archived: str | None, *, force: bool) -> str | None:
    """The key to put in the data dir, if any. A database restored under another key fails `audit verify`."""
    wanted = meta.get("key_check")
    if archived is not None and key_check(archived) == wanted:
        if archived == settings.secret_key:
            return None
        if _local_key(settings) is not None or not (settings.data_dir / "secret_key").exists():
            return archived  # the key is the data dir's: it becomes the backed-up one
    if key_check(settings.secret_key) != wanted and not force:
        raise RestoreRefused(
            "the backup was made under another secret key: set HELPDESK_SECRET_KEY to that key "
            "(the audit trail and reply tokens depend on it), or restore with --force"
        )
    return None


def _replace_secret(path: Path, key: str) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    write_private(tmp, key.encode())
    os.replace(tmp, path)


def _schema_at(engine: Engine, revision: str | None, *, force: bool) -> None:
    """Bring the database to the archive's schema revision; its rows are then loaded as they were."""
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine)
    known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
    if revision not in known:
        raise BackupError(f"the backup's schema revision {revision!r} is unknown to this version of the helpdesk")
    current = current_revision(engine)
    if current is None:
        command.upgrade(cfg, revision)
    elif current != revision:
        if _has_rows(engine) and not force:
            raise RestoreRefused(_NOT_EMPTY)
        if _newer(cfg, current, revision):
            command.downgrade(cfg, revision)
        else:
            command.upgrade(cfg, revision)


def _newer(cfg: Any, current: str, than: str) -> bool:
    from alembic.script import ScriptDirectory

    return than in {s.revision for s in ScriptDirectory.from_config(cfg).iterate_revisions(current, "base")}


_NOT_EMPTY = "the database is not empty: restore into an empty database, or replace its contents with --force"


def _has_rows(engine: Engine) -> bool:
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return any(
            conn.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables if t.name in present
        )


def _load_tables(engine: Engine, zf: zipfile.ZipFile, *, force: bool) -> dict[str, int]:
    tables = [t for t in Base.metadata.sorted_tables if f"tables/{t.name}.jsonl" in zf.namelist()]
    rows: dict[str, int] = {}
    with engine.begin() as conn:
        present = set(inspect(conn).get_table_names())
        if any(conn.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables if t.name in present):
            if not force:
                raise RestoreRefused(_NOT_EMPTY)
            for table in reversed(Base.metadata.sorted_tables):
                if table.name in present:
                    conn.execute(table.delete())
        for table in tables:
            rows[table.name] = _load_table(conn, table, zf)
        if conn.dialect.name == "postgresql":
            _advance_sequences(conn, tables)
    return rows


def _load_table(conn: Connection, table: Table, zf: zipfile.ZipFile) -> int:
    decoders = {c.key: _decoder(c.type) for c in table.columns}
    # A row may name a later row of its own table (a ticket merged into a newer one): such columns
    # are loaded empty and set once every row is in.
    own = [c.key for c in table.columns if any(fk.column.table is table for fk in c.foreign_keys)]
    later: dict[str, list[dict[str, Any]]] = {key: [] for key in own}
    batch: list[dict[str, Any]] = []
    count = 0
    with zf.open(f"tables/{table.name}.jsonl") as lines:
        for line in lines:
            row = json.loads(line)
            unknown = set(row) - decoders.keys()
            if unknown:
                raise BackupError(f"table {table.name}: columns {sorted(unknown)} are not in this schema")
            for key in own:
                if row.get(key) is not None:
                    later[key].append({"_id": row["id"], "_value": row[key]})
                    row[key] = None
            batch.append({k: decoders[k](v) for k, v in row.items()})
            if len(batch) >= _BATCH:
                conn.execute(table.insert(), batch)
                count += len(batch)
                batch = []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    for key, values in later.items():
        if values:
            conn.execute(table.update().where(table.c.id == bindparam("_id")).values({key: bindparam("_value")}), values)
    return count


def _decoder(kind: Any) -> Any:
    def keep(value: Any) -> Any:
        return value

    if isinstance(kind, DateTime):
        return lambda v: None if v is None else datetime.fromisoformat(v)
    if isinstance(kind, LargeBinary):
        return lambda v: None if v is None else base64.b64decode(v)
    if isinstance(kind, Enum) and kind.enum_class is not None:
        enum_class = kind.enum_class
        return lambda v: None if v is None else enum_class(v)
    return keep


def _advance_sequences(conn: Connection, tables: list[Table]) -> None:
    """Rows came with their ids: PostgreSQL's sequences must continue after the largest one."""
    for table in tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or keys[0].autoincrement is False or keys[0].type.python_type is not int:
            continue
        column = keys[0].name
        sequence = conn.scalar(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column})
        if sequence is None:
            continue
        name = conn.dialect.identifier_preparer.format_table(table)
        quoted = conn.dialect.identifier_preparer.quote(column)
        conn.execute(
            text(f"SELECT setval(:s, COALESCE(MAX({quoted}), 1), MAX({quoted}) IS NOT NULL) FROM {name}"),
            {"s": sequence},
        )


def _load_attachments(zf: zipfile.ZipFile, settings: Settings) -> int:
    store = store_for(settings)
    count = 0
    for name in zf.namelist():
        if not name.startswith("attachments/"):
            continue
        expected = name.removeprefix("attachments/")
        if store.put(zf.read(name)) != expected:
            raise BackupError(f"attachment {expected}: its bytes do not match their hash (the archive is damaged)")
        count += 1
    return count
