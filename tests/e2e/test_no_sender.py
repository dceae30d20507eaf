"""A ticket always has a requester: From, or the fallback the parser found (recorded on the
mail), or the mail is quarantined saying that no sender was found. Through the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import helpdesk_env, run, run_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def test_reply_to_becomes_the_requester_and_a_mail_without_any_sender_is_quarantined(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}")  # ingest creates the schema
    nobody = tmp_path / "nobody.eml"
    nobody.write_bytes(b"From: Somebody\r\nTo: help@example.org\r\nSubject: printer\r\n"
                       b"Message-ID: <nobody-1@example.org>\r\n\r\nThe printer is jammed.\r\n")
    out = run(env, "ingest", str(FIXTURES / "no_usable_from.eml"), str(nobody)).stdout.decode()
    assert "processed ticket #" in out and "quarantined" in out

    [ticket] = run_json(env, "tickets", "--json")
    detail = run_json(env, "ticket", str(ticket["number"]), "--json")
    assert detail["requester"] == "helpless@example.org"
    [item] = run_json(env, "quarantine", "list", "--json")
    assert item["message_id"] == "nobody-1@example.org"
    assert "no sender" in item["reason"]
