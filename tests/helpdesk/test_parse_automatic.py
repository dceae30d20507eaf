"""`helpdesk parse --json` says how the helpdesk reads automatic mail: which rules fired, which alert and how found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ALERTS = Path(__file__).parent.parent / "core" / "alerts"


def _parse(*paths: Path) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "helpdesk.cli", "parse", *map(str, paths), "--json"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin", "HELPDESK_DATABASE_URL": "sqlite://"},
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_parse_json_names_the_alert_and_the_fallback_that_found_it() -> None:
    custom, default, person = _parse(ALERTS / "nagios_custom_subject.eml", ALERTS / "nagios_service_problem.eml",
                                     ALERTS.parent.parent / "fixtures" / "mail" / "reply_with_quote.eml")
    assert custom["alert"]["via"] == "body fields"  # the subject is the site's own: a fallback read it
    assert (custom["alert"]["source"], custom["alert"]["host"], custom["alert"]["state"]) == (
        "nagios", "web01.example.org", "CRITICAL")
    assert default["alert"]["via"] == "subject"
    assert person["alert"] is None and person["loop_reasons"] == []


def test_parse_json_says_a_delay_is_no_bounce_and_why(tmp_path: Path) -> None:
    from tests.core.test_bounce_flags import _dsn_delay

    path = tmp_path / "delay.eml"
    path.write_bytes(_dsn_delay("<x@example.org>"))
    [data] = _parse(path)
    assert data["verdicts"]["delay"] and not data["verdicts"]["bounce"]
    assert any(reason.startswith("dsn-delay:") for reason in data["loop_reasons"])
