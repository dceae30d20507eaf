"""Message-IDs read from mail as IMAP servers hand it over (CRLF): a body line is no header."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from helpdesk.core.models import Inbound, InboundStatus
from helpdesk.wiring import App
from helpdesk.mailgateway.watcher import poll_once
from tests.core.test_intake_dedup import crlf_mail
from tests.mailgateway.test_watcher import make_app, sqlite_url, tickets  # noqa: F401 (fixtures)
from tests.servers.imap import ImapServer


def test_mail_quoting_a_message_id_in_its_body_is_its_own_ticket(
    make_app: Callable[..., App], imap_server: ImapServer, sqlite_url: str  # noqa: F811
) -> None:
    mailbox = imap_server.mailbox_settings()
    app = make_app(sqlite_url, mailbox)
    imap_server.append_many([
        crlf_mail("VPN is down", "Since 8:00.", message_id="<vpn-1@client.example>"),
        crlf_mail("Headers you asked for", "Here:\r\n\r\nMessage-ID: <vpn-1@client.example>\r\n", sender="bob@example.com"),
    ])
    poll_once(app.factory, app.intake, mailbox)
    with app.factory() as session:
        rows = session.execute(select(Inbound.status, Inbound.message_id).order_by(Inbound.id)).all()
    assert rows == [(InboundStatus.PROCESSED, "vpn-1@client.example"), (InboundStatus.PROCESSED, None)]
    assert tickets(app) == 2
