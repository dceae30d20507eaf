"""Changes to console users are audited: who, what, before and after; never the password itself."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import audit, users
from helpdesk.core.db import transaction
from helpdesk.core.models import Role


def test_user_changes_are_audited_without_secrets(sqlite_session_factory: sessionmaker[Session]) -> None:
    with transaction(sqlite_session_factory) as session:
        user = users.create_user(session, "Eve@Example.org", Role.AGENT, "first-password", actor="admin@example.org")
        users.set_role(session, user, Role.APPROVER, actor="admin@example.org")
        users.set_role(session, user, Role.APPROVER, actor="admin@example.org")  # no change, no entry
        users.set_password(session, user, "second-password", actor="admin@example.org")
        token = users.issue_api_token(session, user, actor="admin@example.org")
        users.revoke_api_token(session, user, actor="root@example.org")
        user_id = user.id
    with sqlite_session_factory() as session:
        entries = audit.history(session, "user", user_id)
        assert [(e.action, e.actor) for e in entries] == [
            ("user.create", "admin@example.org"),
            ("user.role", "admin@example.org"),
            ("user.password", "admin@example.org"),
            ("user.token", "admin@example.org"),
            ("user.token_revoked", "root@example.org"),
        ]
        assert entries[1].before == {"role": "agent"} and entries[1].after == {"role": "approver"}
        dump = repr([(e.before, e.after, e.reason) for e in entries])
        for secret in ("first-password", "second-password", token, "argon2"):
            assert secret not in dump
        assert audit.verify(session).ok
