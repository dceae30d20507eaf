"""Content-addressed file store for attachments under the data dir."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from helpdesk.core.files import private_dir, write_private

if TYPE_CHECKING:
    from helpdesk.core.settings import Settings


class AttachmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            private_dir(target.parent)
            tmp = target.with_suffix(f".{os.getpid()}-{secrets.token_hex(4)}.tmp")
            write_private(tmp, data)
            os.replace(tmp, target)  # atomic: a reader never sees half a file
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


def store_for(settings: Settings) -> AttachmentStore:
    """The store under the data dir: where intake puts attachments and where the console and mail read them."""
    return AttachmentStore(settings.data_dir / "attachments")
