"""Single sign-on: who a console user is, and their role, from an OpenID Connect provider's claims.

The claims arrive verified (the id_token's signature, issuer, audience and nonce are the web layer's
job, done by authlib); this decides what they mean. The provider is the source of truth for roles:
at every sign-in the role follows the claims, and someone in none of the mapped groups loses the role
they had (their sessions and API token end, as with any role change) and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from helpdesk.core import audit
from helpdesk.core.i18n import N_, Refusal
from helpdesk.core.models import Contact, Role
from helpdesk.core.settings import OidcSettings
from helpdesk.core.users import create_user, find_user, normalise_email, set_role


class SignOnRefused(Refusal):
    """The provider vouched for the person, but they may not use the console; the message says why."""


def role_from_claims(claims: Mapping[str, Any], oidc: OidcSettings) -> Role | None:
    """The strongest mapped role whose claim value the person has; None if none matches."""
    value = claims.get(oidc.roles_claim)
    held = {str(v) for v in value} if isinstance(value, list) else {str(value)} if value is not None else set()
    for role, values in oidc.roles:
        if held.intersection(values):
            return Role(role)
    return None


def _verified_email(claims: Mapping[str, Any]) -> str | None:
    email = claims.get("email")
    # Some providers send the flag as the string "true"; anything else is not a verified address.
    # Entra ID sends no email_verified; its optional claim xms_edov says the tenant verified the domain.
    verified = claims.get("email_verified") in (True, "true") or claims.get("xms_edov") in (True, "true")
    if not isinstance(email, str) or "@" not in email or not verified:
        return None
    return normalise_email(email)


def sign_on(session: Session, claims: Mapping[str, Any], oidc: OidcSettings) -> Contact:
    """The console user these verified claims name: created, or given the role the claims map to.

    Raises SignOnRefused without a verified email or without a mapped role (after taking away a
    role the person held: the caller commits either way)."""
    actor = f"sso:{oidc.name}"
    email = _verified_email(claims)
    if email is None:
        raise SignOnRefused(N_("%(provider)s did not vouch for an email address (no verified email claim)"), provider=oidc.name)
    role = role_from_claims(claims, oidc)
    user = find_user(session, email)
    if role is None:
        if user is not None:
            if user.role is not Role.USER:
                set_role(session, user, Role.USER, actor=actor)  # audited; ends their sessions and token
            audit.record(session, actor=actor, action="user.sso_refused", object_type="user", object_id=user.id,
                         reason=f"no mapped value in the {oidc.roles_claim} claim")
        raise SignOnRefused(N_("your account at %(provider)s is in none of the groups that give a helpdesk role"),
                            provider=oidc.name)
    if user is None:
        return create_user(session, email, role, None, actor=actor)
    if user.role is not role:
        set_role(session, user, role, actor=actor)
    return user
