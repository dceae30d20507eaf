"""The test servers themselves work: what other tests build on."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.settings import MailboxSettings, TlsMode
from tests.servers.imap import ImapServer
from tests.servers.postgres import PostgresCluster
from tests.servers.smtp import SmtpSink

RAW = b"From: alice@example.org\r\nTo: help@example.org\r\nSubject: printer jammed\r\n\r\nIt is jammed again.\r\n"


def test_imap_server_appends_and_fetches(imap_server: ImapServer) -> None:
    assert imap_server.uids() == []
    imap_server.append(RAW)
    imap_server.append(RAW.replace(b"printer", b"VPN"))
    assert len(imap_server.uids()) == 2
    assert imap_server.fetch_all() == [RAW, RAW.replace(b"printer", b"VPN")]
    assert all(b"\\Seen" not in flags for flags in imap_server.flags().values())
    assert "INBOX" in imap_server.folders()


def test_imap_server_append_creates_folder(imap_server: ImapServer) -> None:
    imap_server.append(RAW, folder="Archive")
    assert "Archive" in imap_server.folders()
    assert imap_server.fetch_all("Archive") == [RAW]


def test_imap_mailbox_settings(imap_server: ImapServer) -> None:
    settings = imap_server.mailbox_settings(processed_folder=None)
    assert isinstance(settings, MailboxSettings)
    assert (settings.host, settings.port, settings.user) == (imap_server.host, imap_server.port, imap_server.user)
    assert settings.tls is TlsMode.NONE
    assert settings.processed_folder is None


def test_imap_server_restart_keeps_listening(imap_server: ImapServer) -> None:
    imap_server.restart()
    imap_server.append(RAW)
    assert len(imap_server.uids()) == 1


def test_each_dovecot_test_gets_an_empty_account(dovecot: ImapServer) -> None:
    # Runs after the tests above appended mail to other accounts of the same server.
    assert dovecot.uids() == []


def test_smtp_sink_receives_mail(smtp_sink: SmtpSink) -> None:
    msg = EmailMessage()
    msg["From"] = "help@example.org"
    msg["To"] = "alice@example.org"
    msg["Subject"] = "[#1] printer jammed"
    msg.set_content("We are on it.")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.send_message(msg)
    (mail,) = smtp_sink.wait_for(1)
    assert mail.mail_from == "help@example.org"
    assert mail.rcpt_tos == ["alice@example.org"]
    assert mail.message["Subject"] == "[#1] printer jammed"
    assert mail.message.get_content().strip() == "We are on it."


@pytest.mark.parametrize("reply, code", [("550 no such user", 550), ("451 try later", 451)])
def test_smtp_sink_refuses_recipients_when_told(smtp_sink: SmtpSink, reply: str, code: int) -> None:
    smtp_sink.reject_rcpt = reply
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("help@example.org", ["bob@example.org"], b"Subject: x\r\n\r\ny\r\n")
    assert refused.value.recipients["bob@example.org"][0] == code
    assert smtp_sink.messages == []


def test_smtp_sink_wait_for_times_out(smtp_sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(1, timeout=0.1)


def test_postgres_cluster_creates_tables(postgres_cluster: PostgresCluster) -> None:
    name = postgres_cluster.create_database()
    engine = create_engine(postgres_cluster.url(name))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (id serial PRIMARY KEY, note text)"))
            conn.execute(text("INSERT INTO probe (note) VALUES ('hello')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM probe")).scalar_one() == "hello"
    finally:
        engine.dispose()
        postgres_cluster.drop_database(name)


def test_database_url_is_empty_and_usable(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_session_factory_has_the_schema(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        tables = inspect(session.get_bind()).get_table_names()
    assert "alembic_version" in tables
    assert len(tables) > 1


def test_corpus_dir_has_mail(corpus_dir: Path) -> None:
    assert any(corpus_dir.rglob("*"))
