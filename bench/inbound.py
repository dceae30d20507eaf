"""Shared by the inbound benchmarks: a throwaway Dovecot filled with realistic mail, and the helpdesk's
environment pointing at it. Reuses the test servers (tests/servers) and test mail (tests/e2e/mails)."""

from __future__ import annotations

import os
import pwd
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.helpers import HELPDESK, helpdesk_env  # noqa: E402
from tests.e2e.mails import make_mail  # noqa: E402
from tests.servers.imap import DovecotInstance, DovecotServer, dovecot_binary  # noqa: E402

__all__ = ["HELPDESK", "helpdesk_env", "make_mail", "start_dovecot", "fill_maildir"]


def start_dovecot() -> tuple[DovecotInstance, DovecotServer]:
    binary = dovecot_binary()
    if binary is None:
        sys.exit("bench: no `dovecot` binary (apt-get install dovecot-imapd)")
    instance = DovecotInstance(binary)
    instance.start()
    return instance, instance.new_account()


def fill_maildir(server: DovecotServer, count: int) -> int:
    """Write `count` mails straight into the account's maildir (much faster than APPEND); returns bytes."""
    with server.client() as conn:
        conn.select_folder("INBOX")  # Dovecot creates the maildir at first use
    new = server.instance.dir / "mail" / server.user / "new"
    owner = pwd.getpwnam(server.instance.os_user)
    total = 0
    stamp = int(time.time())
    for n in range(count):
        raw = make_mail(n)
        path = new / f"{stamp}.M{n}P{os.getpid()}.bench"
        path.write_bytes(raw)
        os.chown(path, owner.pw_uid, owner.pw_gid)
        total += len(raw)
    with server.client() as conn:
        conn.select_folder("INBOX")  # let Dovecot index them now, outside the measurements
    return total
