"""The data dir and all in it are private to the helpdesk's account, whatever the umask it runs with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.e2e.helpers import helpdesk_env, run

MAIL_WITH_FILE = b"""From: alice@example.com
To: help@example.org
Subject: VPN logs attached
Message-ID: <vpn-logs@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

The VPN drops every hour, logs attached.
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="vpn.log"
Content-Transfer-Encoding: base64

c2Vzc2lvbiBkcm9wcGVkIGF0IDEwOjAwCnNlc3Npb24gZHJvcHBlZCBhdCAxMTowMAo=
--b--
"""


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["022", "000"])
def test_init_and_ingest_leave_only_owner_only_files(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "data"
    env = helpdesk_env(data, f"sqlite:///{data / 'helpdesk.db'}")
    del env["HELPDESK_SECRET_KEY"]  # the local secret file is made too
    mail = tmp_path / "mail.eml"
    mail.write_bytes(MAIL_WITH_FILE)
    old = os.umask(umask)  # the helpdesk inherits it
    try:
        run(env, "init")
        run(env, "ingest", str(mail))
        run(env, "ticket", "1")
    finally:
        os.umask(old)
    modes = _modes(data)
    names = set(modes)
    assert {"secret_key", "helpdesk.db"} <= names and any(n.startswith("attachments/") for n in names), names
    wrong = {
        name: oct(mode) for name, mode in modes.items()
        if mode != (0o700 if (data / name).is_dir() else 0o600)
    }
    assert wrong == {}


def test_sqlite_journal_files_are_owner_only_while_the_database_is_open(tmp_path: Path) -> None:
    from sqlalchemy import text

    from helpdesk.core import db

    old = os.umask(0)
    try:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'open.db'}")
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (a INTEGER)"))
            conn.commit()
            modes = _modes(tmp_path)
        engine.dispose()
    finally:
        os.umask(old)
    assert {"open.db", "open.db-wal", "open.db-shm"} <= set(modes)
    assert {name: oct(mode) for name, mode in modes.items() if name != "."} == {
        name: oct(0o600) for name in modes if name != "."
    }
