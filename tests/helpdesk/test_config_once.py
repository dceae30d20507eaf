"""Configuration is read once per process: the settings file, rules, catalogue and priority matrix are
checked at start (a broken one stops it with one line naming the file and line), nothing reads them
again per mail, and reading the configuration writes nothing (the secret key is made by the commands
that need it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from helpdesk.config import ConfigError, load
from helpdesk.core.db import transaction
from helpdesk.core.intake import process_pending
from helpdesk.core.models import Inbound, Ticket
from helpdesk.wiring import build
from tests.e2e.helpers import HELPDESK, helpdesk_env, run
from tests.servers import free_port, terminate, wait_for_port

BROKEN = "# line 1\nname = \n"  # a syntax error on line 2

RULES = (
    '[defaults]\nkind = "incident"\ncategory = "general"\n\n'
    '[[rule]]\nname = "coffee"\n[rule.when]\nsubject = "coffee machine"\n'
    '[rule.then]\ncategory = "facilities"\ngroup = "facilities"\n'
)
ALL_P5 = 'matrix = [["P5", "P5", "P5"], ["P5", "P5", "P5"], ["P5", "P5", "P5"]]\n'
CATALOGUE = (
    '[[item]]\ncode = "coffee-beans"\nname = "Coffee beans"\nkeywords = ["beans"]\nfulfilment_hours = 2\n'
    'steps = ["order"]\n'
)


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HELPDESK_DATA_DIR": str(tmp_path / "data"), "HELPDESK_SECRET_KEY": "test-secret",
            "HELPDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", **values}


@pytest.mark.parametrize("setting", ["HELPDESK_CONFIG", "HELPDESK_RULES_FILE", "HELPDESK_CATALOGUE_FILE",
                                     "HELPDESK_PRIORITY_FILE", "rules.toml", "catalogue.toml", "priority.toml"])
def test_a_broken_file_stops_the_start_with_its_name_and_line(tmp_path: Path, setting: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if setting.startswith("HELPDESK_"):
        path = tmp_path / "broken.toml"
        env = _env(tmp_path, **{setting: str(path)})
    else:  # a file in the data dir, found without a setting
        path = data / setting
        env = _env(tmp_path)
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as caught:
        load(env)
    message = str(caught.value)
    assert str(path) in message and "line 2" in message and "\n" not in message


def _deliver(app, raw: bytes) -> Ticket:  # type: ignore[no-untyped-def]
    with transaction(app.factory) as session:
        app.intake.store(session, raw, source="test")
    process_pending(app.factory, app.intake)
    with app.factory() as session:
        inbound = session.scalars(select(Inbound).order_by(Inbound.id.desc())).first()
        assert inbound is not None and inbound.ticket_id is not None, inbound and inbound.status
        ticket = session.get(Ticket, inbound.ticket_id)
        assert ticket is not None
        session.expunge(ticket)
        return ticket


def _mail(sender: str, subject: str, body: str, n: int) -> bytes:
    return (f"From: {sender}\r\nTo: help@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <once-{n}@client.example>\r\n\r\n{body}\r\n").encode()


def test_rules_catalogue_and_matrix_changed_after_start_are_not_read_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    files = {"rules.toml": RULES, "priority.toml": ALL_P5, "catalogue.toml": CATALOGUE}
    for name, text in files.items():
        (data / name).write_text(text)
    app = build(load(_env(tmp_path)))
    for name in files:  # what a running desk would trip over if it read them again
        (data / name).write_text(BROKEN)

    coffee = _deliver(app, _mail("alice@example.com", "Coffee machine broken", "Urgent, everyone is affected.", 1))
    assert (coffee.category, coffee.priority) == ("facilities", "P5")
    alert = _deliver(app, _mail("nagios@mon01.example.org", "PROBLEM Service Alert: web01/HTTP is CRITICAL",
                                "Host: web01\nState: CRITICAL\n", 2))
    assert alert.priority == "P5"  # the event's incident takes the matrix read at start
    assert [i.code for i in app.settings.rulebook.catalogue.items] == ["coffee-beans"]


def test_check_config_names_each_file_it_checked_and_fails_on_a_broken_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rules.toml").write_text(RULES)
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    out = run(env, "check-config").stdout.decode()
    assert f"rules: {data / 'rules.toml'} (1 rule)" in out
    assert "catalogue: shipped" in out and "priority matrix: shipped" in out
    (data / "catalogue.toml").write_text(BROKEN)
    proc = run(env, "check-config", check=False)
    assert proc.returncode == 2
    assert str(data / "catalogue.toml") in proc.stderr.decode() and "line 2" in proc.stderr.decode()
    assert sorted(p.name for p in data.iterdir()) == ["catalogue.toml", "rules.toml"]  # it wrote nothing


def test_parse_in_an_empty_directory_writes_nothing(tmp_path: Path) -> None:
    here = tmp_path / "empty"
    here.mkdir()
    mail = tmp_path / "one.eml"
    mail.write_bytes(_mail("alice@example.com", "VPN is down", "Since this morning.", 3))
    env = helpdesk_env(here, f"sqlite:///{here / 'helpdesk.db'}")
    del env["HELPDESK_SECRET_KEY"], env["HELPDESK_DATABASE_URL"]  # all defaults: data dir, database, secret
    for where in (here, here / "data"):
        env["HELPDESK_DATA_DIR"] = str(where)
        proc = subprocess.run([HELPDESK, "parse", str(mail), "--json"], env=env, cwd=here, capture_output=True,
                              timeout=60, check=True)
        assert b'"subject": "VPN is down"' in proc.stdout
        assert list(here.iterdir()) == []


@pytest.mark.parametrize("command", ["web", "run"])
def test_the_first_start_makes_the_secret_key_and_the_next_keeps_it(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    del env["HELPDESK_SECRET_KEY"]
    keys = []
    for _ in range(2):
        port = free_port()
        env["HELPDESK_WEB_PORT"] = str(port)
        with (tmp_path / f"{command}.log").open("ab") as log:
            process = subprocess.Popen([HELPDESK, command], env=env, stdout=log, stderr=log)
            try:
                wait_for_port("127.0.0.1", port, timeout=60, alive=lambda p=process: p.poll() is None)
            finally:
                terminate(process, 30)
        key = data / "secret_key"
        assert key.stat().st_mode & 0o077 == 0  # for the owner only
        keys.append(key.read_text().strip())
    assert len(keys[0]) == 64 and keys[1] == keys[0]
