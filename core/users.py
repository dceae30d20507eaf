"""Console users: contacts with a role and a password (argon2), their console sessions, and API tokens.

A user is a Contact: the same person who mails the helpdesk can be an agent. Only the password,
session and token hashes are stored; a token is shown once, when it is issued. Sessions are rows,
so that logging out, a new password or a new role ends them in every console process at once.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from helpdesk.core import audit
from helpdesk.core.conversation import forget_agents
from helpdesk.core.db import rowcount
from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.models import ConsoleSession, Contact, Role, aware, utcnow

_hasher = PasswordHasher()
# Verifying against this hash when the email is unknown keeps the time of a failed login the same.
_DUMMY_HASH = _hasher.hash("not a password")
_TOKEN_PREFIX = "hd_"
MIN_PASSWORD_LENGTH = 8
# A session's last use is written at most this often: not one write per page view.
_SEEN_EVERY = timedelta(minutes=1)


class TokenScope(enum.Enum):
    """What an API token may do beyond its holder's role: None is all of it."""

    EVENTS = "events"  # only deliver monitoring alerts (the Alertmanager webhook)


class WeakPassword(Refusal, ValueError):
    """The password is too short to be accepted."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(N_("a password needs at least %(length)s characters"), length=MIN_PASSWORD_LENGTH)
    return _hasher.hash(password)


def find_user(session: Session, email: str) -> Contact | None:
    return session.scalars(select(Contact).where(Contact.email == normalise_email(email))).first()


def create_user(
    session: Session, email: str, role: Role, password: str | None, *, actor: str = audit.SYSTEM
) -> Contact:
    """Create a console user, or give an existing contact the role (and password). Audited."""
    contact = find_user(session, email)
    before = {"role": contact.role.value} if contact is not None else None
    if contact is None:
        contact = Contact(email=normalise_email(email))
        session.add(contact)
    password_hash = _hash_password(password) if password is not None else None
    if before is not None and (contact.role is not role or password_hash is not None):
        _end_access(session, contact, actor=actor, token=contact.role is not role)
    contact.role = role
    forget_agents(session)
    if password_hash is not None:
        contact.password_hash = password_hash
    session.flush()
    audit.record(
        session, actor=actor, action="user.create" if before is None else "user.role", object_type="user",
        object_id=contact.id, before=before, after={"email": contact.email, "role": role.value},
        reason="password set" if password is not None else None,
    )
    return contact


def set_role(session: Session, user: Contact, role: Role, *, actor: str) -> None:
    """A new role; its sessions and API token end (they were granted for the old one)."""
    before = user.role
    user.role = role
    forget_agents(session)
    session.flush()
    if before is not role:
        audit.record(
            session, actor=actor, action="user.role", object_type="user", object_id=user.id,
            before={"role": before.value}, after={"role": role.value},
        )
        _end_access(session, user, actor=actor, token=True)


def set_password(session: Session, user: Contact, password: str, *, actor: str = audit.SYSTEM) -> None:
    """A new password; every session opened with the old one ends."""
    user.password_hash = _hash_password(password)
    # The audit says that it changed and who did it, never anything about the password itself.
    audit.record(session, actor=actor, action="user.password", object_type="user", object_id=user.id)
    _end_access(session, user, actor=actor, token=False)
    session.flush()


def _end_access(session: Session, user: Contact, *, actor: str, token: bool) -> None:
    end_sessions(session, user, actor=actor)
    if token and user.api_token_hash is not None:
        revoke_api_token(session, user, actor=actor)


def verify_password(session: Session, email: str, password: str) -> Contact | None:
    """The user whose email and password these are, if they may use the console."""
    user = find_user(session, email)
    stored = user.password_hash if user is not None and user.role is not Role.USER else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
        session.flush()
    return user


def _token_digest(token: str) -> str:
    # Tokens are long random strings: a fast hash is enough and allows an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(
    session: Session, user: Contact, *, actor: str = audit.SYSTEM, scope: TokenScope | None = None
) -> str:
    """A new API token for the user; an earlier one stops working (rotation). Only its hash is stored."""
    rotated = user.api_token_hash is not None
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    user.api_token_hash = _token_digest(token)
    user.api_token_scope = scope.value if scope is not None else None
    session.flush()
    audit.record(
        session, actor=actor, action="user.token_rotated" if rotated else "user.token", object_type="user",
        object_id=user.id, after={"scope": user.api_token_scope} if scope is not None else None,
    )
    return token


def revoke_api_token(session: Session, user: Contact, *, actor: str = audit.SYSTEM) -> None:
    user.api_token_hash = None
    user.api_token_scope = None
    session.flush()
    audit.record(session, actor=actor, action="user.token_revoked", object_type="user", object_id=user.id)


def token_scope(user: Contact) -> TokenScope | None:
    return TokenScope(user.api_token_scope) if user.api_token_scope else None


def user_for_token(session: Session, token: str) -> Contact | None:
    if not token.startswith(_TOKEN_PREFIX):
        return None
    user = session.scalars(select(Contact).where(Contact.api_token_hash == _token_digest(token))).first()
    if user is None or user.role is Role.USER:
        return None
    return user


def open_session(session: Session, user: Contact, *, lifetime: timedelta) -> str:
    """A new console session for the user; the returned id goes into the cookie, only its hash is stored.

    Sessions past their lifetime are deleted on the way: the table holds only what could still be used.
    """
    session.execute(delete(ConsoleSession).where(ConsoleSession.created_at < utcnow() - lifetime))
    token = secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_hash=_token_digest(token), user_id=user.id))
    session.flush()
    return token


def session_user(session: Session, token: str, *, lifetime: timedelta, now: datetime | None = None) -> Contact | None:
    """The user of a live console session: not ended, younger than ``lifetime``, its user still staff."""
    now = now or utcnow()
    row = session.scalars(select(ConsoleSession).where(ConsoleSession.token_hash == _token_digest(token))).first()
    if row is None or row.revoked_at is not None or aware(row.created_at) + lifetime < now:
        return None
    user = session.get(Contact, row.user_id)
    # No password needed: a single sign-on user has none. A role taken away (or an erasure) ends it.
    if user is None or user.role is Role.USER:
        return None
    if aware(row.last_seen_at) + _SEEN_EVERY < now:
        row.last_seen_at = now  # the caller commits
        session.flush()
    return user


def end_session(session: Session, token: str) -> None:
    """Logging out: this session id is refused from now on, whoever holds a copy of the cookie."""
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.token_hash == _token_digest(token), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def end_sessions(session: Session, user: Contact, *, actor: str) -> int:
    """End every open console session of the user (audited when there was one); how many were open."""
    ended = rowcount(session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user.id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ))
    if ended:
        audit.record(
            session, actor=actor, action="user.sessions_ended", object_type="user", object_id=user.id,
            after={"sessions": ended},
        )
    return ended
