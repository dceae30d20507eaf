"""One mail end to end on real servers: IMAP -> ticket -> acknowledgement over SMTP -> reply threads back."""

from __future__ import annotations

from email.utils import make_msgid
from pathlib import Path

from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink


def _mail(subject: str, body: str, *, message_id: str, in_reply_to: str | None = None) -> bytes:
    lines = [
        "From: Alice Example <alice@example.com>",
        "To: help@example.org",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Wed, 25 Nov 2026 09:00:00 +0000",
    ]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body]
    return "\r\n".join(lines).encode()


def test_mail_becomes_ticket_is_acknowledged_and_reply_threads_back(
    imap_server: ImapServer, smtp_sink: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    env = helpdesk_env(tmp_path / "data", database_url, imap_server, smtp_sink)
    run(env, "init")

    first_id = make_msgid(domain="example.com")
    imap_server.append(_mail("VPN is down, I cannot work", "The VPN does not connect since 8:00.", message_id=first_id))
    run(env, "poll", "--once")

    listed = run_json(env, "tickets", "--json")
    assert len(listed) == 1
    ticket = listed[0]
    assert ticket["kind"] == "incident"
    assert ticket["requester"] == "alice@example.com"
    assert ticket["status"] == "new"
    number = ticket["number"]

    run(env, "send", "--once")
    [ack_mail] = smtp_sink.wait_for(1)
    ack = ack_mail.message
    assert ack_mail.rcpt_tos == ["alice@example.com"]
    assert f"[#{number}]" in ack["Subject"]
    assert ack["In-Reply-To"] == first_id
    assert first_id in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Message-ID"]
    assert "+" in ack["Reply-To"]  # help+N-token@...: replies carry a token

    # The user answers the acknowledgement from their mail client.
    imap_server.append(
        _mail(f"Re: {ack['Subject']}", "It works again after a restart.",
              message_id=make_msgid(domain="example.com"), in_reply_to=ack["Message-ID"])
    )
    run(env, "poll", "--once")

    listed = run_json(env, "tickets", "--json")
    assert [t["number"] for t in listed] == [number]
    detail = run_json(env, "ticket", str(number), "--json")
    inbound = [m for m in detail["messages"] if m["direction"] == "in"]
    outbound = [m for m in detail["messages"] if m["direction"] == "out"]
    assert [m["message_id"] for m in inbound][0] == first_id.strip("<>")
    assert len(inbound) == 2
    assert "works again" in inbound[1]["text"]
    assert outbound[0]["message_id"] == ack["Message-ID"].strip("<>")
    # Processed mail left the inbox but was not deleted.
    assert imap_server.uids("INBOX") == []
    assert len(imap_server.uids("Processed")) == 2
