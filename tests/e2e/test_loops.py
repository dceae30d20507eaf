"""Mail loops with real robots on loopback: the helpdesk's automatic mail stays within the rate limit.

Three robots read what the helpdesk sends them (over SMTP, into an aiosmtpd server) and answer into
the help mailbox (over IMAP): a vacation program without RFC 3834 headers that answers with fresh
mail (the loop the loop guard cannot see), a vacation program with them, and a bouncer.
"""

from __future__ import annotations

from collections import Counter
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import func, select

from helpdesk.core.models import Contact, Inbound, InboundStatus, Outbox, Ticket
from helpdesk.core.settings import ConversationSettings, Settings, SmtpSettings
from helpdesk.wiring import build
from helpdesk.mailgateway.smtp import send_once
from helpdesk.mailgateway.watcher import poll_once
from tests.servers.imap import ImapServer
from tests.servers.smtp import ReceivedMail, SmtpSink

ROUNDS = 16
PLAIN, POLITE, BOUNCER = "away@bots.example", "polite@bots.example", "nobody@bots.example"


def _mail(sender: str, subject: str, body: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "help@example.org", subject
    msg["Message-ID"] = make_msgid(domain="bots.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def answer(received: ReceivedMail, serial: int) -> bytes | None:
    """What each robot sends back for one mail it got."""
    original = received.message
    rcpt = received.rcpt_tos[0]
    if rcpt == PLAIN:  # fresh mail, no In-Reply-To, no Auto-Submitted: looks like a person
        return _mail(PLAIN, f"Thanks for your message ({serial})", "I am away until Monday.").as_bytes()
    if rcpt == POLITE:
        return _mail(POLITE, f"Auto: {original['Subject']}", "I am on leave.", Auto_Submitted="auto-replied",
                     In_Reply_To=original["Message-ID"]).as_bytes()
    if rcpt == BOUNCER:
        return (
            "From: MAILER-DAEMON@bots.example\r\nTo: help@example.org\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {make_msgid(domain='bots.example')}\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nNo such user.\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.bots.example\r\n\r\n"
            f"Final-Recipient: rfc822; {BOUNCER}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original['Message-ID']}\r\n"
            f"Subject: {original['Subject']}\r\n--B--\r\n"
        ).encode()
    return None  # the agent reads, and does not answer


def test_three_robots_for_sixteen_rounds(imap_server: ImapServer, smtp_sink: SmtpSink, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'hd.sqlite3'}", secret_key="test-secret",
        mailboxes=(imap_server.mailbox_settings(),), smtp=SmtpSettings(smtp_sink.host, smtp_sink.port),
        agent_addresses=("agent@example.org",), conversation=ConversationSettings(),
    )
    app = build(settings)
    limit = settings.conversation.auto_mail_per_hour
    sent_by_robots = 0
    imap_server.append_many(
        _mail(robot, "Printer broken", "Please help.").as_bytes() for robot in (PLAIN, POLITE, BOUNCER)
    )
    sent_by_robots += 3
    seen = 0
    for round_ in range(ROUNDS):
        poll_once(app.factory, app.intake, settings.mailboxes[0])
        send_once(app.factory, settings.smtp)
        received = smtp_sink.messages[seen:]
        seen += len(received)
        replies = [r for n, m in enumerate(received) if (r := answer(m, round_ * 100 + n)) is not None]
        if replies:
            imap_server.append_many(replies)
            sent_by_robots += len(replies)
    poll_once(app.factory, app.intake, settings.mailboxes[0])

    to = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    with app.factory() as session:
        inbound = Counter(session.scalars(select(Inbound.status)))
        automatic = Counter(session.scalars(select(Outbox.rcpt).where(Outbox.automatic.is_(True))))
        tickets_by = Counter(session.scalars(select(Contact.email).join(Ticket, Ticket.requester_id == Contact.id)))
        bouncer = session.scalars(select(Contact).where(Contact.email == BOUNCER)).one()
        internal_records = session.scalar(select(func.count()).select_from(Inbound).where(
            Inbound.status == InboundStatus.PROCESSED, Inbound.reason.like("%bounce%")))
    print(f"\nloop test, {ROUNDS} rounds: robots sent {sent_by_robots}, inbound {dict((k.value, v) for k, v in inbound.items())}; "
          f"helpdesk mailed {dict(to)}; tickets per robot {dict(tickets_by)}")
    # Nothing lost, nothing crashed: every robot mail was stored and handled, none is left in the inbox.
    assert sum(inbound.values()) == sent_by_robots
    assert inbound[InboundStatus.QUARANTINED] == 0 and inbound[InboundStatus.NEW] == 0
    assert imap_server.uids("INBOX") == []
    # Within the rate limit: the unrecognisable robot got exactly `limit` acknowledgements, then silence.
    assert to[PLAIN] == limit and automatic[PLAIN] == limit
    assert tickets_by[PLAIN] == limit + 1
    # The polite robot and the bouncer are recognised: one acknowledgement each, no answer to their replies.
    assert to[POLITE] == 1 and to[BOUNCER] == 1
    assert bouncer.undeliverable and internal_records == 1
    assert tickets_by[POLITE] == 1 and tickets_by[BOUNCER] == 1
    app.engine.dispose()
