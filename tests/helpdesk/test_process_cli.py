"""`helpdesk process --once`: stored mail (piped in, fetched, requeued) processed without reading a mailbox."""

from __future__ import annotations

from pathlib import Path

from helpdesk.config import load
from helpdesk.core.db import transaction
from helpdesk.wiring import build
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.e2e.mails import make_mail


def test_process_once_processes_what_is_stored_and_exits(database_url: str, tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", database_url)
    run(env, "init")
    app = build(load(env))  # stored as a poller or `ingest` stores it, not processed
    with transaction(app.factory) as session:
        app.intake.store_many(session, [(None, make_mail(1)), (None, make_mail(2))], source="test")
    app.engine.dispose()
    out = run(env, "process", "--once").stdout.decode()
    assert out.startswith("processed 2 stored mails in ") and out.rstrip().endswith("s (processed 2)"), out
    assert len(run_json(env, "tickets", "--json")) == 2
    assert run(env, "process", "--once").stdout.decode().startswith("processed 0 stored mails in ")
