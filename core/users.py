"""Console users: contacts with a role and a password (argon2), and API tokens for scripts.

A user is a Contact: the same person who mails the helpdesk can be an agent. Only the password and
token hashes are stored; a token is shown once, when it is issued.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.conversation import forget_agents
from core.models import Contact, Role

_hasher = PasswordHasher()
# Verifying against this hash when the email is unknown keeps the time of a failed login the same.
_DUMMY_HASH = _hasher.hash("not a password")
_TOKEN_PREFIX = "hd_"
MIN_PASSWORD_LENGTH = 8


class WeakPassword(ValueError):
    """The password is too short to be accepted."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
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
    before = user.role
    user.role = role
    forget_agents(session)
    session.flush()
    if before is not role:
        audit.record(
            session, actor=actor, action="user.role", object_type="user", object_id=user.id,
            before={"role": before.value}, after={"role": role.value},
        )


def set_password(session: Session, user: Contact, password: str, *, actor: str = audit.SYSTEM) -> None:
    user.password_hash = _hash_password(password)
    # The audit says that it changed and who did it, never anything about the password itself.
    audit.record(session, actor=actor, action="user.password", object_type="user", object_id=user.id)
    session.flush()


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


def issue_api_token(session: Session, user: Contact, *, actor: str = audit.SYSTEM) -> str:
    """A new API token for the user (replacing any earlier one). Only its hash is stored."""
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    user.api_token_hash = _token_digest(token)
    session.flush()
    audit.record(session, actor=actor, action="user.token", object_type="user", object_id=user.id)
    return token


def revoke_api_token(session: Session, user: Contact, *, actor: str = audit.SYSTEM) -> None:
    user.api_token_hash = None
    session.flush()
    audit.record(session, actor=actor, action="user.token_revoked", object_type="user", object_id=user.id)


def user_for_token(session: Session, token: str) -> Contact | None:
    if not token.startswith(_TOKEN_PREFIX):
        return None
    user = session.scalars(select(Contact).where(Contact.api_token_hash == _token_digest(token))).first()
    if user is None or user.role is Role.USER:
        return None
    return user
