"""``helpdesk export`` / ``erase --requester EMAIL`` and ``retention``: a person's data out, then gone; figures stay."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from helpdesk.core import merge, tickets
from helpdesk.core.db import transaction
from helpdesk.core.models import Contact, Ticket, TicketStatus, utcnow
from helpdesk import config
from helpdesk.wiring import build
from tests.e2e.helpers import helpdesk_env, run, run_json, wait_for
from tests.helpdesk.people import AGENT, ALICE, BOB, PHOTO, fill, mail

SECRET = b"555-0101"  # only in Alice's first mail


def _desk(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = helpdesk_env(tmp_path / "data", database_url, **extra)
    fill(env)
    away, _ = mail(ALICE, "Out of office", "Alice is away; urgent: 555-0101.")
    run(env, "ingest", input=away.replace(b"Subject:", b"Auto-Submitted: auto-replied\nSubject:", 1))
    app = build(config.load(env))
    try:  # an agent's public reply (mailed to Alice and Bob) and an internal note on Alice's ticket
        with transaction(app.factory) as session:
            ticket = tickets.get(session, 1)
            agent = session.query(Contact).filter_by(email=AGENT).one()
            tickets.reply(session, app.settings, ticket, agent, "Hello Alice, please restart it.")
            tickets.add_note(session, ticket, agent, "Alice's manager says her laptop is old.")
    finally:
        app.engine.dispose()
    return env


def _archive_tables(env: dict[str, str], path: Path) -> dict[str, bytes]:
    """Every stored byte, table by table and file by file, as a backup holds them."""
    run(env, "backup", str(path))
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_export_holds_their_tickets_messages_attachments_and_mails(tmp_path: Path, database_url: str) -> None:
    env = _desk(tmp_path, database_url)
    target = tmp_path / "alice.zip"
    run(env, "export", "--requester", "Alice@Example.com", "--output", str(target))

    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    with zipfile.ZipFile(target) as zf:
        person = json.loads(zf.read("person.json"))
        files = {n: zf.read(n) for n in zf.namelist()}
    assert person["contact"]["email"] == ALICE and person["internal_notes_included"] is False
    assert [(t["number"], t["relation"]) for t in person["tickets"]] == [(1, "requester")]  # not Bob's ticket
    texts = [m["text"] for m in person["tickets"][0]["messages"]]
    assert any("555-0101" in t for t in texts) and any("restart it" in t for t in texts)
    assert not any("manager" in t for t in texts)  # internal notes only when asked for
    [photo] = [m["attachments"][0]["file"] for m in person["tickets"][0]["messages"] if m["attachments"]]
    assert files[photo] == PHOTO
    mails = [data for name, data in files.items() if name.startswith("mails/")]
    assert len(mails) == 2 and all(b"From: Someone <alice@example.com>" in m for m in mails)

    with_notes = tmp_path / "alice-notes.zip"
    run(env, "export", "--requester", ALICE, "--output", str(with_notes), "--internal-notes")
    with zipfile.ZipFile(with_notes) as zf:
        assert b"manager" in zf.read("person.json")
    unknown = run(env, "export", "--requester", "nobody@example.com", "--output", str(tmp_path / "n.zip"), check=False)
    assert unknown.returncode == 1 and unknown.stderr == b"helpdesk export: no contact nobody@example.com\n"


def test_erase_leaves_no_trace_but_the_audit_trail_and_keeps_the_figures(tmp_path: Path, database_url: str) -> None:
    env = _desk(tmp_path, database_url)
    before = run_json(env, "tickets", "--json")
    bob_before = run_json(env, "ticket", "2", "--json")
    assert SECRET in b"".join(_archive_tables(env, tmp_path / "before.zip").values())

    out = run(env, "erase", "--requester", ALICE).stdout.decode()
    assert out.startswith("erased: now erased-")

    after = run_json(env, "tickets", "--json")
    figures = ("number", "kind", "category", "priority", "impact", "urgency", "status", "created_at", "due_at")
    assert [{k: t[k] for k in figures} for t in after] == [{k: t[k] for k in figures} for t in before]
    mine = after[0]
    assert mine["requester"].startswith("erased-") and mine["requester"].endswith("@invalid")
    assert mine["subject"] == "[erased]" and {m["text"] for m in mine["messages"]} == {"[erased]"}
    assert run_json(env, "ticket", "2", "--json") == bob_before  # Bob's own ticket is his

    stored = _archive_tables(env, tmp_path / "after.zip")
    for name, data in stored.items():
        if name != "tables/audit.jsonl":
            assert SECRET not in data and b"alice@example.com" not in data.lower(), name
    assert not any(n.startswith("attachments/") for n in stored)
    assert b"bob@example.com" in stored["tables/contact.jsonl"]  # nobody else is touched

    assert run(env, "audit", "verify").stdout.startswith(b"audit trail intact")
    erase_entry = [json.loads(line) for line in stored["tables/audit.jsonl"].splitlines()
                   if json.loads(line)["action"] == "user.erase"]
    assert len(erase_entry) == 1 and b"alice" not in json.dumps(erase_entry).encode().lower()
    again = run(env, "erase", "--requester", ALICE, check=False)
    assert again.returncode == 1 and b"no contact alice@example.com" in again.stderr


def test_erase_removes_an_attachment_file_only_when_no_one_else_sent_it(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    fill(env)
    run(env, "ingest", input=mail(BOB, "Same screenshot", "Mine too.", attachment=PHOTO)[0])
    run(env, "erase", "--requester", ALICE)
    files = [p for p in (tmp_path / "data" / "attachments").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in files] == [PHOTO]


def _close_long_ago(env: dict[str, str], number: int, days: int) -> None:
    app = build(config.load(env))
    try:
        with transaction(app.factory) as session:
            session.execute(update(Ticket).where(Ticket.id == number).values(
                status=TicketStatus.CLOSED, closed_at=utcnow() - timedelta(days=days)))
    finally:
        app.engine.dispose()


def test_retention_anonymises_closed_tickets_past_the_period(tmp_path: Path, database_url: str) -> None:
    env = _desk(tmp_path, database_url)
    _close_long_ago(env, 1, days=40)
    _close_long_ago(env, 2, days=10)
    assert run(env, "retention", "--apply").stdout == b"retention is off (HELPDESK_RETENTION_DAYS is not set): nothing done\n"
    env["HELPDESK_RETENTION_DAYS"] = "30"
    assert b"1 ticket(s) would be anonymised" in run(env, "retention").stdout
    assert run_json(env, "ticket", "1", "--json")["subject"] == "VPN broken for Alice Example"  # a dry run

    assert b"1 ticket(s) anonymised, 0 deleted" in run(env, "retention", "--apply").stdout
    one = run_json(env, "ticket", "1", "--json")
    assert one["subject"] == "[erased]" and {m["text"] for m in one["messages"]} == {"[erased]"}
    assert all(not m["attachments"] and m["from"] == "" for m in one["messages"])
    assert run_json(env, "ticket", "2", "--json")["subject"] == "Printer jammed"
    assert b"0 ticket(s) anonymised" in run(env, "retention", "--apply").stdout  # once
    assert run(env, "audit", "verify").returncode == 0


def test_retention_can_delete_closed_tickets_instead(tmp_path: Path, database_url: str) -> None:
    env = _desk(tmp_path, database_url, HELPDESK_RETENTION_DAYS="30", HELPDESK_RETENTION_ACTION="delete")
    run(env, "ingest", input=mail(ALICE, "VPN again", "Same as before, 555-0101.")[0])
    app = build(config.load(env))
    try:  # the second report was merged into the first: the merge goes with the ticket it points at
        with transaction(app.factory) as session:
            last = max(t.id for t in session.query(Ticket))
            agent = session.query(Contact).filter_by(email=AGENT).one()
            merge.merge(session, app.settings, tickets.get(session, last), tickets.get(session, 1), agent)
    finally:
        app.engine.dispose()
    _close_long_ago(env, 1, days=40)
    numbers = [t["number"] for t in run_json(env, "tickets", "--json")]
    assert b"0 ticket(s) anonymised, 1 deleted" in run(env, "retention", "--apply").stdout
    assert [t["number"] for t in run_json(env, "tickets", "--json")] == numbers[1:]
    stored = _archive_tables(env, tmp_path / "after.zip")
    assert all(SECRET not in data for data in stored.values())
    assert run(env, "audit", "verify").returncode == 0


def test_run_applies_retention_with_its_sla_check(tmp_path: Path) -> None:
    import threading

    from helpdesk.runner import sla_loop

    env = _desk(tmp_path, f"sqlite:///{tmp_path / 'desk.sqlite3'}", HELPDESK_RETENTION_DAYS="30")
    _close_long_ago(env, 1, days=40)
    app = build(config.load(env))
    stop = threading.Event()
    loop = threading.Thread(target=sla_loop, args=(app, stop, 0.1))
    loop.start()
    try:
        wait_for(lambda: run_json(env, "ticket", "1", "--json")["subject"] == "[erased]", what="retention in run's loop")
    finally:
        stop.set()
        loop.join()
        app.engine.dispose()
    assert run_json(env, "ticket", "2", "--json")["subject"] == "Printer jammed"
