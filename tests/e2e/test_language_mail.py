"""Languages end to end on real servers: German and English mail in over IMAP, each acknowledged in its language at SMTP."""

from __future__ import annotations

from email.utils import make_msgid
from pathlib import Path

from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.servers.imap import DovecotServer
from tests.servers.smtp import SmtpSink


def _mail(sender: str, subject: str, body: str, *headers: str) -> bytes:
    lines = [f"From: {sender}", "To: help@example.org", f"Subject: {subject}",
             f"Message-ID: {make_msgid(domain='example.com')}", "Date: Wed, 25 Nov 2026 09:00:00 +0000", *headers,
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "",
             body]
    return "\r\n".join(lines).encode()


def test_german_mail_is_acknowledged_in_german_and_english_mail_in_english(
    dovecot: DovecotServer, smtp_sink: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    env = helpdesk_env(tmp_path / "data", database_url, dovecot, smtp_sink)
    run(env, "init")
    dovecot.append(_mail("Greta Beispiel <greta@example.de>", "Drucker im 3. Stock",
                         "Hallo, der Drucker im dritten Stock druckt seit heute nicht mehr. Können Sie bitte helfen?"))
    dovecot.append(_mail("Ed <ed@example.com>", "VPN", "VPN down", "Content-Language: en-GB"))
    dovecot.append(_mail("Jan <jan@example.de>", "VPN", "VPN down", "Accept-Language: de-DE, en;q=0.5"))
    run(env, "poll", "--once")
    assert len(run_json(env, "tickets", "--json")) == 3
    run(env, "send", "--once")
    acks = {m.rcpt_tos[0]: m.message for m in smtp_sink.wait_for(3)}
    assert set(acks) == {"greta@example.de", "ed@example.com", "jan@example.de"}
    for address, language, sentence in (
        ("greta@example.de", "de", "Guten Tag Greta Beispiel,\n\nwir haben Ihre Nachricht erhalten und als Störung"),
        ("jan@example.de", "de", "wir haben Ihre Nachricht erhalten"),
        ("ed@example.com", "en", "we have received your message and logged it as incident"),
    ):
        ack = acks[address]
        assert ack["Content-Language"] == language, address
        assert sentence in ack.get_body(("plain",)).get_content().replace("\r\n", "\n"), address
        assert sentence.split("\n")[-1] in ack.get_body(("html",)).get_content(), address
