"""A local OpenID Connect provider for the console's single sign-on tests: the OAuth2 test server
(tests/servers/oauth.py, authorization code with PKCE) plus what OIDC adds, from authlib's parts:

- ``GET /.well-known/openid-configuration``: the discovery document (issuer = the server's URL);
- ``GET /jwks``: the public key id_tokens are checked with;
- an RS256-signed ``id_token`` in the token response, with the authorization request's nonce and the
  signed-in user's claims (``email``, ``email_verified``, ``groups``);
- ``GET /userinfo`` for a bearer access token.

Test controls, to play a provider that misbehaves or an attacker in the middle: `signing_key` (sign
with another key than the published one), `algorithm` ("none": an unsigned id_token; `advertised`
lists what discovery claims to use), `nonce_override` (an id_token made for another sign-in).
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey

from tests.servers.oauth import Client, OAuthServer

KEY_ID = "test-key-1"


class OidcServer(OAuthServer):
    """An OIDC provider on a free loopback port; `login_user` is who signs in at /authorize."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})  # the published one
        self.signing_key = self.key
        self.algorithm = "RS256"
        self.advertised = ["RS256"]
        self.nonce_override: str | None = None
        self.users: dict[str, dict[str, Any]] = {}
        super().__init__()

    @property
    def issuer(self) -> str:
        return self.url

    def add_user(self, username: str, email: str, groups: list[str], *, email_verified: bool = True) -> None:
        self.users[username] = {"email": email, "email_verified": email_verified, "groups": list(groups)}

    def add_console(self, redirect_uri: str) -> Client:
        return self.add_client("helpdesk-console", "console-secret", username="", redirect_uris=(redirect_uri,))

    def claims(self, username: str) -> dict[str, Any]:
        return {"sub": f"sub-{username}", **self.users[username]}

    def code_grant_extensions(self) -> list[Any]:
        return [*super().code_grant_extensions(), _OpenIdCode(self)]

    def _make_app(self) -> Flask:
        app = super()._make_app()

        @app.get("/.well-known/openid-configuration")
        def oidc_discovery() -> Any:
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=f"{self.url}/authorize",
                token_endpoint=self.token_url,
                userinfo_endpoint=f"{self.url}/userinfo",
                jwks_uri=f"{self.url}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=self.advertised,
                code_challenge_methods_supported=["S256"],
            )

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(keys=[self.key.as_dict(private=False)])

        @app.get("/userinfo")
        def userinfo() -> Any:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            token = self.store.by_access(value) if scheme.lower() == "bearer" else None
            if token is None or token.is_expired() or token.is_revoked():
                return jsonify(error="invalid_token"), 401
            return jsonify(self.claims(token.username))

        return app


class _OpenIdCode(OpenIDCode):
    """authlib's OIDC extension of the code grant, signing with the provider's current key and algorithm."""

    def __init__(self, provider: OidcServer) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider.signing_key

    def get_client_algorithm(self, client: Client) -> str:
        return self.provider.algorithm

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": self.provider.algorithm, "kid": KEY_ID}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.client_id], "exp": int(time.time()) + 300}

    def get_authorization_code_claims(self, authorization_code: Any) -> dict[str, Any]:
        claims = super().get_authorization_code_claims(authorization_code)
        if self.provider.nonce_override is not None:
            claims["nonce"] = self.provider.nonce_override
        return claims

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return any(code.nonce == nonce for code in self.provider.store.codes.values())

    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        return UserInfo(self.provider.claims(user.username))
