"""The authorization code grant at the token endpoint, with PKCE (S256 only) and the
OpenID Connect ID token, and the claims behind the ID token and userinfo.

Codes come from `authorization` (Redis). A code is looked up without being consumed,
checked (client, redirect_uri, PKCE verifier), and only then taken with GETDEL: a wrong
verifier does not burn the legitimate client's code, and of two racing exchanges one wins.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from flask import current_app

from authserver.identity import authorization, tokens
from authserver.platform.extensions import db
from authserver.platform.keys import ID_TOKEN_ALG, keyring
from authserver.platform.models import User

from .clients import ClientInfo
from .grants import PUBLIC_AND_CONFIDENTIAL, refuse_resource

REPLAYED = "The authorization code was already used."


class S256Challenge(CodeChallenge):
    """PKCE with S256 only (OAuth 2.1); the authorization endpoint already refused any
    request without a challenge, so every code has one and needs its verifier."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_AND_CONFIDENTIAL

    def validate_token_request(self) -> None:
        refuse_resource(self.request.form)  # before the code is looked at: it stays usable
        super().validate_token_request()

    def query_authorization_code(
        self, code: str, client: ClientInfo
    ) -> authorization.StoredCode | None:
        return authorization.find_code(code, client.client_id)

    def delete_authorization_code(self, authorization_code: Any) -> None:
        """Nothing to do: the code was taken (GETDEL) before any token was made."""

    def authenticate_user(self, authorization_code: authorization.StoredCode) -> Any:
        return authorization.principal_for(authorization_code)

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: authorization.StoredCode = self.request.authorization_code
        # Consumed only now, after the client, redirect_uri and verifier were checked.
        if not authorization.redeem_code(self.request.form["code"], code):
            raise InvalidGrantError(REPLAYED)
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("The user behind this code can no longer sign in.")
        self.request.user = user
        scope = code.get_scope()
        # OIDC Core 11: a refresh token only for offline_access (granted with consent).
        token = self.generate_token(
            user=user,
            scope=scope,
            include_refresh_token="offline_access" in scope.split(),
        )
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


def user_info(user_id: str, scope: str, account_id: str | None, mode: str) -> UserInfo:
    """The standard claims of the user that `scope` allows (`sub` always a string), and
    always `aid` (the account the login is for; left out for a global login) and `mode`
    (`live`/`test`): a test account's user may share a live user's username and email,
    so a relying party must check these two to tell them apart (issue 14)."""
    tenancy = {"aid": account_id, "mode": mode} if account_id else {"mode": mode}
    user = db.session.get(User, user_id)
    if user is None:
        return UserInfo(sub=str(user_id), **tenancy)
    claims = UserInfo(
        sub=str(user.id),
        name=user.name,
        given_name=user.first_name,
        family_name=user.last_name,
        preferred_username=user.username,
        locale=user.locale,
        updated_at=int(user.updated_at.timestamp()) if user.updated_at else None,
        email=user.email,
        email_verified=bool(user.email_verified) if user.email else None,
        phone_number=user.phone_number,
        phone_number_verified=bool(user.phone_verified) if user.phone_number else None,
    )
    filtered = claims.filter(f"openid {scope}")
    return UserInfo({**{k: v for k, v in filtered.items() if v is not None}, **tenancy})


class IdToken(OpenIDCode):
    """The ID token: RS256 with the JWKS key (its kid in the header)."""

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return authorization.nonce_seen(request.payload.client_id, nonce)

    def generate_user_info(self, user: tokens.Principal, scope: str) -> UserInfo:
        return user_info(str(user.user_id), scope, user.account_id, user.mode)

    def resolve_client_private_key(self, client: ClientInfo) -> Any:
        return keyring().signing_key(ID_TOKEN_ALG)

    def get_client_algorithm(self, client: ClientInfo) -> str:
        return ID_TOKEN_ALG

    def get_encode_header(self, client: ClientInfo) -> dict[str, str]:
        key = keyring().signing_key(ID_TOKEN_ALG)
        return {"alg": ID_TOKEN_ALG, "typ": "JWT", "kid": str(key.kid)}

    def get_client_claims(self, client: ClientInfo) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": current_app.config["ISSUER"],
            "aud": [client.client_id],
            "iat": now,
            "exp": now + int(current_app.config["ID_TOKEN_LIFETIME"]),
        }
