"""``helpdesk user add``: the password is the line without its line end; the email must be one."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk.core import db, users
from tests.e2e.helpers import helpdesk_env, run


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_password_stdin_takes_the_line_without_its_line_end(tmp_path: Path, line_end: bytes) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = helpdesk_env(tmp_path / "data", url)
    run(env, "user", "add", "agent@example.org", "--role", "agent", "--password-stdin", input=b" pass word " + line_end)
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session:
            assert users.verify_password(session, "agent@example.org", " pass word ") is not None
    finally:
        engine.dispose()


@pytest.mark.parametrize("email", ["not-an-email", "agent@localhost", "two words@example.org"])
def test_user_add_refuses_what_is_no_email_address(tmp_path: Path, email: str) -> None:
    env = helpdesk_env(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    proc = run(env, "user", "add", email, "--role", "agent", "--password-stdin", input=b"secret\n", check=False)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        f"helpdesk user add: {email!r} is not an email address like alice@example.org"
    ]
