"""Files only the helpdesk's account may read: the data dir, the database, attachments, the local secret.

Modes are given when a file or directory is made, never fixed afterwards, so there is no moment in
which another account could open it; the umask can only take permissions away from 0600/0700.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as owner-only directories; an existing one is left as it is."""
    if path.is_dir():
        return
    private_dir(path.parent)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise


def create_private(path: Path) -> bool:
    """Create an empty owner-only file unless it exists; True when it was created here."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        return False
    return True


def write_private(path: Path, data: bytes) -> None:
    """Write a new owner-only file; it must not exist yet (O_EXCL: never someone else's file or link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def create_private_database(database: str | None) -> None:
    """SQLite makes a new database 0644 less the umask (and its -wal/-shm files like it): make it first, 0600."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        create_private(path)


def write_private_once(path: Path, data: bytes) -> bytes:
    """Put ``data`` at ``path`` unless another process did first; what ``path`` holds afterwards.

    Written under a temporary name and linked into place: nobody reads a half-written file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    write_private(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        tmp.unlink()
    return data
