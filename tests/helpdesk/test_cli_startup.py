"""Every command brings the schema up to date first; when it is current (nearly always) that check
must not load Alembic, which costs about 0.2 s of each `helpdesk` run. Nor does a command that reads
no mail load the mail parser (~0.06 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from helpdesk.core import db
from tests.e2e.helpers import helpdesk_env, run

PROBE = (
    "import sys; from helpdesk.cli import main; sys.argv = ['helpdesk', 'tickets', '--json']; code = main(); "
    "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'alembic' or m == 'helpdesk.mailgateway.parse')); "
    "sys.exit(code)"
)


def test_a_command_on_a_current_schema_loads_neither_alembic_nor_the_mail_parser(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    run(env, "init")
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [b"[]", b"[]"]  # no tickets; neither module


def test_an_older_schema_is_still_brought_up_to_date(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        script = ScriptDirectory.from_config(db.alembic_config(engine))
        head = script.get_current_head()
        assert head is not None
        previous = script.get_revision(head).down_revision
        assert isinstance(previous, str)
        command.upgrade(db.alembic_config(engine), previous)
        assert db.current_revision(engine) == previous
        db.upgrade(engine)
        assert db.current_revision(engine) == head
        db.upgrade(engine)  # at the head: nothing to do
        assert db.current_revision(engine) == head
    finally:
        engine.dispose()


POLL_PROBE = (
    "import sys; from helpdesk.cli import main; from helpdesk.config import load; "
    "from helpdesk.mailgateway import watcher; from helpdesk.runner import watch_forever; "
    "from helpdesk.wiring import build; build(load()); "
    "print(sorted({m.partition('.')[0] for m in sys.modules} & {'requests', 'babel', 'cryptography', 'msal'}))"
)


def test_an_imap_poller_starts_without_graph_babel_or_cryptography(tmp_path: Path) -> None:
    """What `poll` imports and sets up before its first mail: no HTTP client (Microsoft Graph only), no
    catalogue reader (the first translated word), no token encryption (OAuth2 logins only): ~0.06 s."""
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    run(env, "init")
    probe = subprocess.run([sys.executable, "-c", POLL_PROBE], env=env, capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [b"[]"]
