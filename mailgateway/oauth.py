"""OAuth2 access tokens for XOAUTH2 logins: msal for Microsoft, authlib for Google and any other server.

Google's app flow is a service account acting for the mailbox user (domain-wide delegation): its key
signs an RFC 7523 jwt-bearer assertion (authlib's AssertionSession). Microsoft's app flow may prove
the app with a certificate instead of a secret (msal signs the client assertion).

One TokenSource per mailbox (and one for SMTP) lives for the whole process, so a reconnect reuses a
token that is still good. A token is fetched again a few minutes before it expires, and at once after
the server refused it (`login_failed`): a revoked or shortened token is retried exactly once with a
fresh one; the caller's backoff spaces out anything after that. Refresh tokens (delegated flow) come
from and go back to the store, which keeps them encrypted; tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from helpdesk.core.settings import MICROSOFT_AUTHORITY, AuthKind, OAuthFlow, OAuthProvider, OAuthSettings

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0  # seconds before expiry a token is replaced (Microsoft's are valid 60-90 min)
HTTP_TIMEOUT = 30.0


class TokenError(Exception):
    """No access token could be had; the message is one line, safe to log (no secrets)."""


class TokenStore(Protocol):
    """Where refresh tokens and the outcome of each attempt are kept (core.mailauth, in the database)."""

    def refresh_token(self, mailbox: str) -> str | None: ...

    def save_refresh_token(self, mailbox: str, token: str) -> None: ...

    def succeeded(self, mailbox: str, expires_at: float | None, kind: AuthKind = AuthKind.OAUTH2) -> None: ...

    def failed(self, mailbox: str, error: str, kind: AuthKind = AuthKind.OAUTH2) -> None: ...


@dataclass
class _Token:
    value: str
    expires_at: float
    lifetime: float

    def __repr__(self) -> str:
        return f"<access token valid until {self.expires_at:.0f}>"


class TokenSource:
    """Hands out a valid access token for one mailbox's XOAUTH2 login."""

    def __init__(
        self, name: str, settings: OAuthSettings, store: TokenStore | None = None, *, margin: float = REFRESH_MARGIN
    ) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.margin = margin
        self._token: _Token | None = None
        self._lock = threading.Lock()
        self._msal: Any = None
        self._failing = False

    @property
    def expires_at(self) -> float | None:
        return self._token.expires_at if self._token is not None else None

    def access_token(self) -> str:
        """A token good for at least `margin` more seconds (or as long as the server grants)."""
        with self._lock:
            token = self._token
            # Half the lifetime at most: a server handing out short-lived tokens still gets them used.
            if token is None or time.time() >= token.expires_at - min(self.margin, token.lifetime / 2):
                token = self._token = self._fetch()
            return token.value

    def login_failed(self, reason: str) -> None:
        """The server refused the token: forget it (and msal's cached copy) so the next one is new."""
        with self._lock:
            self._token = None
            self._msal = None
        log.info("%s: the server refused the OAuth2 token (%s); fetching a new one", self.name, reason)

    def logged_in(self) -> None:
        self._failing = False
        if self.store is not None:
            self.store.succeeded(self.name, self.expires_at)

    def _fetch(self) -> _Token:
        try:
            answer = self._request()
        except TokenError as exc:
            if not self._failing:  # one line when it starts failing, not one per retry
                log.error("%s: OAuth2 token refresh failed: %s; mail waits on the server until an admin fixes it",
                          self.name, exc)
            self._failing = True
            if self.store is not None:
                self.store.failed(self.name, str(exc))
            raise
        if answer.get("refresh_token") and self.store is not None:
            self.store.save_refresh_token(self.name, str(answer["refresh_token"]))  # rotated: keep the newest
        lifetime = float(answer.get("expires_in") or 3600)
        return _Token(str(answer["access_token"]), time.time() + lifetime, lifetime)

    def _request(self) -> dict[str, Any]:
        s = self.settings
        refresh = None
        if s.flow is OAuthFlow.DELEGATED:
            refresh = self.store.refresh_token(self.name) if self.store is not None else None
            if not refresh:
                raise TokenError("the mailbox is not connected yet: an admin must sign in once (Connect mailbox)")
        if s.provider is OAuthProvider.MICROSOFT:
            return self._from_msal(refresh)
        if s.service_account_file is not None and refresh is None:
            return _from_service_account(s)
        return _from_authlib(s, refresh)

    def _from_msal(self, refresh: str | None) -> dict[str, Any]:
        import msal

        s = self.settings
        if self._msal is None:
            authority = s.authority or f"{MICROSOFT_AUTHORITY}/{s.tenant}"
            official = urlsplit(authority).hostname == urlsplit(MICROSOFT_AUTHORITY).hostname
            credential: str | dict[str, str] | None = s.client_secret or None
            if s.certificate_file is not None and s.private_key_file is not None:
                # msal signs a client assertion (RFC 7523) with the key; the certificate gives its thumbprint.
                credential = read_certificate(s.certificate_file, s.private_key_file)
            try:
                self._msal = msal.ConfidentialClientApplication(
                    s.client_id,
                    client_credential=credential,
                    authority=authority,
                    # Another host (a national cloud, a test server) cannot be checked against Microsoft's list.
                    validate_authority=official,
                    instance_discovery=official,
                    timeout=HTTP_TIMEOUT,
                )
            except (ValueError, OSError) as exc:  # a bad authority, or the discovery document unreachable
                raise TokenError(f"Microsoft authority {authority}: {_one_line(exc)}") from None
        scopes = list(s.scopes)
        try:
            if refresh is None:
                result = self._msal.acquire_token_for_client(scopes=scopes)
            else:
                result = self._msal.acquire_token_by_refresh_token(refresh, scopes=scopes)
        except (ValueError, OSError) as exc:  # requests' errors are OSErrors
            raise TokenError(f"Microsoft token endpoint: {_one_line(exc)}") from None
        if "access_token" not in result:
            raise TokenError(_error_text(result.get("error"), result.get("error_description")))
        return dict(result)


def _from_authlib(s: OAuthSettings, refresh: str | None) -> dict[str, Any]:
    from authlib.common.errors import AuthlibBaseError  # OAuth2Error and the client's OAuthError alike
    from authlib.integrations.requests_client import OAuth2Session

    assert s.token_url is not None  # the settings make sure
    with OAuth2Session(s.client_id, s.client_secret or None, scope=" ".join(s.scopes) or None) as session:
        try:
            if refresh is None:
                token = session.fetch_token(s.token_url, grant_type="client_credentials", timeout=HTTP_TIMEOUT)
            else:
                token = session.refresh_token(s.token_url, refresh_token=refresh, timeout=HTTP_TIMEOUT)
        except AuthlibBaseError as exc:
            raise TokenError(_error_text(exc.error, exc.description)) from None
        except (ValueError, OSError) as exc:
            raise TokenError(f"token endpoint {s.token_url}: {_one_line(exc)}") from None
    return dict(token)


def _from_service_account(s: OAuthSettings) -> dict[str, Any]:
    """A jwt-bearer assertion signed with the service account's key, `sub` the delegated mailbox user."""
    from authlib.common.errors import AuthlibBaseError
    from authlib.integrations.requests_client import AssertionSession

    assert s.service_account_file is not None and s.token_url is not None  # the settings make sure
    account = read_service_account(s.service_account_file)
    session = AssertionSession(
        s.token_url, issuer=account.email, subject=s.subject, audience=s.token_url,
        claims={"scope": " ".join(s.scopes)},  # Google reads the scopes from the assertion
        key=account.key, alg="RS256", header={"kid": account.key_id} if account.key_id else None,
        default_timeout=HTTP_TIMEOUT,
    )  # fmt: skip
    with session:
        try:
            token = session.refresh_token()  # type: ignore[no-untyped-call]  # authlib's stubs leave it untyped
        except AuthlibBaseError as exc:
            raise TokenError(
                f"{_error_text(exc.error, exc.description)} (service account {account.email} acting for {s.subject}: "
                "is its key still registered, and the user covered by its domain-wide delegation?)"
            ) from None
        except (ValueError, OSError) as exc:
            raise TokenError(f"token endpoint {s.token_url}: {_one_line(exc)}") from None
    return dict(token)


@dataclass(frozen=True)
class ServiceAccount:
    email: str
    key_id: str | None
    key: Any = field(repr=False)  # joserfc RSAKey: never in logs


def read_service_account(path: Path) -> ServiceAccount:
    """A Google service-account key file (JSON); TokenError in one line naming the file if unusable."""
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey

    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not data.get("client_email") or not data.get("private_key"):
            raise ValueError("no client_email and private_key in it: not a service-account key file")
        key = RSAKey.import_key(str(data["private_key"]))
    except (OSError, ValueError, JoseError) as exc:  # JSONDecodeError is a ValueError
        raise TokenError(f"service-account key file {path}: {_one_line(exc)}") from None
    return ServiceAccount(str(data["client_email"]), data.get("private_key_id") or None, key)


def read_certificate(certificate: Path, private_key: Path) -> dict[str, str]:
    """msal's certificate credential from PEM files; TokenError in one line naming the file if unusable."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem: dict[str, str] = {}
    for path, label, load in ((certificate, "public_certificate", x509.load_pem_x509_certificate),
                              (private_key, "private_key", lambda data: load_pem_private_key(data, None))):  # fmt: skip
        try:
            data = path.read_bytes()
            load(data)
        except (OSError, ValueError, TypeError) as exc:  # TypeError: the key is encrypted
            raise TokenError(f"{path}: {_one_line(exc)}") from None
        pem[label] = data.decode()
    return pem


def _error_text(error: object, description: object) -> str:
    """The server's error code and the first line of its description (Microsoft's run to many lines)."""
    first = str(description or "").strip().splitlines()[0] if description else ""
    return f"{error or 'no access token'}: {first}" if first else str(error or "no access token in the answer")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- one source per mailbox for the whole process -------------------------------------------------

_sources: dict[tuple[str, OAuthSettings], TokenSource] = {}
_store: TokenStore | None = None
_sources_lock = threading.Lock()


def use_store(store: TokenStore | None) -> None:
    """Where refresh tokens and statuses go from now on (the composition root calls this once)."""
    global _store
    with _sources_lock:
        _store = store
        _sources.clear()


def login_succeeded(name: str, kind: AuthKind) -> None:
    """A login without a token source (a password) worked: recorded like the XOAUTH2 ones."""
    if _store is not None:
        _store.succeeded(name, None, kind)


def login_refused(name: str, kind: AuthKind, error: str) -> None:
    """The server refused a login (a password, or a token it would not take even fresh): recorded."""
    if _store is not None:
        _store.failed(name, error, kind)


def source_for(name: str, settings: OAuthSettings) -> TokenSource:
    with _sources_lock:
        key = (name, settings)
        if key not in _sources:
            _sources[key] = TokenSource(name, settings, _store)
        return _sources[key]
