"""Realistic test mail, made on the fly: plain, HTML, attachments, replies, non-ASCII, no Message-ID.

Used by the watcher, kill and worker tests and by the benchmarks. Every mail carries a unique
token in its subject (``[t-<n>]``) so a test can find the ticket or message it became.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

_PEOPLE = [
    ("Alice Example", "alice@example.com"),
    ("Jürgen Müller", "juergen.mueller@example.de"),
    ("Zoë Brontë", "zoe@example.net"),
    ("山田 太郎", "taro.yamada@example.jp"),
    ("Bob Builder", "bob@example.com"),
]
_TOPICS = [
    ("VPN is down, I cannot work", "The VPN client says 'authentication failed' since 8:00."),
    ("Printer on 3rd floor jammed", "The printer near the kitchen shows error E-42 and makes noises."),
    ("Please install Inkscape", "I need Inkscape for the new brochure. Thank you!"),
    ("Passwort zurücksetzen", "Ich habe mein Passwort vergessen. Können Sie es bitte zurücksetzen?"),
    ("Access to the SAP HR share", "Please grant me access to SAP HR, my manager agreed."),
    ("Outlook crashes on start", "Outlook closes right after the splash screen. Übrigens: seit gestern."),
]
_START = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)


def token(n: int) -> str:
    return f"[t-{n}]"


def message_id(n: int) -> str:
    return f"<mail-{n}@client.example.com>"


def make_mail(n: int, *, with_message_id: bool = True, variant: int | None = None) -> bytes:
    """Mail number ``n``; ``variant`` picks the shape (default: n mod 5)."""
    name, address = _PEOPLE[n % len(_PEOPLE)]
    subject, body = _TOPICS[n % len(_TOPICS)]
    shape = n % 5 if variant is None else variant
    msg = EmailMessage()
    msg["From"] = f"{name} <{address}>"
    msg["To"] = "help@example.org"
    msg["Date"] = format_datetime(_START + timedelta(minutes=n))
    if with_message_id:
        msg["Message-ID"] = message_id(n)
    text = f"Hello,\n\n{body}\n\nMail number {n}.\n\nRegards,\n{name}\n"
    if shape == 3:
        # A reply to some earlier mail of a person outside the helpdesk: threading finds nothing.
        msg["Subject"] = f"Re: {subject} {token(n)}"
        msg["In-Reply-To"] = f"<elsewhere-{n}@mail.example.com>"
        msg["References"] = f"<elsewhere-{n}@mail.example.com>"
        text += "\n> earlier text\n> that was quoted\n"
    else:
        msg["Subject"] = f"{subject} {token(n)}"
    msg.set_content(text)
    if shape == 1:
        msg.add_alternative(f"<html><body><p>Hello,</p><p>{body}</p><p><b>Mail {n}</b></p></body></html>", subtype="html")
    elif shape == 2:
        data = (f"log line {n}\n" * 200).encode()
        msg.add_attachment(data, maintype="text", subtype="plain", filename=f"error-{n}.log")
        msg.add_attachment(bytes(range(256)) * 8, maintype="image", subtype="png", filename="screenshot.png")
    elif shape == 4:
        msg.replace_header("Subject", f"Ärger mit dem Drucker — ошибка {token(n)}")
    if msg.is_multipart():
        msg.set_boundary(f"=_part_{n}")  # the same bytes every time: tests compare them
    return msg.as_bytes(policy=SMTP)  # CRLF, as mail arrives
