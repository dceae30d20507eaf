"""Login throttling is counted in the database: every console process sees the same attempts.

Run on SQLite and PostgreSQL; two session factories on one database stand for two processes.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core import db
from helpdesk.core.login_throttle import ThrottlePolicy, begin_attempt, login_succeeded
from helpdesk.core.models import LoginAttempt, utcnow

POLICY = ThrottlePolicy(per_account=5, per_client=20, window=timedelta(minutes=15))


def _other_process(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """A second engine and pool on the same database, as another console process has."""
    bind = factory.kw["bind"]
    return db.make_sessionmaker(db.make_engine(bind.url.render_as_string(hide_password=False)))


def _rows(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(LoginAttempt)) or 0


def test_failures_in_two_processes_add_up_and_lock_the_account(session_factory: sessionmaker[Session]) -> None:
    other = _other_process(session_factory)
    try:
        for i in range(POLICY.per_account):
            assert begin_attempt(session_factory if i % 2 else other, POLICY, "192.0.2.7", "alice@example.org")
        assert not begin_attempt(session_factory, POLICY, "192.0.2.7", "alice@example.org")
        assert not begin_attempt(other, POLICY, "192.0.2.7", "alice@example.org")
        # Someone else's failures do not lock the account for another address, nor another account here.
        assert begin_attempt(other, POLICY, "198.51.100.1", "alice@example.org")
        assert begin_attempt(session_factory, POLICY, "192.0.2.7", "bob@example.org")
    finally:
        other.kw["bind"].dispose()


def test_a_refused_attempt_is_not_counted_and_success_clears_the_account(
    session_factory: sessionmaker[Session],
) -> None:
    for _ in range(POLICY.per_account - 1):
        begin_attempt(session_factory, POLICY, "192.0.2.7", "alice@example.org")
    assert begin_attempt(session_factory, POLICY, "192.0.2.7", "alice@example.org")  # the 5th: allowed
    before = _rows(session_factory)
    assert not begin_attempt(session_factory, POLICY, "192.0.2.7", "alice@example.org")
    assert _rows(session_factory) == before  # hammering a locked account does not grow the table
    login_succeeded(session_factory, "192.0.2.7", "alice@example.org")
    assert _rows(session_factory) == 0


def test_the_client_limit_holds_across_accounts(session_factory: sessionmaker[Session]) -> None:
    policy = ThrottlePolicy(per_account=5, per_client=3, window=timedelta(minutes=15))
    for n in range(3):
        assert begin_attempt(session_factory, policy, "192.0.2.7", f"user{n}@example.org")
    assert not begin_attempt(session_factory, policy, "192.0.2.7", "someone@example.org")
    assert begin_attempt(session_factory, policy, "192.0.2.8", "someone@example.org")


def test_attempts_older_than_the_window_are_pruned(session_factory: sessionmaker[Session]) -> None:
    long_ago = utcnow() - timedelta(hours=1)
    for _ in range(POLICY.per_account):
        begin_attempt(session_factory, POLICY, "192.0.2.7", "alice@example.org", now=long_ago)
    assert _rows(session_factory) == POLICY.per_account
    assert begin_attempt(session_factory, POLICY, "192.0.2.7", "alice@example.org")  # the old ones no longer count
    assert _rows(session_factory) == 1  # and are gone


def test_no_typed_text_is_kept(session_factory: sessionmaker[Session]) -> None:
    # People type passwords into the email field: only digests are stored.
    begin_attempt(session_factory, POLICY, "192.0.2.7", "Hunter2-my-password")
    with session_factory() as session:
        row = session.scalars(select(LoginAttempt)).one()
    assert "Hunter2" not in row.account and "192.0.2.7" not in row.client


def test_parallel_attempts_never_pass_the_limit(session_factory: sessionmaker[Session]) -> None:
    """Counted before the password is checked: 20 guesses at once still get at most 5 through."""
    other = _other_process(session_factory)
    allowed: list[bool] = []
    start = threading.Barrier(20)

    def guess(factory: sessionmaker[Session]) -> None:
        start.wait()
        allowed.append(begin_attempt(factory, POLICY, "192.0.2.7", "alice@example.org"))

    try:
        threads = [threading.Thread(target=guess, args=(other if n % 2 else session_factory,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        other.kw["bind"].dispose()
    assert len(allowed) == 20
    assert sum(allowed) <= POLICY.per_account  # racing ones may all be refused: never more let through
    assert _rows(session_factory) == sum(allowed)  # and only those are counted
