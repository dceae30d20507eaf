"""Several mailboxes from the TOML file's ``[[mailboxes]]`` tables, polled by the real ``helpdesk poll``."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.core.settings import TlsMode
from helpdesk.config import ConfigError, load
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.e2e.mails import make_mail, token
from tests.servers.imap import DovecotInstance, DovecotServer


def _table(server: DovecotServer, name: str, address: str, **extra: str) -> str:
    lines = [
        "[[mailboxes]]",
        f'name = "{name}"',
        f'host = "{server.host}"',
        f"port = {server.port}",
        f'user = "{server.user}"',
        f'password = "{server.password}"',
        'tls = "none"',
        f'address = "{address}"',
        *(f'{k} = "{v}"' for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def test_two_mailboxes_from_the_config_file_are_polled_each_with_its_address(
    dovecot: DovecotServer, dovecot_instance: DovecotInstance, tmp_path: Path
) -> None:
    other = dovecot_instance.new_account()
    config = tmp_path / "helpdesk.toml"
    config.write_text(
        _table(dovecot, "help", "help@example.org") + _table(other, "it", "it@example.org", processed_folder="")
    )
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}", HELPDESK_CONFIG=str(config))
    run(env, "init")
    to_both = make_mail(1).replace(b"To: help@example.org", b"To: help@example.org\r\nCc: it@example.org")
    dovecot.append_many([to_both, make_mail(2)])
    other.append_many([to_both, make_mail(3).replace(b"To: help@example.org", b"To: it@example.org")])

    out = run(env, "poll", "--once").stdout.decode()
    assert "help: fetched 2, stored 2" in out and "it: fetched 2, stored 2" in out
    subjects = [t["subject"] for t in run_json(env, "tickets", "--json")]
    assert sorted(n for n in (1, 2, 3) for s in subjects if token(n) in s) == [1, 2, 3]  # the CC'd mail once
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 2
    assert len(other.uids("INBOX")) == 2 and "Processed" not in other.folders()  # "" only flags


def test_mailbox_tables_are_read_with_defaults_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "helpdesk.toml"
    config.write_text('[[mailboxes]]\nhost = "imap.example.org"\nuser = "it"\ntls = "ssl"\n')
    settings = load({"HELPDESK_DATA_DIR": str(tmp_path), "HELPDESK_LEASE_SECONDS": "5"}, str(config))
    [box] = settings.mailboxes
    assert (box.name, box.port, box.tls, box.folder, box.processed_folder, box.address) == (
        "it@imap.example.org/INBOX", 993, TlsMode.SSL, "INBOX", "Processed", "help@example.org"
    )
    assert settings.lease_seconds == 5

    config.write_text('[[mailboxes]]\nhost = "imap.example.org"\nuser = "it"\nfolders = "x"\n')
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]: unknown key\(s\) folders"):
        load({"HELPDESK_DATA_DIR": str(tmp_path)}, str(config))
    config.write_text('[[mailboxes]]\nhost = "a"\nuser = "u"\n[[mailboxes]]\nhost = "a"\nuser = "u"\n')
    with pytest.raises(ConfigError, match="mailbox names must differ"):
        load({"HELPDESK_DATA_DIR": str(tmp_path)}, str(config))
    with pytest.raises(ConfigError, match="HELPDESK_LEASE_SECONDS"):
        load({"HELPDESK_DATA_DIR": str(tmp_path), "HELPDESK_LEASE_SECONDS": "soon"})
