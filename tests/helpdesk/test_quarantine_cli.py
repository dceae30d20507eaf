"""``helpdesk quarantine discard``: a quarantined mail is set aside with a reason; its raw bytes stay."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from helpdesk.core.db import make_engine, make_sessionmaker
from helpdesk.core.models import AuditEntry
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.e2e.mails import make_mail

BLANK = b"\r\n \r\n"  # unreadable: intake quarantines it


def test_discard_needs_a_reason_refuses_other_mail_and_keeps_the_raw_bytes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}"
    env = helpdesk_env(tmp_path / "data", url, USER="olga", LOGNAME="olga")  # ingest creates the schema
    (tmp_path / "blank.eml").write_bytes(BLANK)
    (tmp_path / "good.eml").write_bytes(make_mail(1))
    run(env, "ingest", str(tmp_path / "blank.eml"), str(tmp_path / "good.eml"))
    [item] = run_json(env, "quarantine", "list", "--json")
    bad = str(item["id"])
    good = str(item["id"] + 1)

    no_reason = run(env, "quarantine", "discard", bad, check=False)
    assert no_reason.returncode == 2 and b"needs --reason" in no_reason.stderr
    blank_reason = run(env, "quarantine", "discard", bad, "--reason", "   ", check=False)
    assert blank_reason.returncode == 2
    processed = run(env, "quarantine", "discard", good, "--reason", "spam", check=False)
    assert processed.returncode == 1 and b"is processed, not quarantined" in processed.stderr
    missing = run(env, "quarantine", "discard", "999", "--reason", "spam", check=False)
    assert missing.returncode == 1 and b"no inbound mail 999" in missing.stderr
    assert [i["id"] for i in run_json(env, "quarantine", "list", "--json")] == [item["id"]]

    out = run(env, "quarantine", "discard", bad, "--reason", "empty junk from a scanner").stdout.decode()
    assert f"inbound {bad}: discarded" in out
    assert run_json(env, "quarantine", "list", "--json") == []
    shown = run(env, "quarantine", "show", bad).stdout
    assert b"status: discarded" in shown and b"empty junk from a scanner" in shown
    assert shown.endswith(BLANK)  # the raw mail stays, byte for byte
    again = run(env, "quarantine", "requeue", bad, check=False)
    assert again.returncode == 1 and b"is discarded, not quarantined" in again.stderr
    run(env, "audit", "verify")
    _assert_audited(url, int(bad), actor="cli:olga", reason="empty junk from a scanner")


def _assert_audited(url: str, inbound_id: int, *, actor: str, reason: str) -> None:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "inbound.discard")).all()
            assert (entry.actor, entry.object_type, entry.object_id, entry.reason) == (
                actor, "inbound", inbound_id, reason)
            assert entry.before is not None and entry.before["status"] == "quarantined"
            assert entry.before["reason"].startswith("unreadable:")
    finally:
        engine.dispose()

