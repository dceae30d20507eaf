"""Which processing failures are transient, and how a mail that hit one is tried again.

A transient failure says nothing about the mail: the database went away or refused for a moment,
the data dir is full or read-only. The mail waits and is tried again with a growing delay; only a
mail that keeps failing that way is quarantined. Anything else (a bug on odd input, a broken
store) quarantines the mail at once, as before.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import InterfaceError, OperationalError

# Disk full, quota, read-only or unwritable data dir: an admin's fix, not the mail's fault.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure of the database or the disk, not of the mail."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # along "raise ... from" wrappers
        seen.add(id(current))
        if isinstance(current, (OperationalError, InterfaceError)):
            return True  # connection lost, database locked, deadlock, server shutting down
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return True
        current = current.__cause__
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """After the n-th transient failure wait ``first_delay * 2**(n-1)`` seconds (at most ``max_delay``);
    the ``max_retries``-th quarantines the mail. The defaults give a cause about four hours to be fixed."""

    first_delay: float = 30.0
    max_delay: float = 3600.0
    max_retries: int = 10

    def delay(self, failures: int) -> timedelta:
        return timedelta(seconds=min(self.first_delay * 2 ** max(0, failures - 1), self.max_delay))
