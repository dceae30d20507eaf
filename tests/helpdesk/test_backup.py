"""``helpdesk backup FILE`` / ``helpdesk restore FILE``: a desk comes back whole, on SQLite and PostgreSQL and across them."""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from pathlib import Path

import pytest

from helpdesk.core.attachments import store_for
from helpdesk import config
from helpdesk.wiring import build
from tests.conftest import PostgresCluster
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.helpdesk.people import AGENT, PASSWORD, PHOTO, fill, mail
from helpdesk.web import create_app


def _tickets(env: dict[str, str]) -> object:
    """All tickets with their messages, with instants as UTC: SQLite gives them back without an offset."""
    listing = run(env, "tickets", "--json").stdout.decode()
    return json.loads(re.sub(r'(\d\d:\d\d:\d\d(?:\.\d+)?)\+00:00"', r'\1"', listing))


def _console_login(env: dict[str, str]) -> int:
    app = build(config.load(env))
    try:
        client = create_app(app.settings, app.factory, testing=True).test_client()
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        response = client.post("/login", data={"email": AGENT, "password": PASSWORD, "csrf_token": token})
        return response.status_code
    finally:
        app.engine.dispose()


def _round_trip(tmp_path: Path, source_url: str, target_url: str, *, local_key: bool) -> None:
    source = helpdesk_env(tmp_path / "source", source_url)
    target = helpdesk_env(tmp_path / "target", target_url)
    if local_key:  # the key lives in the data dir: the backup must carry it
        del source["HELPDESK_SECRET_KEY"], target["HELPDESK_SECRET_KEY"]
    fill(source)
    archive = tmp_path / "desk.zip"
    run(source, "backup", str(archive))
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600

    run(target, "restore", str(archive))

    restored = _tickets(target)
    assert restored == _tickets(source)
    assert run(target, "audit", "verify").stdout.startswith(b"audit trail intact: ")
    store = store_for(config.load(target))
    assert isinstance(restored, list)
    digests = {a["sha256"] for t in restored for m in t["messages"] for a in m["attachments"]}
    assert digests and {store.get(d) for d in digests} == {PHOTO}
    assert _console_login(target) == 302
    # The restored desk goes on: the next mail gets the next ticket number (PostgreSQL's sequences moved on).
    run(target, "ingest", input=mail("carol@example.com", "New laptop", "Please.")[0])
    assert [t["number"] for t in run_json(target, "tickets", "--json")] == [1, 2, 3]


def test_backup_restores_into_an_empty_database(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> None:
    if database_url.startswith("sqlite"):
        target_url = f"sqlite:///{tmp_path / 'restored.sqlite3'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        target_url = cluster.url(cluster.create_database())
    _round_trip(tmp_path, database_url, target_url, local_key=database_url.startswith("sqlite"))


def test_a_sqlite_backup_restores_into_postgresql_and_back(tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    pg_url = postgres_cluster.url(postgres_cluster.create_database())
    _round_trip(tmp_path / "there", f"sqlite:///{tmp_path / 'first.sqlite3'}", pg_url, local_key=False)
    back = helpdesk_env(tmp_path / "back", f"sqlite:///{tmp_path / 'back.sqlite3'}")
    run(helpdesk_env(tmp_path / "there" / "target", pg_url), "backup", str(tmp_path / "pg.zip"))
    run(back, "restore", str(tmp_path / "pg.zip"))
    assert _tickets(back) == _tickets(helpdesk_env(tmp_path / "x", pg_url))
    assert run(back, "audit", "verify").returncode == 0


def test_restore_refuses_a_database_that_is_not_empty(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    fill(env)
    run(env, "backup", str(tmp_path / "desk.zip"))
    run(env, "ingest", input=mail("carol@example.com", "After the backup", "Hello.")[0])

    refused = run(env, "restore", str(tmp_path / "desk.zip"), check=False)
    assert refused.returncode == 1
    assert refused.stderr.decode().startswith("helpdesk restore: the database is not empty")
    assert len(run_json(env, "tickets", "--json")) == 3  # nothing lost

    run(env, "restore", "--force", str(tmp_path / "desk.zip"))
    assert len(run_json(env, "tickets", "--json")) == 2
    assert run(env, "audit", "verify").returncode == 0


def test_restore_refuses_a_backup_made_under_another_secret_key(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    fill(env)
    run(env, "backup", str(tmp_path / "desk.zip"))
    other = helpdesk_env(tmp_path / "other", f"sqlite:///{tmp_path / 'other.sqlite3'}", HELPDESK_SECRET_KEY="another")
    refused = run(other, "restore", str(tmp_path / "desk.zip"), check=False)
    assert refused.returncode == 1 and b"another secret key" in refused.stderr


def test_backup_holds_rows_attachments_and_no_secret_from_the_environment(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    fill(env)
    run(env, "backup", str(tmp_path / "desk.zip"))
    with zipfile.ZipFile(tmp_path / "desk.zip") as zf:
        names = zf.namelist()
        meta = json.loads(zf.read("meta.json"))
    assert "secret_key" not in names  # HELPDESK_SECRET_KEY is the admin's to keep
    assert meta["rows"]["ticket"] == 2 and meta["attachments"] == 1
    assert sum(n.startswith("attachments/") for n in names) == 1
    assert run(env, "backup", str(tmp_path / "desk.zip"), check=False).returncode == 2  # never overwritten
