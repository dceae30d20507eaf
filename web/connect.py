"""Mailboxes page and "Connect mailbox": an admin signs in once (authorization code with PKCE) and the
refresh token is kept, sealed, for the delegated flow. It is never shown, logged or put in the session."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)  # fmt: skip
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped, unused-ignore]

from helpdesk.core.db import transaction
from helpdesk.core.mailauth import connect_mailbox, statuses
from helpdesk.core.models import Role
from helpdesk.core.settings import MailboxSettings, OAuthFlow, OAuthProvider, OAuthSettings
from helpdesk.web.db import current_settings, db
from helpdesk.web.security import CSP, current_user, roles

if TYPE_CHECKING:
    from authlib.integrations.requests_client import OAuth2Session

bp = Blueprint("connect", __name__, url_prefix="/admin/mailboxes")
_PENDING = "connect_mailbox"  # the session key for the sign-in under way: mailbox, state, PKCE verifier


def _delegated(name: str) -> MailboxSettings:
    for mailbox in current_settings().mailboxes:
        if mailbox.name == name and mailbox.oauth is not None and mailbox.oauth.flow is OAuthFlow.DELEGATED:
            return mailbox
    abort(404)


def _endpoints(oauth: OAuthSettings) -> tuple[str, str]:
    """(authorize URL, token URL); Microsoft's follow from the authority (v2.0 endpoints)."""
    if oauth.provider is OAuthProvider.MICROSOFT:
        base = (oauth.authority or "").rstrip("/")
        return f"{base}/oauth2/v2.0/authorize", f"{base}/oauth2/v2.0/token"
    authorize = oauth.authorize_url or (
        "https://accounts.google.com/o/oauth2/v2/auth" if oauth.provider is OAuthProvider.GOOGLE else ""
    )
    if not authorize or not oauth.token_url:
        abort(409, "set the mailbox's oauth_authorize_url to connect it")
    return authorize, oauth.token_url


def _client(oauth: OAuthSettings) -> OAuth2Session:
    from authlib.integrations.requests_client import OAuth2Session

    scopes = list(oauth.scopes)
    if oauth.provider is OAuthProvider.MICROSOFT and "offline_access" not in scopes:
        scopes.append("offline_access")  # or no refresh token comes back
    return OAuth2Session(
        oauth.client_id,
        oauth.client_secret or None,
        scope=" ".join(scopes) or None,
        redirect_uri=url_for("connect.callback", _external=True),
        code_challenge_method="S256",
    )


@bp.get("")
@roles(Role.ADMIN)
def mailboxes() -> ResponseReturnValue:
    known = statuses(db())
    rows = [(m, known.get(m.name)) for m in current_settings().mailboxes]
    response = make_response(render_template("web/admin/mailboxes.html", rows=rows, delegated=OAuthFlow.DELEGATED))
    # "Connect mailbox" posts here and is redirected to the sign-in page: the browser checks that redirect
    # against this page's form-action, so the configured sign-in origins (and only they) are allowed.
    origins = sorted({_origin(_endpoints(m.oauth)[0]) for m, _s in rows if m.oauth and m.oauth.flow is OAuthFlow.DELEGATED})
    response.headers["Content-Security-Policy"] = CSP.replace("form-action 'self'", " ".join(["form-action 'self'", *origins]))
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@bp.post("/connect")
@roles(Role.ADMIN)
def connect() -> ResponseReturnValue:
    mailbox = _delegated(request.form.get("mailbox", ""))
    assert mailbox.oauth is not None
    authorize, _token = _endpoints(mailbox.oauth)
    verifier = secrets.token_urlsafe(64)
    with _client(mailbox.oauth) as client:
        url, state = client.create_authorization_url(authorize, code_verifier=verifier, login_hint=mailbox.user)
    session[_PENDING] = {"mailbox": mailbox.name, "state": state, "verifier": verifier}
    return redirect(url)


@bp.get("/callback")
@roles(Role.ADMIN)
def callback() -> ResponseReturnValue:
    pending = session.pop(_PENDING, None)
    if not pending or not secrets.compare_digest(str(pending["state"]), request.args.get("state", "")):
        abort(400, _("this sign-in was not started here, or is already used: start again from Mailboxes"))
    mailbox = _delegated(pending["mailbox"])
    assert mailbox.oauth is not None
    if "error" in request.args:
        flash(_("%(name)s: sign-in refused: %(error)s", name=mailbox.name, error=request.args.get("error")), "error")
        return redirect(url_for("connect.mailboxes"))
    _authorize, token_url = _endpoints(mailbox.oauth)
    from authlib.common.errors import AuthlibBaseError

    try:
        with _client(mailbox.oauth) as client:
            token = client.fetch_token(
                token_url, authorization_response=request.url, code_verifier=pending["verifier"], timeout=30
            )
    except (AuthlibBaseError, OSError) as exc:
        flash(_("%(name)s: the token endpoint refused the sign-in: %(error)s", name=mailbox.name,
                error=getattr(exc, "error", None) or exc), "error")
        return redirect(url_for("connect.mailboxes"))
    if not token.get("refresh_token"):
        flash(_("%(name)s: no refresh token came back (is offline access granted?)", name=mailbox.name), "error")
        return redirect(url_for("connect.mailboxes"))
    user = current_user()
    assert user is not None
    with transaction(current_app.extensions["helpdesk"].session_factory) as tx:
        connect_mailbox(tx, current_settings(), mailbox.name, str(token["refresh_token"]), actor=user.email)
    flash(_("%(name)s: connected; the helpdesk logs in with it from now on", name=mailbox.name), "info")
    return redirect(url_for("connect.mailboxes"))
