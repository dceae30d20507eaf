"""The full round trip by email, through the real `helpdesk` CLI, IMAP and SMTP servers.

A user mails; an agent answers the notification with a command; the user gets the answer threaded
under their own mail; the ticket shows the reply, the agent's internal note and the command's effect.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.servers.imap import ImapServer
from tests.servers.smtp import SmtpSink

AGENT = "agent@example.org"


def _mail(sender: str, to: str, subject: str, body: str, *, parent: EmailMessage | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    if parent is not None:  # what a mail client does on "Reply"
        msg["In-Reply-To"] = parent["Message-ID"]
        msg["References"] = " ".join(filter(None, [parent.get("References"), parent["Message-ID"]]))
    msg.set_content(body)
    return msg.as_bytes()


def _by(sink: SmtpSink, rcpt: str, purpose_word: str = "") -> list[EmailMessage]:
    return [m.message for m in sink.messages if m.rcpt_tos == [rcpt] and purpose_word in m.message["Subject"]]


@pytest.fixture(params=[("dovecot", "postgresql"), ("pymap_server", "sqlite")], ids=["dovecot-postgresql", "pymap-sqlite"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ImapServer, str]]:
    """Both IMAP servers and both databases, in two runs rather than four (each run is ~20 s of CLI calls)."""
    imap_name, db = request.param
    imap = request.getfixturevalue(imap_name)
    if db == "sqlite":
        yield imap, f"sqlite:///{tmp_path / 'hd.sqlite3'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    yield imap, cluster.url(name)
    cluster.drop_database(name)


def test_user_mails_agent_answers_by_email_with_a_command_user_gets_it_threaded(
    servers: tuple[ImapServer, str], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    imap_server, database_url = servers
    env = helpdesk_env(tmp_path / "data", database_url, imap_server, smtp_sink)
    run(env, "init")
    run(env, "user", "add", AGENT, "--role", "agent", "--password-stdin", input=b"agent-password\n")

    first = _mail("alice@example.com", "help@example.org", "VPN is down", "The VPN does not connect since 8:00.")
    imap_server.append(first)
    polled = run(env, "poll", "--once")
    listed = run_json(env, "tickets", "--json")
    assert len(listed) == 1, polled.stdout.decode()
    ticket = listed[0]
    run(env, "send", "--once")
    smtp_sink.wait_for(2)
    number = ticket["number"]
    [notification] = _by(smtp_sink, AGENT)
    assert notification["Auto-Submitted"] == "auto-generated" and f"[#{number}]" in notification["Subject"]
    assert "does not connect" in notification.get_body(("plain",)).get_content()

    # The agent answers the notification: a command on top, then the answer, then the quote.
    answer = _mail(AGENT, notification["Reply-To"], f"Re: {notification['Subject']}",
                   "#priority P2\n\nHello Alice, please restart the VPN client; the gateway was patched.\n\n"
                   "> A new incident was logged.", parent=notification)
    note = _mail(AGENT, "help+comment@example.org", f"[#{number}] gateway",
                 "Internal: gateway vpn-gw-2 was rebooted at 10:05.")
    imap_server.append_many([answer, note])
    run(env, "poll", "--once")
    run(env, "send", "--once")

    user_mails = [m.message for m in smtp_sink.wait_for(3) if m.rcpt_tos == ["alice@example.com"]]
    ack, reply = user_mails[0], user_mails[-1]
    assert ack["Auto-Submitted"] == "auto-replied"
    body = reply.get_body(("plain",)).get_content()
    assert "please restart the VPN client" in body and "#priority" not in body
    assert reply["Auto-Submitted"] == "no" and f"[#{number}]" in reply["Subject"]
    original_id = next(m for m in run_json(env, "ticket", str(number), "--json")["messages"])["message_id"]
    assert f"<{original_id}>" in reply["References"]  # under Alice's own mail in her client
    assert reply["Reply-To"].startswith(f"help+{number}-")
    assert not _by(smtp_sink, "alice@example.com", "gateway")  # the note went nowhere

    detail = run_json(env, "ticket", str(number), "--json")
    assert detail["priority"] == "P2"
    texts = [(m["direction"], m["internal"], m["text"]) for m in detail["messages"]]
    assert ("out", False, "Hello Alice, please restart the VPN client; the gateway was patched.") in texts
    assert ("in", True, "Internal: gateway vpn-gw-2 was rebooted at 10:05.") in texts
    assert any(internal and "priority -> P2" in text for _, internal, text in texts)

    # Alice answers the agent's reply from her client: same ticket, and the agent hears of it.
    imap_server.append(_mail("alice@example.com", reply["Reply-To"], f"Re: {reply['Subject']}",
                             "Works now, thanks!", parent=reply))
    run(env, "poll", "--once")
    run(env, "send", "--once")
    assert [t["number"] for t in run_json(env, "tickets", "--json")] == [number]
    updates = smtp_sink.wait_for(4)
    assert "Works now" in updates[-1].message.get_body(("plain",)).get_content()
    assert updates[-1].rcpt_tos == [AGENT]
