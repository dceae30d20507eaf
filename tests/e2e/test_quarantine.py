"""Quarantine through the real CLI: a mail that fails is set aside with its reason, the others go on;
after the fix, ``helpdesk quarantine requeue`` processes it normally."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from helpdesk.core import db
from helpdesk.core.models import AuditEntry
from tests.e2e.helpers import helpdesk_env, run, run_json
from tests.e2e.mails import make_mail, token
from tests.servers.imap import DovecotServer

WITH_ATTACHMENT = 2  # make_mail(2) carries a log file and a screenshot


def test_failing_mail_is_quarantined_the_rest_go_on_and_requeue_after_the_fix_tickets_it(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}", dovecot)
    run(env, "init")
    # A broken attachment store (a file where the directory should be): mail with attachments fails.
    (data / "attachments").write_text("not a directory")
    dovecot.append_many([make_mail(1), make_mail(WITH_ATTACHMENT), make_mail(3)])
    run(env, "poll", "--once")

    subjects = [t["subject"] for t in run_json(env, "tickets", "--json")]
    assert len(subjects) == 2 and any(token(1) in s for s in subjects) and any(token(3) in s for s in subjects)
    [item] = run_json(env, "quarantine", "list", "--json")
    assert item["message_id"] == f"mail-{WITH_ATTACHMENT}@client.example.com"
    assert item["reason"].startswith("processing failed:") and "attachments" in item["reason"]
    listed = run(env, "quarantine", "list").stdout.decode()
    assert str(item["id"]) in listed and "processing failed" in listed
    shown = run(env, "quarantine", "show", str(item["id"])).stdout
    assert b"reason: processing failed" in shown
    assert shown.endswith(make_mail(WITH_ATTACHMENT))  # the raw mail is kept as it came
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 3  # moved on, nothing lost

    (data / "attachments").unlink()  # the fix
    out = run(env, "quarantine", "requeue", str(item["id"])).stdout.decode()
    assert f"inbound {item['id']}: processed ticket #" in out
    assert run_json(env, "quarantine", "list", "--json") == []
    tickets = run_json(env, "tickets", "--json")
    assert len(tickets) == 3
    requeued = next(t for t in tickets if token(WITH_ATTACHMENT) in t["subject"])
    detail = run_json(env, "ticket", str(requeued["number"]), "--json")
    names = sorted(a["filename"] for m in detail["messages"] for a in m.get("attachments", []))
    assert names == ["error-2.log", "screenshot.png"]

    with db.make_engine(f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}").connect() as conn:
        [(actor, before)] = conn.execute(
            select(AuditEntry.actor, AuditEntry.before).where(AuditEntry.action == "inbound.requeue")
        ).all()
    assert actor.startswith("cli:") and before["status"] == "quarantined"  # who sent it through again, from what

    again = run(env, "quarantine", "requeue", str(item["id"]), check=False)
    assert again.returncode == 1 and b"not quarantined" in again.stderr
    missing = run(env, "quarantine", "show", "999", check=False)
    assert missing.returncode == 1 and b"no inbound mail 999" in missing.stderr


def test_unreadable_mail_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}")
    run(env, "init")
    blank = tmp_path / "blank.eml"
    blank.write_bytes(b"\r\n \r\n")
    good = tmp_path / "good.eml"
    good.write_bytes(make_mail(5))
    out = run(env, "ingest", str(blank), str(good)).stdout.decode()
    assert "quarantined" in out and "processed ticket #" in out
    [item] = json.loads(run(env, "quarantine", "list", "--json").stdout)
    assert item["reason"].startswith("unreadable:")
