"""A data-dir or HELPDESK_PRIORITY_FILE matrix decides the priority the product gives a mail."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import helpdesk_env, run, run_json

URGENT_FOR_EVERYONE = (
    b"From: alice@example.com\r\nTo: help@example.org\r\nSubject: VPN is down\r\n"
    b"Message-ID: <vpn-1@client.example>\r\n\r\nEveryone is affected, urgent.\r\n"
)
ALL_P5 = 'matrix = [["P5", "P5", "P5"], ["P5", "P5", "P5"], ["P5", "P5", "P5"]]\n'


def test_data_dir_priority_toml_changes_the_priority_a_classified_mail_gets(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "priority.toml").write_text(ALL_P5)
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    run(env, "ingest", input=URGENT_FOR_EVERYONE)
    [ticket] = run_json(env, "tickets", "--json")
    assert (ticket["impact"], ticket["urgency"], ticket["priority"]) == (1, 1, "P5")


def test_priority_file_setting_wins_and_without_one_the_itil_default_holds(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    run(env, "ingest", input=URGENT_FOR_EVERYONE)
    assert [t["priority"] for t in run_json(env, "tickets", "--json")] == ["P1"]

    (tmp_path / "matrix.toml").write_text(ALL_P5.replace('["P5", "P5", "P5"]]', '["P5", "P5", "P4"]]'))
    env["HELPDESK_PRIORITY_FILE"] = str(tmp_path / "matrix.toml")
    run(env, "ingest", input=URGENT_FOR_EVERYONE.replace(b"vpn-1@", b"vpn-2@"))
    assert [t["priority"] for t in run_json(env, "tickets", "--json")] == ["P1", "P5"]
