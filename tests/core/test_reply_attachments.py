"""Files an agent attaches to an emailed reply go to the requester, as far as one mail may carry them."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
from email.message import EmailMessage

from helpdesk.core.notify import OutboundAttachment, fit_attachments
from tests.core.desk import Desk, mail, make_desk

AGENT = "agent@example.org"


def _reply_with(note: EmailMessage, files: dict[str, bytes]) -> bytes:
    msg = email.message_from_bytes(
        mail(AGENT, f"Re: {note['Subject']}", "Logs attached.", to=note["Reply-To"], in_reply_to=note["Message-ID"]),
        policy=email.policy.default,
    )
    assert isinstance(msg, EmailMessage)
    for name, data in files.items():
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return bytes(msg)


def test_attachments_beyond_the_message_size_limit_stay_on_the_ticket(sqlite_session_factory, tmp_path) -> None:
    made = make_desk(sqlite_session_factory, tmp_path)
    desk = Desk(sqlite_session_factory, dataclasses.replace(made.settings, max_message_bytes=300_000))
    desk.add_user(AGENT)
    first = desk.deliver(mail())
    [note] = [m for rcpt, m in desk.sent("agent notification") if rcpt == AGENT]
    small, big = b"a" * 50_000, bytes(range(256)) * 600  # big: 153,600 bytes, ~210 KB once encoded
    desk.deliver(_reply_with(note, {"small.log": small, "big.bin": big, "tiny.txt": b"ok"}))

    [(rcpt, sent)] = desk.sent("reply")
    [row] = desk.outbox("reply")
    assert rcpt == "alice@example.com" and len(row.raw) <= 300_000
    got = {p.get_filename(): hashlib.sha256(p.get_content()).hexdigest() for p in sent.iter_attachments()}
    assert got == {"small.log": hashlib.sha256(small).hexdigest(), "tiny.txt": hashlib.sha256(b"ok").hexdigest()}
    detail = desk.ticket(first.ticket_id)
    [reply] = [m for m in detail["messages"] if m["direction"] == "out" and m["text"] == "Logs attached."]
    assert sorted(a["filename"] for a in reply["attachments"]) == ["big.bin", "small.log", "tiny.txt"]
    assert any("over the size limit" in m["text"] and "big.bin" in m["text"] for m in detail["messages"] if m["internal"])


def test_fit_attachments_keeps_the_order_and_skips_what_does_not_fit(sqlite_session_factory, tmp_path) -> None:
    settings = dataclasses.replace(make_desk(sqlite_session_factory, tmp_path).settings, max_message_bytes=200_000)
    files = [OutboundAttachment(n, "application/octet-stream", b"x" * size) for n, size in
             [("a", 60_000), ("b", 90_000), ("c", 10_000)]]
    kept, dropped = fit_attachments(settings, files)
    assert [f.filename for f in kept] == ["a", "c"] and dropped == ["b"]
