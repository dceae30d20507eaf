"""Login statuses, the admins' alert at most once a day, and refresh tokens sealed with the secret key."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.mailauth import ALERT_PURPOSE, DbTokenStore, connect_mailbox, failing, statuses
from helpdesk.core.models import MailLogin, Outbox, Role
from helpdesk.core.settings import Settings
from helpdesk.core.users import create_user


def _store(factory: sessionmaker[Session], tmp_path, key: str = "secret-one") -> DbTokenStore:  # type: ignore[no-untyped-def]
    return DbTokenStore(factory, Settings(data_dir=tmp_path, database_url="unused", secret_key=key))


def _alerts(factory: sessionmaker[Session]) -> list[Outbox]:
    with factory() as session:
        return list(session.scalars(select(Outbox).where(Outbox.purpose == ALERT_PURPOSE)))


def test_a_failure_is_recorded_and_mailed_to_admins_once_a_day(session_factory: sessionmaker[Session], tmp_path) -> None:  # type: ignore[no-untyped-def]
    with transaction(session_factory) as session:
        create_user(session, "root@example.org", Role.ADMIN, password="correct horse battery")
        create_user(session, "agent@example.org", Role.AGENT, password="correct horse battery")
    store = _store(session_factory, tmp_path)
    store.failed("it", "invalid_client: AADSTS7000222 the client secret has expired")
    store.failed("it", "invalid_client: still expired")
    [alert] = _alerts(session_factory)
    assert alert.recipients == ["root@example.org"] and b"AADSTS7000222" in alert.raw
    with session_factory() as session:
        [status] = failing(session)
    assert status.name == "it" and status.last_error == "invalid_client: still expired"
    with transaction(session_factory) as session:  # a day later, still failing: one more mail
        row = session.get(MailLogin, "it")
        assert row is not None and row.alerted_at is not None
        row.alerted_at -= timedelta(days=1, seconds=1)
    store.failed("it", "invalid_client: still expired")
    assert len(_alerts(session_factory)) == 2
    store.succeeded("it", expires_at=None)
    with session_factory() as session:
        assert failing(session) == [] and statuses(session)["it"].last_success_at is not None


def test_refresh_tokens_are_sealed_and_need_the_same_secret_key(session_factory: sessionmaker[Session], tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(session_factory, tmp_path)
    with transaction(session_factory) as session:
        connect_mailbox(session, store.settings, "hr", "refresh-token-value", actor="root@example.org")
    with session_factory() as session:
        sealed = session.scalar(select(MailLogin.refresh_token))
    assert sealed and "refresh-token-value" not in sealed
    assert store.refresh_token("hr") == "refresh-token-value"
    store.save_refresh_token("hr", "rotated-value")
    assert store.refresh_token("hr") == "rotated-value"
    assert _store(session_factory, tmp_path, key="another-key").refresh_token("hr") is None
