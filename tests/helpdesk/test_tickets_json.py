"""``helpdesk tickets --json``: every ticket with its messages, as ``ticket N --json`` has them, in a few queries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.core.test_mail_parts_stored import INVITE, SIGNED
from tests.e2e.helpers import helpdesk_env, ingest_all, run, run_json

# The real command in its own process, counting the SQL statements it sends.
COUNTING = """
import sys
from sqlalchemy import Engine, event
from helpdesk.cli import main
statements = []
event.listen(Engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
code = main(sys.argv[1:])
print(len(statements), file=sys.stderr)
sys.exit(code)
"""


def _statements(env: dict[str, str], *args: str) -> tuple[int, bytes]:
    """The number of SQL statements the command sent, and what it printed."""
    proc = subprocess.run([sys.executable, "-c", COUNTING, *args], env=env, capture_output=True, timeout=60, check=True)
    return int(proc.stderr.decode().splitlines()[-1]), proc.stdout


def _mail(n: int, sender: str, cc: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: help@example.org\r\n" + (f"Cc: {cc}\r\n" if cc else "")
        + f"Subject: Problem {n}\r\nMessage-ID: <p{n}@example.com>\r\n\r\nThe thing {n} is broken.\r\n"
    ).encode()


def test_tickets_json_lists_each_tickets_messages_in_a_fixed_number_of_queries(
    database_url: str, tmp_path: Path
) -> None:
    env = helpdesk_env(tmp_path / "data", database_url)
    run(env, "ingest", input=_mail(1, "alice@example.com"))

    [ticket] = run_json(env, "tickets", "--json")
    message = ticket["messages"][0]  # then our acknowledgement
    assert message["direction"] == "in" and message["from"] == "alice@example.com"
    assert message["subject"] == "Problem 1" and "thing 1 is broken" in message["text"]
    assert message["message_id"] == "p1@example.com"
    detail = run_json(env, "ticket", str(ticket["number"]), "--json")
    assert ticket == detail  # the same shape as one ticket's, every field name kept

    one, _ = _statements(env, "tickets", "--json")
    senders = ["bob@example.com", "carol@example.com", "dave@example.com"]
    ingest_all(env, tmp_path, *(_mail(n, sender, cc=f"watcher{n}@example.com") for n, sender in enumerate(senders, start=2)))
    four, listing = _statements(env, "tickets", "--json")
    assert len(json.loads(listing)) == 4
    assert four == one


def test_a_messages_protection_and_invitation_are_in_the_json(database_url: str, tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", database_url)
    ingest_all(env, tmp_path, SIGNED, INVITE)
    by_subject = {t["subject"]: t for t in run_json(env, "tickets", "--json")}
    signed = run_json(env, "ticket", str(by_subject["VPN token"]["number"]), "--json")["messages"][0]
    invite = by_subject["Printer maintenance"]["messages"][0]
    assert (signed["protection"], signed["calendar"]) == ("signed", None)
    assert invite["protection"] is None
    [event] = invite["calendar"]
    assert (event["summary"], event["start"], event["method"]) == ("Printer maintenance", "2025-03-10T08:00:00+00:00", "REQUEST")
    assert "anna@example.org" in event["organiser"]
    reply = by_subject["VPN token"]["messages"][1]  # our acknowledgement: neither
    assert (reply["direction"], reply["protection"], reply["calendar"]) == ("out", None, None)
