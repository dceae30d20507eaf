"""A local demo mail system for ``make run`` when no mail server is configured.

pymap serves the help mailbox over IMAP; aiosmtpd accepts outbound mail. Mail to the help
address (or its ``+tag`` forms) is delivered into the IMAP inbox, so ``helpdesk demo-mail``
and replies to our own mail go the whole way round; mail for anyone else is kept as ``.eml``
files under ``DATA_DIR/demo-mail/`` so you can read what users would receive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.config import data_dir_error, ensure_data_dir
from helpdesk.core.files import private_dir, write_private
from helpdesk.core.settings import MailboxSettings, Settings, SmtpSettings, TlsMode

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope
    from aiosmtpd.smtp import Session as SMTPSession

log = logging.getLogger("helpdesk.demo")

DEMO_USER = "helpdesk"
DEMO_PASSWORD = "demo"


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def _wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise OSError(f"demo server for port {port} exited (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise OSError(f"demo server on port {port} did not start")


class _Handler:
    """aiosmtpd handler: local delivery for the help address, files for everyone else."""

    def __init__(self, settings: Settings, mailbox: MailboxSettings, outbox_dir: Path) -> None:
        self.settings, self.mailbox, self.outbox_dir = settings, mailbox, outbox_dir

    def _is_help(self, address: str) -> bool:
        local, _, domain = address.lower().rpartition("@")
        return domain == self.settings.help_domain and local.split("+")[0] == self.settings.help_local

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: Envelope) -> str:
        from helpdesk.mailgateway.imap import MailboxClient

        raw = envelope.content if isinstance(envelope.content, bytes) else (envelope.content or "").encode()
        if any(self._is_help(r) for r in envelope.rcpt_tos):
            client = MailboxClient(self.mailbox)
            client.connect()
            try:
                client.append(self.mailbox.folder, raw)
            finally:
                client.close()
            log.info("demo SMTP: delivered mail from %s to the help inbox", envelope.mail_from)
        others = [r for r in envelope.rcpt_tos if not self._is_help(r)]
        if others:
            private_dir(self.outbox_dir)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.eml"
            write_private(self.outbox_dir / name, raw)
            log.info("demo SMTP: mail for %s kept in %s", ", ".join(others), self.outbox_dir / name)
        return "250 OK"


@dataclass
class DemoServers:
    settings: Settings
    pymap: subprocess.Popen[bytes]
    smtp: Controller
    state_file: Path

    def instructions(self) -> str:
        mb, smtp = self.settings.mailboxes[0], self.settings.smtp
        assert smtp is not None
        return (
            f"  demo IMAP:    127.0.0.1:{mb.port} (user {mb.user}, password {mb.password})\n"
            f"  demo SMTP:    127.0.0.1:{smtp.port}; mail users receive is kept in {self.settings.data_dir / 'demo-mail'}\n"
            f"  send a test mail:  .venv/bin/helpdesk demo-mail   (in another terminal)"
        )

    def stop(self) -> None:
        self.smtp.stop()
        self.pymap.terminate()
        try:
            self.pymap.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.pymap.kill()
        with contextlib.suppress(OSError):  # a read-only data dir never got one
            self.state_file.unlink(missing_ok=True)


def _start_pymap() -> tuple[int, subprocess.Popen[bytes]]:
    """pymap on 1143, or any free port: another program may take the port between our check and pymap's bind."""
    pymap_bin = Path(sys.executable).with_name("pymap")
    command = [str(pymap_bin)] if pymap_bin.exists() else [sys.executable, "-c", "from pymap.main import main; main()"]
    for preferred in (1143, 0, 0):
        port = _free_port(preferred)
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--no-tls", "dict",
             "--demo-user", DEMO_USER, "--demo-password", DEMO_PASSWORD],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, proc=proc)
        except OSError as exc:
            log.warning("demo IMAP server did not start on port %s (%s); trying another port", port, exc)
            proc.kill()
            proc.wait()
            continue
        return port, proc
    raise OSError("the demo IMAP server (pymap) did not start")


def start(settings: Settings) -> DemoServers:
    from aiosmtpd.controller import Controller

    ensure_data_dir(settings.data_dir)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
    imap_port, proc = _start_pymap()
    smtp_port = _free_port(1025)
    mailbox = MailboxSettings(
        name="demo", host="127.0.0.1", port=imap_port, user=DEMO_USER, password=DEMO_PASSWORD,
        tls=TlsMode.NONE, folder="INBOX", processed_folder="Processed", address=settings.address,
    )
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_port)
    demo_settings = replace(settings, mailboxes=(mailbox,), smtp=smtp, poll_interval=min(settings.poll_interval, 5.0))
    controller = Controller(
        _Handler(demo_settings, mailbox, settings.data_dir / "demo-mail"), hostname="127.0.0.1", port=smtp_port
    )
    controller.start()
    servers = DemoServers(demo_settings, proc, controller, settings.data_dir / "demo.json")
    try:
        servers.state_file.unlink(missing_ok=True)  # a new one, owner-only like all in the data dir
        write_private(servers.state_file, json.dumps({"smtp_port": smtp_port, "imap_port": imap_port}).encode())
    except OSError as exc:  # a read-only data dir: don't leave pymap running behind us
        servers.stop()
        raise data_dir_error(settings.data_dir, exc) from None
    return servers


def ensure_demo_login(factory: sessionmaker[Session], settings: Settings) -> str:
    """A console login for the demo: an admin with a random password, made once, kept in DATA_DIR/demo-login.txt."""
    from sqlalchemy import select

    from helpdesk.core import users
    from helpdesk.core.db import transaction
    from helpdesk.core.models import Contact, Role

    login_file = settings.data_dir / "demo-login.txt"
    with transaction(factory) as session:
        has_admin = session.scalars(select(Contact.id).where(Contact.role == Role.ADMIN).limit(1)).first() is not None
        if not has_admin:
            email, password = f"admin@{settings.help_domain}", secrets.token_urlsafe(12)
            users.create_user(session, email, Role.ADMIN, password)
            write_private(login_file, f"{email} {password}\n".encode())
    if login_file.exists():
        email, password = login_file.read_text().split()
        return f"  console login: {email} / {password}   (kept in {login_file})"
    return "  console login: your admin account (make more with `.venv/bin/helpdesk user add EMAIL --role agent`)"


def send_demo_mail(settings: Settings, *, sender: str, subject: str, body: str) -> str:
    """Send a test mail to the help address over the configured SMTP server or the running demo."""
    import asyncio

    import aiosmtplib

    smtp = settings.smtp
    if smtp is None:
        state_file = settings.data_dir / "demo.json"
        if not state_file.exists():
            raise OSError("no SMTP server configured and no demo running: start `make run` first")
        smtp = SmtpSettings(host="127.0.0.1", port=json.loads(state_file.read_text())["smtp_port"])
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = settings.address
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    message_id = make_msgid(domain=sender.rpartition("@")[2] or "example.com")
    msg["Message-ID"] = message_id
    msg.set_content(body)
    try:
        asyncio.run(aiosmtplib.send(msg, hostname=smtp.host, port=smtp.port, start_tls=False, use_tls=False))
    except aiosmtplib.SMTPException as exc:
        raise OSError(f"cannot send through {smtp.host}:{smtp.port}: {exc} (is `make run` running?)") from None
    return message_id.strip("<>")
