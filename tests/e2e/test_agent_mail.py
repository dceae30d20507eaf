"""An agent's emailed reply over real IMAP and SMTP: its attachments reach the user, its command lines never do."""

from __future__ import annotations

import hashlib
import os
import re
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from helpdesk.core.models import utcnow
from tests.e2e.itil_desk import add_users, desk, mail, text, to
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink

AGENT = "agent@example.org"
ALICE = "alice@example.com"
BOSS = "boss@example.com"
# A small but real-looking PDF, with binary bytes so that any re-encoding on the way would show.
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + os.urandom(40_000) + b"\n%%EOF\n"


def _answer_with_pdf(notification: EmailMessage, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = AGENT
    msg["To"] = str(notification["Reply-To"])
    msg["Subject"] = f"Re: {notification['Subject']}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = msg["References"] = str(notification["Message-ID"])
    msg.set_content(body)
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="VPN setup guide.pdf")
    return bytes(msg)


def test_agent_reply_by_mail_forwards_its_pdf_and_no_command_line(
    dovecot: DovecotServer, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    with desk(tmp_path, None, dovecot, smtp_sink) as d:
        add_users(d, {AGENT: "agent"})
        d.deliver(mail(ALICE, "VPN does not connect", "Since this morning the VPN client fails.",
                       headers={"Cc": BOSS}))
        [ticket] = d.tickets()
        [notification] = to(d.send(), AGENT)

        # Command lines on top, the answer below them, a PDF attached.
        d.deliver(_answer_with_pdf(notification, "#priority P2\n#category network\n\n"
                                                 "Hello Alice, the setup guide is attached; see page 2."))
        arrived = d.send()
        assert [t["priority"] for t in d.tickets()] == ["P2"]
        for person in (ALICE, BOSS):
            [received] = [m for m in arrived if m.rcpt_tos == [person]]
            assert re.search(rb"^#", received.content.replace(b"\r\n", b"\n"), re.MULTILINE) is None
            reply = received.message
            assert "the setup guide is attached" in text(reply) and f"[#{ticket['id']}]" in reply["Subject"]
            [pdf] = list(reply.iter_attachments())
            assert pdf.get_content_type() == "application/pdf" and pdf.get_filename() == "VPN setup guide.pdf"
            assert hashlib.sha256(pdf.get_content()).hexdigest() == hashlib.sha256(PDF).hexdigest()
            assert reply.get_body(("html",)) is not None  # the HTML alternative is still there
        assert not to(arrived, AGENT)
