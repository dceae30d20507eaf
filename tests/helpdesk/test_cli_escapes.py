"""Text from mail reaches people's terminals escaped: a subject cannot set the title or clear the screen."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

from sqlalchemy import update

from helpdesk.core import db
from helpdesk.core.models import Event, Inbound, InboundStatus, Outbox, Ticket
from tests.e2e.helpers import HELPDESK, helpdesk_env, run

TITLE, CLEAR, CSI, RLO = "\x1b]0;pwned\x07", "\x1b[2J", "\x9b", "\u202e"
HOSTILE = f"VPN{TITLE} down{CLEAR}"
EIGHT_BIT = f"{CSI}2J and {RLO}txt.exe"  # a C1 control and a bidi override: json.dumps leaves both as they are
# The subject and the sender's name as encoded-words: how control characters really arrive in headers.
MAIL = (
    "From: =?utf-8?q?Mallory=1B=5B2J?= <mallory@example.com>\n"
    "To: help@example.org\n"
    "Subject: =?utf-8?q?VPN=1B=5D0=3Bpwned=07_down=1B=5B2J?=\n"
    "Message-ID: <escape@example.com>\n"
    "Content-Type: text/plain; charset=utf-8\n\n"
    f"Nothing works.{CLEAR}\nSecond line.\n"
).encode()


def _clean(out: bytes) -> str:
    text = out.decode()
    assert not any(c in text for c in ("\x1b", "\x07", CSI, RLO)), out
    return text


def _texts(data: object) -> list[str]:
    if isinstance(data, dict):
        return [t for v in data.values() for t in _texts(v)]
    if isinstance(data, list):
        return [t for v in data for t in _texts(v)]
    return [data] if isinstance(data, str) else []


def _on_a_terminal(env: dict[str, str], *args: str) -> bytes:
    main, child = pty.openpty()
    try:
        proc = subprocess.run([HELPDESK, *args], env=env, stdout=child, stderr=subprocess.PIPE, timeout=60)
        assert proc.returncode == 0, proc.stderr
        os.close(child)
        child = -1
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        os.close(main)
        if child != -1:
            os.close(child)


def test_every_listing_shows_control_characters_escaped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = helpdesk_env(tmp_path / "data", url)
    mail = tmp_path / "hostile.eml"
    mail.write_bytes(MAIL)
    run(env, "ingest", str(mail))
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:  # what other routes (alerts, SMTP errors, bad mail) can store
            # the intake already blanks them in subjects; a subject stored by any other way is shown escaped
            conn.execute(update(Ticket).values(subject=HOSTILE))
            conn.execute(update(Outbox).values(last_error=f"550 {HOSTILE} {EIGHT_BIT}"))
            conn.execute(update(Inbound).values(status=InboundStatus.QUARANTINED, reason=f"broken {HOSTILE}"))
            conn.execute(Event.__table__.insert().values(
                source="nagios", host=f"web01{TITLE}", service=f"HTTP{CLEAR}", state="CRITICAL", severity="exception",
                recovery=False, fingerprint="f1", summary=HOSTILE,
            ))
    finally:
        engine.dispose()

    assert "VPN\\x1b]0;pwned\\x07 down\\x1b[2J" in _clean(run(env, "tickets").stdout)
    shown = _clean(run(env, "ticket", "1").stdout)
    assert "VPN\\x1b]0;pwned\\x07 down\\x1b[2J" in shown
    assert "Nothing works.\\x1b[2J\nSecond line." in shown  # line breaks of the text stay
    assert "Mallory\\x1b[2J" in shown or "mallory@example.com" in shown
    assert "broken VPN\\x1b]0;pwned" in _clean(run(env, "quarantine", "list").stdout)
    assert "550 VPN\\x1b]0;pwned\\x07 down\\x1b[2J \\x9b2J and \\u202etxt.exe" in _clean(run(env, "outbox", "list").stdout)
    assert "web01\\x1b]0;pwned\\x07/HTTP\\x1b[2J" in _clean(run(env, "events").stdout)
    # The raw mail is shown escaped on a terminal; piped, it stays the stored bytes.
    on_screen = _clean(_on_a_terminal(env, "quarantine", "show", "1"))
    assert "reason: broken VPN\\x1b]0;pwned" in on_screen and "Nothing works.\\x1b[2J" in on_screen
    assert MAIL in run(env, "quarantine", "show", "1").stdout

    listed = {}
    for args in (("tickets", "--json"), ("ticket", "1", "--json"), ("quarantine", "list", "--json"),
                 ("outbox", "list", "--json"), ("events", "--json")):
        out = _clean(run(env, *args).stdout)  # escaped as \u001b, \u009b, \u202e: JSON reads them back as stored
        listed[args[0]] = json.loads(out)
        assert any(HOSTILE in text for text in _texts(listed[args[0]])), args
    assert listed["outbox"][0]["last_error"] == f"550 {HOSTILE} {EIGHT_BIT}"
