"""core.sso: which console user and role an OpenID Connect provider's verified claims stand for."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.core.db import transaction
from helpdesk.core.models import Role
from helpdesk.core.settings import OidcSettings
from helpdesk.core.sso import SignOnRefused, role_from_claims, sign_on
from helpdesk.core.users import create_user, find_user

OIDC = OidcSettings(issuer="https://sso.example.org", client_id="helpdesk", name="Corp SSO",
                    roles=(("admin", ("it-admins",)), ("agent", ("it-staff", "servicedesk")), ("approver", ("sec",))))


@pytest.mark.parametrize(
    ("claim", "role"),
    [
        (["sec", "it-staff"], Role.AGENT),  # the strongest mapped role wins, whatever the order
        (["sec", "it-admins"], Role.ADMIN),
        ("servicedesk", Role.AGENT),  # one value instead of a list (Google's hd, a single role)
        (["everyone"], None),
        (None, None),
    ],
)
def test_role_from_claims(claim: object, role: Role | None) -> None:
    assert role_from_claims({"groups": claim} if claim is not None else {}, OIDC) is role


@pytest.mark.parametrize(
    "verified", [{"email_verified": True}, {"email_verified": "true"}, {"xms_edov": True}],
    ids=["bool", "string", "entra-xms_edov"],
)
def test_a_verified_address_becomes_a_user_with_the_mapped_role(
    sqlite_session_factory: sessionmaker[Session], verified: dict[str, object]
) -> None:
    with transaction(sqlite_session_factory) as session:
        user = sign_on(session, {"email": "Kim@Example.org", "groups": ["it-staff"], **verified}, OIDC)
        assert user.email == "kim@example.org" and user.role is Role.AGENT and user.password_hash is None


@pytest.mark.parametrize("claims", [{"email": "kim@example.org"}, {"email": "kim@example.org", "email_verified": False},
                                    {"email_verified": True}, {"email": "not-an-address", "email_verified": True}])
def test_no_verified_address_is_refused(sqlite_session_factory: sessionmaker[Session], claims: dict[str, object]) -> None:
    with transaction(sqlite_session_factory) as session, pytest.raises(SignOnRefused, match="no verified email"):
        sign_on(session, {**claims, "groups": ["it-admins"]}, OIDC)


def test_a_password_user_keeps_the_password_and_gets_the_role_of_the_claims(
    sqlite_session_factory: sessionmaker[Session],
) -> None:
    with transaction(sqlite_session_factory) as session:
        create_user(session, "lee@example.org", Role.ADMIN, "a long enough password")
    with transaction(sqlite_session_factory) as session:
        user = sign_on(session, {"email": "lee@example.org", "email_verified": True, "groups": ["sec"]}, OIDC)
        assert user.role is Role.APPROVER and user.password_hash
    with transaction(sqlite_session_factory) as session, pytest.raises(SignOnRefused, match="none of the groups"):
        sign_on(session, {"email": "lee@example.org", "email_verified": True, "groups": []}, OIDC)
    with sqlite_session_factory() as session:
        assert find_user(session, "lee@example.org").role is Role.USER  # type: ignore[union-attr]
