"""A file over HELPDESK_MAX_MESSAGE_BYTES is not kept, and not silently: the acknowledgement names it
(as it reaches a real SMTP server), and so does the ticket."""

from __future__ import annotations

import os
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.settings import Settings, SmtpSettings
from helpdesk.mailgateway.smtp import send_once
from tests.core.desk import Desk
from tests.servers.smtp import SmtpSink

THIRTY_MB = 30 * 1024 * 1024


def mail_with_files(subject: str, text: str, files: dict[str, bytes]) -> bytes:
    """A user's CRLF mail with these files attached (as application/octet-stream)."""
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "help@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = "<files-1@client.example>"
    msg["Date"] = "Wed, 25 Nov 2026 09:00:00 +0000"
    msg.set_content(text)
    for name, data in files.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes(policy=SMTP)


def _mail_with_big_file() -> bytes:
    return mail_with_files("Laptop crash dump", "The laptop crashed again; the dump and the log are attached.",
                           {"crash.log": b"boot ok\nthen crash\n", "memory.dmp": os.urandom(THIRTY_MB)})


def test_file_over_the_size_limit_is_named_in_the_acknowledgement_and_on_the_ticket(
    sqlite_session_factory: sessionmaker[Session], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url="unused", secret_key="test-secret",
                        smtp=SmtpSettings(host=smtp_sink.host, port=smtp_sink.port))
    assert settings.max_message_bytes < THIRTY_MB  # the default limit, 25 MB
    desk = Desk(sqlite_session_factory, settings)
    started = time.perf_counter()
    result = desk.deliver(_mail_with_big_file())
    print(f"\n30 MB attachment: processed in {time.perf_counter() - started:.1f} s")
    assert result.ticket_id is not None

    files = {a["filename"]: a for m in desk.ticket(result.ticket_id)["messages"] for a in m.get("attachments", [])}
    assert files["crash.log"]["size"] == len(b"boot ok\nthen crash\n")
    kept_out = files["memory.dmp"]
    assert kept_out["sha256"] is None and "over the size limit" in kept_out["note"]
    assert str(THIRTY_MB // (1024 * 1024)) in kept_out["note"]  # how big it was, not "0 bytes"

    send_once(sqlite_session_factory, settings.smtp)
    [ack] = [m.message for m in smtp_sink.wait_for(1) if m.rcpt_tos == ["alice@example.com"]]
    text = ack.get_body(("plain",)).get_content()
    assert "memory.dmp" in text and "crash.log" not in text
    assert "memory.dmp" in ack.get_body(("html",)).get_content()
