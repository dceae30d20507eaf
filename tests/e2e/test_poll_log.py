"""``helpdesk -v poll --once`` against a real IMAP server: the log says what happened, never what a mail says.

A review found a 90 MB debug log holding whole fetched mails (imapclient logs every protocol line at DEBUG).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.e2e.helpers import helpdesk_env, run
from tests.servers.imap import ImapServer


def _mail(marker: str) -> bytes:
    return (
        "From: Alice <alice@example.com>\r\nTo: help@example.org\r\nSubject: Printer jammed\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer says {marker} and stops.\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=\"log.txt\"\r\n\r\n"
        f"printer log: {marker}\r\n--b--\r\n"
    ).encode()


def test_verbose_poll_logs_uids_and_counts_but_no_mail_content(imap_server: ImapServer, tmp_path: Path) -> None:
    marker = f"body-marker-{uuid.uuid4().hex}"
    imap_server.append(_mail(marker))
    env = helpdesk_env(tmp_path, f"sqlite:///{tmp_path / 'helpdesk.db'}", imap=imap_server)
    run(env, "init")

    proc = run(env, "-v", "poll", "--once")

    log = proc.stderr.decode("utf-8", "replace") + proc.stdout.decode("utf-8", "replace")
    assert marker not in log
    assert "stored 1" in log and "processed 1" in log  # counts
    assert "UID 1" in log or "UIDs 1" in log  # which mail
    assert "opened ticket 1" in log
    assert imap_server.fetch_all("Processed")  # and the mail really went through
