"""Single sign-on for the console with an OpenID Connect provider (authlib's Flask client).

"Sign in with NAME" on the login page starts an authorization code flow with PKCE, a state and a
nonce; authlib checks the state, redeems the code with the verifier and verifies the id_token against
the provider's published keys (JWKS), its issuer, audience, expiry and the nonce. What the verified
claims mean (which user, which role) is core.sso's; the session is the same server-side one a
password login opens.
"""

from __future__ import annotations

from typing import Any

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]
from joserfc.errors import JoseError
from requests import RequestException

from helpdesk.core.settings import OidcSettings, Settings
from helpdesk.core.sso import SignOnRefused, sign_on
from helpdesk.web import security
from helpdesk.web.db import current_settings, db
from helpdesk.web.i18n import reason_of
from helpdesk.web.security import public

bp = Blueprint("sso", __name__, url_prefix="/login/sso")
_NEXT = "sso_next"  # where to go after signing in, kept in the session across the round trip


def _oidc() -> OidcSettings:
    oidc = current_settings().oidc
    if oidc is None:
        abort(404)
    return oidc


def install(app: Flask) -> None:
    settings: Settings = app.extensions["helpdesk"].settings
    app.context_processor(lambda: {"sso_name": settings.oidc.name if settings.oidc else None,
                                   "local_login": settings.local_login})
    if settings.oidc is None:
        return
    oidc = settings.oidc
    OAuth(app).register(
        "oidc",
        client_id=oidc.client_id,
        client_secret=oidc.client_secret or None,
        server_metadata_url=oidc.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": " ".join(oidc.scopes), "code_challenge_method": "S256", "default_timeout": 30},
    )


def _client() -> Any:
    return current_app.extensions["authlib.integrations.flask_client"].create_client("oidc")


def refuse_password_login() -> None:
    """HELPDESK_LOCAL_LOGIN=no: a password is not accepted, right or wrong."""
    if not current_settings().local_login:
        abort(403, _("Password logins are turned off here: sign in with single sign-on."))


@bp.get("")
@public
def start() -> ResponseReturnValue:
    _oidc()
    session[_NEXT] = request.args.get("next", "")
    try:
        return _client().authorize_redirect(url_for("sso.callback", _external=True))
    except (AuthlibBaseError, RequestException, RuntimeError, ValueError):
        return _refused(_("The sign-in service could not be reached. Try again later."), 502)


@bp.get("/callback")
@public
def callback() -> ResponseReturnValue:
    oidc = _oidc()
    try:
        token = _client().authorize_access_token()
        claims = token.get("userinfo")
        if not claims:  # no id_token came back: nothing vouches for the person
            raise JoseError("no id_token")
    except (AuthlibBaseError, JoseError, RequestException, ValueError, KeyError) as exc:
        # A state or nonce from another sign-in, a forged or unsigned id_token, a code the provider refused.
        current_app.logger.warning("single sign-on refused: the provider's answer did not verify (%s)",
                                   type(exc).__name__)
        return _refused(_("The sign-in could not be verified. Start again from the login page."), 400)
    try:
        user = sign_on(db(), claims, oidc)
    except SignOnRefused as refused:
        db().commit()  # a role taken away stays taken away
        return _refused(_("%(reason)s. Ask an administrator for access.", reason=reason_of(refused)), 403)
    db().commit()
    target = session.pop(_NEXT, "")
    security.login(user)
    from helpdesk.web.auth import _safe_next  # the login view's rule for where to go next

    return redirect(_safe_next(target))


def _refused(reason: str, status: int) -> ResponseReturnValue:
    return render_template("web/auth/refused.html", reason=reason), status
