"""A rules file that routes to a group the desk does not have stops the start with one line naming the rule."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import groups
from helpdesk.core.rulebook import shipped_rulebook
from helpdesk.wiring import check_groups

from tests.e2e.helpers import helpdesk_env, run, run_json

RULES = (
    '[defaults]\nkind = "incident"\ncategory = "general"\ngroup = "service-desk"\n'
    '[[rule]]\nname = "coffee"\n[rule.when]\nsubject = "coffee"\n[rule.then]\ncategory = "facilities"\n'
    'group = "Facilities"\n'
)
MAIL = b"From: a@example.com\r\nSubject: coffee machine broken\r\nMessage-ID: <m1@example.com>\r\n\r\nbody\r\n"


def test_a_rule_naming_an_unknown_group_stops_ingest_with_one_line_and_the_mail_is_retried(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = helpdesk_env(data, f"sqlite:///{tmp_path / 'db.sqlite'}")
    run(env, "ingest", input=MAIL.replace(b"<m1@", b"<m0@"))  # the first start adopts the shipped rules' groups
    (data / "rules.toml").write_text(RULES)
    proc = run(env, "ingest", input=MAIL, check=False)
    assert proc.returncode == 75  # EX_TEMPFAIL: the MTA keeps the mail and tries again
    lines = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "rule `coffee` sets group 'Facilities', which is no group" in lines[0]
    (data / "rules.toml").write_text(RULES.replace('"Facilities"', '"service-desk"'))
    run(env, "ingest", input=MAIL)
    assert len(run_json(env, "tickets", "--json")) == 2
    shown = run_json(env, "ticket", "2", "--json")
    assert (shown["group"], shown["fields"]) == ("service-desk", {})



def test_two_processes_starting_together_on_a_new_desk_both_start(pg_session_factory: sessionmaker[Session]) -> None:
    """Both adopt the rules' groups at once: the one that commits second meets the unique names and must not crash."""
    rulebook = shipped_rulebook()
    rules = rulebook.rules
    outcome: list[BaseException | None] = []

    def second_start() -> None:
        try:
            check_groups(pg_session_factory, rulebook)
            outcome.append(None)
        except BaseException as exc:  # what the test reads
            outcome.append(exc)

    first = pg_session_factory()
    try:
        assert groups.adopt(first, rules, rulebook.catalogue)  # the first process's rows, not yet committed
        second = threading.Thread(target=second_start)
        second.start()
        second.join(1.0)
        assert second.is_alive(), "the second start waits on the first one's uncommitted names"
        first.commit()
        second.join(30)
    finally:
        first.close()
    assert outcome == [None]
    with pg_session_factory() as session:
        named = {rules.defaults.group, *(r.then.group for r in rules.rules), *(i.group for i in rulebook.catalogue.items)}
        assert set(groups.names(session)) == named - {None}
