"""The command line fails with one clear line naming the setting, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.servers import free_port
from tests.servers.imap import ImapServer


def _one_line_error(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_unknown_setting_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", HELPDESK_IMAP_HOST="127.0.0.1",
                       HELPDESK_IMAP_USER="u", HELPDESK_IMAP_TLS="sometimes")
    proc = run(env, "poll", "--once", check=False)
    assert proc.returncode == 2
    assert "HELPDESK_IMAP_TLS" in _one_line_error(proc.stderr)


def test_unreachable_imap_server_is_one_line_and_nonzero(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", HELPDESK_IMAP_HOST="127.0.0.1",
                       HELPDESK_IMAP_PORT=str(free_port()), HELPDESK_IMAP_USER="u", HELPDESK_IMAP_TLS="none")
    proc = run(env, "poll", "--once", check=False)
    assert proc.returncode != 0
    assert "HELPDESK_IMAP" in _one_line_error(proc.stderr)


def test_wrong_imap_password_is_one_line_and_nonzero(imap_server: ImapServer, tmp_path: Path) -> None:
    imap_server.password = "wrong-password"
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", imap_server)
    proc = run(env, "poll", "--once", check=False)
    assert proc.returncode != 0
    line = _one_line_error(proc.stderr)
    assert "HELPDESK_IMAP" in line and "login" in line.lower()


def test_unreachable_database_is_one_line_and_nonzero(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/helpdesk"
    proc = run(helpdesk_env(tmp_path / "data", url), "tickets", check=False)
    assert proc.returncode != 0
    assert "HELPDESK_DATABASE_URL" in _one_line_error(proc.stderr)


def test_ingest_says_75_when_the_database_is_down(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/helpdesk"
    proc = run(helpdesk_env(tmp_path / "data", url), "ingest", input=b"Subject: hi\r\n\r\nbody\r\n", check=False)
    assert proc.returncode == 75


def test_ingest_of_a_missing_file_says_66_and_stores_nothing(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = run(env, "ingest", str(tmp_path / "no-such.eml"), check=False)
    assert proc.returncode == 66
    assert "no-such.eml" in _one_line_error(proc.stderr)
    assert run(env, "quarantine", "list", "--json").stdout.strip() == b"[]"
    assert run(env, "tickets", "--json").stdout.strip() == b"[]"


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("rules.toml", "[defaults]\nkind = 'incident'\n", "must set kind and category"),
        ("catalogue.toml", "[[item]\n", "catalogue.toml"),
        ("priority.toml", 'matrix = [["P1", "P2"], ["P2"]]\n', "square"),
    ],
)
def test_broken_data_dir_file_is_one_line_exit_2_and_ingest_keeps_the_mail_queued(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / name).write_text(text)
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = run(env, "tickets", check=False)
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert name in line and problem in line

    mail = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <m1@example.com>\r\n\r\nbody\r\n"
    proc = run(env, "ingest", input=mail, check=False)
    assert proc.returncode == 75  # EX_TEMPFAIL: the MTA retries instead of bouncing
    assert name in _one_line_error(proc.stderr)
    (data / name).unlink()
    assert run(env, "tickets", "--json").stdout.strip() == b"[]"  # nothing was half taken
    run(env, "ingest", input=mail)
    assert len(run_json(env, "tickets", "--json")) == 1


def test_ingest_with_a_bad_setting_says_75_naming_it(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", HELPDESK_SMTP_HOST="127.0.0.1",
                       HELPDESK_SMTP_TLS="sometimes")
    proc = run(env, "ingest", input=b"Subject: hi\r\n\r\nbody\r\n", check=False)
    assert proc.returncode == 75
    assert "HELPDESK_SMTP_TLS" in _one_line_error(proc.stderr)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("HELPDESK_DATABASE_URL", "sqlite"),
        ("HELPDESK_DATABASE_URL", "sqlitex:///x"),
        ("HELPDESK_DATABASE_URL", "postgresql+psycopg2://u@127.0.0.1/x"),
        ("HELPDESK_DATABASE_URL", "postgresql://u:s3cret@127.0.0.1:notaport/x"),
        ("HELPDESK_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1:99999/x"),
        ("HELPDESK_BUSINESS_HOURS", "mon-fri 25:00-26:00"),
        ("HELPDESK_BUSINESS_HOURS", "mon-fri 08:00-18:99"),
        ("HELPDESK_LEASE_SECONDS", "nan"),
        ("HELPDESK_LEASE_SECONDS", "inf"),
        ("HELPDESK_POLL_INTERVAL", "nan"),
        ("HELPDESK_SLA_TARGETS", "P1=99999999999999d/4h"),
        ("HELPDESK_SLA_TARGETS", "P2=1h/366d"),
        ("HELPDESK_ACCESS_GRANT_DAYS", "99999999999"),
        ("HELPDESK_CLOSED_REOPEN_DAYS", "99999999999"),
    ],
)
def test_a_bad_setting_value_is_one_line_naming_it_and_exit_2(tmp_path: Path, setting: str, value: str) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", **{setting: value})
    proc = run(env, "tickets", check=False)
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert setting in line and "s3cret" not in line


@pytest.mark.parametrize("content", [None, "address = 'Grüße@example.org'\n".encode("latin-1")])
def test_a_config_file_that_is_a_directory_or_not_utf8_is_one_line(tmp_path: Path, content: bytes | None) -> None:
    config = tmp_path / "helpdesk.toml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", HELPDESK_CONFIG=str(config))
    proc = run(env, "tickets", check=False)
    assert proc.returncode == 2
    assert "HELPDESK_CONFIG" in _one_line_error(proc.stderr)


@pytest.mark.parametrize("where", ["a file", "under /proc"])
@pytest.mark.parametrize("command", ["tickets", "init"])
@pytest.mark.parametrize("secret_key", [None, "test-secret"])
def test_a_data_dir_that_cannot_be_one_is_one_line_naming_it(
    tmp_path: Path, where: str, command: str, secret_key: str | None
) -> None:
    if where == "a file":
        data = tmp_path / "passwd"
        data.write_text("root:x:0:0::/root:/bin/sh\n")
    else:
        data = Path("/proc/helpdesk-test-data")
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    if secret_key is None:
        del env["HELPDESK_SECRET_KEY"]  # the local secret is kept in the data dir
    proc = run(env, command, check=False)
    assert proc.returncode == 2
    assert "HELPDESK_DATA_DIR" in _one_line_error(proc.stderr)


@pytest.mark.parametrize("name", ["rules.toml", "catalogue.toml"])
def test_a_data_dir_file_that_is_not_utf8_is_one_line_and_ingest_says_75(tmp_path: Path, name: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / name).write_bytes("# Störungen und Anträge\n".encode("latin-1"))
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = run(env, "tickets", check=False)
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert name in line and "utf-8" in line.lower()
    proc = run(env, "ingest", input=b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n", check=False)
    assert proc.returncode == 75
    assert name in _one_line_error(proc.stderr)


def test_ingest_says_75_when_the_database_is_from_a_newer_release(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "db.sqlite"
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{db}")
    run(env, "init")
    with sqlite3.connect(db) as conn:  # a schema revision this release does not know
        conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    proc = run(env, "ingest", input=b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n", check=False)
    assert proc.returncode == 75
    assert "ffffffffffff" in _one_line_error(proc.stderr)



@pytest.mark.parametrize(
    ("args", "setting"),
    [(["run"], "HELPDESK_WEB_PORT"), (["web"], "HELPDESK_WEB_PORT"), (["web", "--port", "{port}"], "--port"),
     (["web", "--workers", "2"], "HELPDESK_WEB_PORT")],
)
def test_a_busy_console_port_is_one_line_naming_it(tmp_path: Path, args: list[str], setting: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", HELPDESK_WEB_PORT=str(port))
        proc = run(env, *[a.format(port=port) for a in args], check=False)
    assert proc.returncode != 0
    assert f"{setting}: 127.0.0.1:{port} is already in use" in _one_line_error(proc.stderr)
    assert not list((tmp_path / "data").glob("demo.json"))  # `run` stopped its demo mail servers again


@pytest.mark.parametrize(("option", "value"), [("--port", "99999"), ("--port", "-1"), ("--host", "256.1.1.1")])
def test_a_console_address_that_cannot_be_is_refused_in_one_line(tmp_path: Path, option: str, value: str) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = run(env, "web", option, value, check=False, timeout=20)
    assert proc.returncode == 2
    text = proc.stderr.decode()
    assert "Traceback" not in text and option in text.splitlines()[-1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_console_host_that_does_not_resolve_is_named_alike_with_workers(tmp_path: Path, workers: str) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = run(env, "web", "--workers", workers, "--host", "no-such-host.invalid", check=False, timeout=30)
    assert proc.returncode == 2
    assert "--host: 'no-such-host.invalid' is no address or host name to listen on" in _one_line_error(proc.stderr)


def _refusing_login_server() -> Controller:
    """aiosmtpd that wants a login and refuses every one."""

    class Accept:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    return Controller(Accept(), hostname="127.0.0.1", port=free_port(), auth_required=True,
                      auth_require_tls=False, authenticator=lambda *_: AuthResult(success=False, handled=False))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # loopback only
@pytest.mark.parametrize("server", ["unreachable", "refusing the login"])
def test_send_once_that_cannot_reach_or_log_in_names_the_settings(tmp_path: Path, server: str) -> None:
    smtp = _refusing_login_server() if server == "refusing the login" else None
    port = smtp.port if smtp else free_port()
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", HELPDESK_SMTP_HOST="127.0.0.1",
                       HELPDESK_SMTP_PORT=str(port), HELPDESK_SMTP_TLS="none", HELPDESK_SMTP_USER="desk",
                       HELPDESK_SMTP_PASSWORD="wrong")
    run(env, "ingest", input=b"From: a@example.com\r\nTo: help@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    if smtp:
        smtp.start()
    try:
        proc = run(env, "send", "--once", check=False)
    finally:
        if smtp:
            smtp.stop()
    assert proc.returncode != 0
    text = proc.stderr.decode()
    assert "Traceback" not in text
    [line] = [line for line in text.splitlines() if line.startswith("helpdesk send:")]
    settings = "HELPDESK_SMTP_USER/HELPDESK_SMTP_PASSWORD" if smtp else "HELPDESK_SMTP_HOST/HELPDESK_SMTP_PORT"
    assert line.startswith(f"helpdesk send: {settings}: ") and f"127.0.0.1:{port}" in line


@pytest.mark.parametrize(
    "args",
    [["ticket", "{n}", "--json"], ["quarantine", "show", "{n}"], ["quarantine", "requeue", "{n}"],
     ["quarantine", "discard", "{n}", "--reason", "spam"], ["outbox", "retry", "{n}"]],
)
@pytest.mark.parametrize("number", ["99999999999999999999", "3000000000", "0"])
def test_an_id_out_of_range_is_a_usage_error_on_both_databases(
    database_url: str, tmp_path: Path, args: list[str], number: str
) -> None:
    env = helpdesk_env(tmp_path / "data", database_url)
    proc = run(env, *[a.format(n=number) for a in args], check=False)
    assert proc.returncode == 2
    text = proc.stderr.decode()
    assert "Traceback" not in text and "must be between 1 and 2147483647" in text.splitlines()[-1]


def test_events_limit_past_the_integer_range_lists_everything(database_url: str, tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", database_url)
    assert run_json(env, "events", "--json", "--limit", "99999999999999999999") == []


@pytest.mark.parametrize(
    ("setting", "value"), [("HELPDESK_IMAP_FOLDER", "No-Such-Folder"), ("HELPDESK_IMAP_TLS", "starttls")]
)
def test_a_missing_imap_folder_or_starttls_names_its_setting(
    pymap_server: ImapServer, tmp_path: Path, setting: str, value: str
) -> None:
    # pymap here runs without TLS, so it offers no STARTTLS.
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", pymap_server, **{setting: value})
    proc = run(env, "poll", "--once", check=False)
    assert proc.returncode != 0
    assert _one_line_error(proc.stderr).startswith(f"helpdesk: {setting}: ")


@pytest.mark.parametrize(
    ("setting", "value", "bounds"),
    [("HELPDESK_AUTO_MAIL_PER_HOUR", "-1", "at least 0"), ("HELPDESK_ACCESS_GRANT_DAYS", "0", "between 1 and 36500")],
)
def test_a_number_out_of_range_says_the_range(tmp_path: Path, setting: str, value: str, bounds: str) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", **{setting: value})
    proc = run(env, "tickets", check=False)
    assert proc.returncode == 2
    assert _one_line_error(proc.stderr).endswith(f"{setting}: must be {bounds} (got {value})")
