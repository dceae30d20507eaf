"""A local OAuth2 authorization server for the XOAUTH2 tests, built from authlib's server parts.

It issues real bearer tokens with an expiry and refresh tokens, and answers:
- ``POST /token``: client_credentials, authorization_code (PKCE S256 required), refresh_token and
  the RFC 7523 jwt-bearer grant (a service account's signed assertion, `sub` = the delegated user);
  clients authenticate with a secret or, RFC 7523 private_key_jwt, an assertion signed with the key
  of their registered certificate (as msal does with a certificate credential);
- ``GET /authorize``: signs `login_user` in at once (no consent page) and redirects with a code;
- ``POST /revoke`` (RFC 7009) and ``POST /introspect`` (RFC 7662, HTTP Basic auth of a client).

Dovecot and the test SMTP server check the bearer tokens the helpdesk presents against
``/introspect`` (as the resource-server client `RESOURCE_CLIENT`), so a revoked or expired token
is refused by a real IMAP server, not by a test double.

Test controls: `expires_in` (seconds each new access token lives), `add_service_account` and
`add_certificate_client` (public keys the server trusts), `revoke_client(id)` (every
token of a client, as when an admin withdraws consent) and `client.disabled` (its secret stops
working, as an expired client secret does).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin, InvalidClientError, InvalidRequestError, InvalidScopeError, TokenMixin, grants, scope_to_list,
)  # fmt: skip
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

HOST = "127.0.0.1"
RESOURCE_CLIENT = ("mailserver", "introspect-secret")  # how Dovecot and the SMTP sink introspect


@dataclass
class User:
    username: str

    def get_user_id(self) -> str:
        return self.username


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    username: str  # whose mailbox an app-only (client_credentials) token opens
    redirect_uris: tuple[str, ...] = ()
    disabled: bool = False  # an expired or deleted secret: the token endpoint refuses it
    public_key: bytes | None = None  # PEM (a key or a certificate) its signed assertions are checked with
    delegated_users: tuple[str, ...] = ()  # a service account: whom it may act for (domain-wide delegation)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return not self.disabled and secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public_key is not None:
            return method == JWTBearerClientAssertion.CLIENT_AUTH_METHOD
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if self.delegated_users:
            return grant_type == JWTBearerGrant.GRANT_TYPE
        return grant_type in ("client_credentials", "authorization_code", "refresh_token")


@dataclass
class Token(TokenMixin):
    client_id: str
    username: str
    access_token: str
    scope: str
    issued_at: float
    expires_in: int
    refresh_token: str | None = None
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return User(self.username)

    def get_client(self) -> ClientMixin:
        raise NotImplementedError  # authlib only asks for it in grants we don't enable


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    username: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None = None  # OpenID Connect: echoed in the id_token
    auth_time: int = 0

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class _Store:
    clients: dict[str, Client] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    codes: dict[str, _Code] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_access(self, value: str) -> Token | None:
        return next((t for t in self.tokens if t.access_token == value), None)

    def by_refresh(self, value: str) -> Token | None:
        return next((t for t in self.tokens if t.refresh_token == value), None)

    def query_token(self, token_string: str, token_type_hint: str | None = None) -> Token | None:
        """The endpoints' lookup (a plain function on the class: no `self` of theirs)."""
        with self.lock:
            return self.by_access(token_string) or self.by_refresh(token_string)


class OAuthServer:
    """The authorization server on a free loopback port, in a thread."""

    def __init__(self, expires_in: int = 3600, cert: tuple[Path, Path] | None = None) -> None:
        """`cert` (certificate and key files) serves HTTPS instead, as msal only talks to https authorities."""
        self.expires_in = expires_in
        self.login_user = "helpdesk"  # who "signs in" at /authorize
        self.store = _Store()
        self.add_client(*RESOURCE_CLIENT, username="")
        self.scheme = "https" if cert else "http"
        self.app = self._make_app()
        context = (str(cert[0]), str(cert[1])) if cert else None
        self._server = make_server(HOST, 0, self.app, threaded=True, request_handler=_QuietHandler, ssl_context=context)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def authority(self, tenant: str) -> str:
        """A Microsoft-style authority URL (msal reads TENANT/v2.0/.well-known/openid-configuration under it)."""
        return f"{self.url}/{tenant}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def introspection_url(self, *, with_credentials: bool = False) -> str:
        userinfo = "{}:{}@".format(*RESOURCE_CLIENT) if with_credentials else ""
        return f"{self.scheme}://{userinfo}{HOST}:{self.port}/introspect"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- test controls ------------------------------------------------------------

    def add_client(self, client_id: str, secret: str, *, username: str, redirect_uris: tuple[str, ...] = ()) -> Client:
        client = Client(client_id, secret, username, redirect_uris)
        self.store.clients[client_id] = client
        return client

    def add_service_account(self, email: str, public_key_pem: bytes, *, delegated_users: tuple[str, ...]) -> Client:
        """A service account (Google's kind) allowed to act for `delegated_users` (domain-wide delegation)."""
        client = self.add_client(email, secrets.token_urlsafe(), username="")
        client.public_key, client.delegated_users = public_key_pem, delegated_users
        return client

    def add_certificate_client(self, client_id: str, certificate_pem: bytes, *, username: str) -> Client:
        """An app that proves itself with an assertion signed by its certificate's key (no secret)."""
        client = self.add_client(client_id, secrets.token_urlsafe(), username=username)
        client.public_key = certificate_pem
        return client

    def revoke_client(self, client_id: str) -> int:
        """Revoke every access and refresh token of a client; how many there were."""
        with self.store.lock:
            mine = [t for t in self.store.tokens if t.client_id == client_id and not t.revoked]
            for token in mine:
                token.revoked = True
        return len(mine)

    def issued(self, client_id: str) -> list[Token]:
        with self.store.lock:
            return [t for t in self.store.tokens if t.client_id == client_id]

    def introspect(self, access_token: str) -> dict[str, Any]:
        """What /introspect answers for a token (for the SMTP sink, in-process)."""
        with self.store.lock:
            token = self.store.by_access(access_token)
            if token is None or token.is_expired() or token.is_revoked():
                return {"active": False}
            return _payload(token)

    # -- the Flask app ------------------------------------------------------------

    def code_grant_extensions(self) -> list[Any]:
        """What the authorization code grant checks besides the code (the OIDC provider adds id_tokens)."""
        return [_PkceRequired()]

    def _make_app(self) -> Flask:
        app = Flask("oauth-test-server")
        store = self.store

        def save_token(token: dict[str, Any], req: Any) -> None:
            user = req.user.username if req.user is not None else req.client.username
            with store.lock:
                store.tokens.append(
                    Token(
                        client_id=req.client.client_id,
                        username=user,
                        access_token=token["access_token"],
                        scope=token.get("scope", ""),
                        issued_at=time.time(),
                        expires_in=int(token["expires_in"]),
                        refresh_token=token.get("refresh_token"),
                    )
                )

        server = AuthorizationServer(app, query_client=store.clients.get, save_token=save_token)
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: secrets.token_urlsafe(32),
                refresh_token_generator=lambda **_: secrets.token_urlsafe(48),
                expires_generator=lambda client, grant_type: self.expires_in,
            ),
        )
        server.register_grant(_ClientCredentials)
        server.register_grant(_make_jwt_bearer_grant(store, self))
        server.register_client_auth_method(JWTBearerClientAssertion.CLIENT_AUTH_METHOD, _ClientAssertion(self))
        server.register_grant(_make_code_grant(store), self.code_grant_extensions())
        server.register_grant(_make_refresh_grant(store))
        server.register_endpoint(_Revocation(store))
        server.register_endpoint(_Introspection(store))

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.get("/authorize")
        def authorize() -> Any:
            user = User(self.login_user)
            try:
                grant = server.get_consent_grant(end_user=user)
            except OAuth2Error as error:
                return server.handle_error_response(None, error)
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.post("/revoke")
        def revoke() -> Any:
            return server.create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)

        @app.post("/introspect")
        def introspect() -> Any:
            return server.create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)

        @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
        def discovery(tenant: str) -> dict[str, str]:
            return {
                "issuer": f"{self.url}/{tenant}/v2.0",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": self.token_url,
            }

        return app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # a line per request drowns the test output


def _payload(token: Token) -> dict[str, Any]:
    return {
        "active": True,
        "username": token.username,
        "client_id": token.client_id,
        "scope": token.scope,
        "token_type": "Bearer",
        "exp": int(token.issued_at + token.expires_in),
    }


class _PkceRequired(CodeChallenge):
    """authlib insists on PKCE only for public clients; the helpdesk always sends it, so demand it."""

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        super().validate_code_challenge(grant, redirect_uri)


class _ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", JWTBearerClientAssertion.CLIENT_AUTH_METHOD]


def _public_key(client: Client) -> RSAKey:
    """The key a client's assertions must be signed with: a bare public key or its certificate's."""
    assert client.public_key is not None
    pem = client.public_key
    if b"CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
        pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return RSAKey.import_key(pem)


def _make_jwt_bearer_grant(store: _Store, server: OAuthServer) -> type[JWTBearerGrant]:
    class JwtBearer(JWTBearerGrant):
        """RFC 7523 section 2.1: a service account's signed assertion; `sub` is the user it acts for."""

        def resolve_issuer_client(self, issuer: str) -> Client | None:
            client = store.clients.get(issuer)
            return client if client is not None and client.delegated_users else None

        def resolve_client_public_key(self, client: Client) -> Any:
            return _public_key(client)

        def get_audiences(self) -> list[str]:
            return [server.token_url]

        def authenticate_user(self, subject: str) -> User:
            return User(subject)

        def has_granted_permission(self, client: Client, user: User) -> bool:
            return user.username in client.delegated_users

    return JwtBearer


# msal signs with PS256 once it has the certificate (joserfc's default list has only RS256 of the RSA
# ones) and puts the certificate itself in the header (x5c), past joserfc's default 512-byte limit.
_ASSERTIONS = jws.JWSRegistry(algorithms=["RS256", "PS256"])
_ASSERTIONS.max_header_length = 8192


class _ClientAssertion(JWTBearerClientAssertion):
    """RFC 7523 section 2.2 (private_key_jwt): checked against the client's registered certificate."""

    def __init__(self, server: OAuthServer) -> None:
        super().__init__()
        self.server = server
        self.seen: set[str] = set()

    def get_audiences(self) -> list[str]:
        return [self.server.token_url]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        if jti in self.seen:
            return False  # a replayed assertion
        self.seen.add(jti)
        return True

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            found = jws.extract_compact(assertion.encode(), registry=_ASSERTIONS)
            return found.headers(), json.loads(found.payload)
        except (JoseError, ValueError):
            raise InvalidClientError(description="Invalid JWT assertion.") from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, registry=_ASSERTIONS)
        except JoseError as exc:  # as Entra ID says it (AADSTS700027)
            raise InvalidClientError(description=exc.description or "the client assertion's signature does "
                                     "not match a certificate registered for the app") from None
        self.verify_claims(token.claims)
        return token.claims

    def resolve_client_public_key(self, client: Client) -> Any:
        if client.public_key is None:
            raise InvalidClientError(description="the client has no registered certificate")
        return _public_key(client)


def _make_code_grant(store: _Store) -> type[grants.AuthorizationCodeGrant]:
    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            store.codes[code] = _Code(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.payload.scope or "",
                username=req.user.username,
                code_challenge=req.payload.data.get("code_challenge"),
                code_challenge_method=req.payload.data.get("code_challenge_method"),
                nonce=req.payload.data.get("nonce"),
                auth_time=int(time.time()),
            )

        def query_authorization_code(self, code: str, client: Client) -> _Code | None:
            found = store.codes.get(code)
            return found if found is not None and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: _Code) -> None:
            store.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: _Code) -> User:
            return User(authorization_code.username)

    return CodeGrant


def _make_refresh_grant(store: _Store) -> type[grants.RefreshTokenGrant]:
    class RefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotation, as Microsoft and most servers do

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            with store.lock:
                token = store.by_refresh(refresh_token)
            return token if token is not None and not token.revoked else None

        def authenticate_user(self, refresh_token: Token) -> User:
            return User(refresh_token.username)

        def _validate_token_scope(self, token: Token) -> None:
            # msal adds openid, profile and offline_access to every request; Entra ID grants them to any sign-in.
            asked = set(scope_to_list(self.request.payload.scope or "")) - {"openid", "profile", "offline_access"}
            if not asked <= set(scope_to_list(token.get_scope())):
                raise InvalidScopeError()

        def revoke_old_credential(self, refresh_token: Token) -> None:
            refresh_token.revoked = True

    return RefreshGrant


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def __init__(self, store: _Store) -> None:
        super().__init__()
        self.query_token = store.query_token  # type: ignore[method-assign]

    def revoke_token(self, token: Token, req: Any) -> None:
        token.revoked = True


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = _Revocation.CLIENT_AUTH_METHODS

    def __init__(self, store: _Store) -> None:
        super().__init__()
        self.query_token = store.query_token  # type: ignore[method-assign]

    def check_permission(self, token: Token, client: Client, req: Any) -> bool:
        return client.client_id in (RESOURCE_CLIENT[0], token.client_id)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return _payload(token)
