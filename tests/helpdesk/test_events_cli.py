"""``helpdesk events --limit``: a limit below 1 is a usage error, never "everything" or a database error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import helpdesk_env, run, run_json


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_events_limit_below_one_is_a_one_line_usage_error(tmp_path: Path, limit: str) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}")
    run(env, "init")
    proc = run(env, "events", "--json", "--limit", limit, check=False)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [f"helpdesk events: --limit must be 1 or more, not {limit}"]
    assert run_json(env, "events", "--json", "--limit", "1") == []
