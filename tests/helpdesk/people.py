"""A small desk filled through the real CLI: two people's mail (one with an attachment), an agent with a password."""

from __future__ import annotations

import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from tests.e2e.helpers import ingest_all, run

AGENT = "agent@example.org"
PASSWORD = "correct horse battery"
ALICE = "alice@example.com"
BOB = "bob@example.com"
PHOTO = b"\x89PNG\r\n\x1a\n alice's screenshot " + bytes(range(256))


def mail(sender: str, subject: str, body: str, *, cc: str | None = None, attachment: bytes | None = None,
         reply_to: str | None = None) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = f"Someone <{sender}>"
    msg["To"] = "help@example.org"
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = message_id = make_msgid(domain=sender.partition("@")[2])
    if reply_to:
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="image", subtype="png", filename="screen.png")
    return msg.as_bytes(), message_id


def fill(env: dict[str, str]) -> None:
    """Alice's incident (with Bob in Cc and a screenshot) and her reply; Bob's own request; an agent."""
    run(env, "user", "add", AGENT, "--role", "agent", "--password-stdin", input=f"{PASSWORD}\n".encode())
    first, first_id = mail(ALICE, "VPN broken for Alice Example", "Alice here: my VPN fails, phone 555-0101.",
                           cc=BOB, attachment=PHOTO)
    reply, _ = mail(ALICE, "Re: VPN broken for Alice Example", "Still broken, Alice.", reply_to=first_id)
    other, _ = mail(BOB, "Printer jammed", "Bob's printer on floor 2 is jammed.")
    with tempfile.TemporaryDirectory() as folder:  # one `helpdesk ingest` for the three
        out = ingest_all(env, Path(folder), first, reply, other)
    assert out.count(": processed ticket #") == 3, out
