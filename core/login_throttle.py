"""Console login throttling, counted in the database so that every console process sees every attempt.

An attempt is counted *before* the password is checked and committed at once, then the count is
read back: of attempts racing in several processes, those past the limit see all the earlier ones
and are refused (and uncounted), so parallel guessing gets no more tries than serial guessing.
A successful login removes its account's attempts; attempts older than the window are pruned.

The account limit counts per client address, so that someone else's failures cannot lock an
account out; the client limit catches one address trying many accounts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import LoginAttempt, utcnow


@dataclass(frozen=True)
class ThrottlePolicy:
    per_account: int = 5  # attempts at one account from one client address
    per_client: int = 20  # attempts from one client address, all accounts
    window: timedelta = timedelta(minutes=15)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _count(session: Session, since: datetime, client: str, account: str | None = None) -> int:
    query = select(func.count()).select_from(LoginAttempt).where(LoginAttempt.client == client, LoginAttempt.at >= since)
    if account is not None:
        query = query.where(LoginAttempt.account == account)
    return session.scalar(query) or 0


def begin_attempt(
    factory: sessionmaker[Session], policy: ThrottlePolicy, client: str, account: str, *, now: datetime | None = None
) -> bool:
    """Count a login attempt; False (and nothing counted) when the client or the account is over its limit."""
    now = now or utcnow()
    since = now - policy.window
    client_key, account_key = _digest(client), _digest(account)
    with transaction(factory) as session:
        session.execute(delete(LoginAttempt).where(LoginAttempt.at < since))
        attempt = LoginAttempt(client=client_key, account=account_key, at=now)
        session.add(attempt)
    with transaction(factory) as session:
        over = (
            _count(session, since, client_key, account_key) > policy.per_account
            or _count(session, since, client_key) > policy.per_client
        )
        if over:
            session.execute(delete(LoginAttempt).where(LoginAttempt.id == attempt.id))
    return not over


def login_succeeded(factory: sessionmaker[Session], client: str, account: str) -> None:
    """The account's attempts from this client no longer count."""
    with transaction(factory) as session:
        session.execute(
            delete(LoginAttempt).where(LoginAttempt.client == _digest(client), LoginAttempt.account == _digest(account))
        )
