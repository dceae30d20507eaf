"""``helpdesk audit verify``: exit 1 with one line of reason when the trail was cut or tampered with."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from helpdesk.core import audit
from helpdesk.core.db import transaction
from helpdesk import config
from helpdesk.wiring import build
from tests.e2e.helpers import helpdesk_env, run


def test_audit_verify_fails_on_a_cut_trail_and_on_another_secret_key(tmp_path: Path) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'helpdesk.sqlite3'}")
    app = build(config.load(env))
    try:
        # Start-up may audit its own steps (a new desk adopting the groups its rules name).
        with transaction(app.factory) as session:
            before = session.execute(text("SELECT count(*) FROM audit")).scalar_one()
        with transaction(app.factory) as session:
            for i in range(3):
                audit.record(session, actor="system", action="step", object_type="t", object_id=i)
        total = before + 3
        assert run(env, "audit", "verify").stdout == f"audit trail intact: {total} entries verified\n".encode()

        other_key = run({**env, "HELPDESK_SECRET_KEY": "not-the-secret"}, "audit", "verify", check=False)
        assert other_key.returncode == 1 and b"secret key changed" in other_key.stderr

        with transaction(app.factory) as session:
            session.execute(text("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)"))
        cut = run(env, "audit", "verify", check=False)
        assert cut.returncode == 1
        expected = f"audit trail BROKEN: the newest 1 of {total} entries were removed ({total - 1} entries checked)\n"
        assert cut.stderr == expected.encode()
    finally:
        app.engine.dispose()
