"""RFC 7009 revocation and RFC 7662 introspection, as Authlib endpoints.

Both take a refresh token (opaque, looked up by digest) or an access token (JWT, checked
by `tokens.validate_access_token`, the same rule as the /v1 bearer guard, or for a token
of one of the account's own APIs `tokens.validate_api_token`). Revoking a
refresh token ends its whole family; revoking an access token deny-lists its `jti` until
it expires; both are durable database writes that need no Redis. Introspection needs a
confidential client and answers only for tokens of the client's own account and mode (not
its live or test twin: issue 14); anything else is `{"active": false}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from authserver.identity import tokens
from authserver.platform.errors import Unauthenticated
from authserver.platform.models import RefreshToken

from .clients import ClientInfo


@dataclass(frozen=True)
class FoundToken:
    """Either kind of token, for the two endpoints."""

    refresh: RefreshToken | None = None
    access: tokens.AccessClaims | None = None

    def check_client(self, client: ClientInfo) -> bool:
        """Issued to this client, for an account it may reach (a live token a test client
        got before issue 14 is not its to revoke or read)."""
        if self.refresh is not None:
            return self.refresh.client_id == client.pk and client.serves(self.refresh.account_id)
        return (
            self.access is not None
            and self.access.client_id == client.client_id
            and client.reaches(self.access.account_id, self.access.mode)
        )

    def of_account(self, client: ClientInfo) -> bool:
        """For the client's own account and mode: its account's tokens, or (a global
        login, no account) the ones issued to it. A token of the paired live or test
        account is not (issue 14)."""
        if self.refresh is not None:
            account_id = self.refresh.account_id
            mine = self.refresh.client_id == client.pk
        elif self.access is not None:
            if self.access.mode != client.account_mode:
                return False
            account_id, mine = self.access.account_id, self.access.client_id == client.client_id
        else:
            return False
        return client.serves(account_id) and (account_id is not None or mine)


def find_token(value: str, hint: str | None) -> FoundToken | None:
    """Look the token up as the hinted type first, then as the other (RFC 7009 2.1)."""
    order = (
        ("refresh_token", "access_token")
        if hint == "refresh_token"
        else ("access_token", "refresh_token")
    )
    for kind in order:
        if kind == "refresh_token":
            refresh = tokens.find_refresh_token(value)
            if refresh is not None:
                return FoundToken(refresh=refresh)
        elif value.count(".") == 2:
            # The account's /v1 token, else a token of one of its own APIs: the same
            # checks but for the audience (the /v1 guard takes only the first).
            for validate in (tokens.validate_access_token, tokens.validate_api_token):
                try:
                    return FoundToken(access=validate(value))
                except Unauthenticated:
                    continue
    return None


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: FoundToken, request: Any) -> None:
        if token.refresh is not None:
            tokens.revoke_family(token.refresh.family_id, token.refresh.user_id)
        elif token.access is not None:
            tokens.revoke_access_token(token.access)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> FoundToken | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: FoundToken, client: ClientInfo, request: Any) -> bool:
        return token.of_account(client)

    def create_introspection_payload(self, token: FoundToken | None) -> dict[str, Any]:
        if token is None:
            return {"active": False}
        if token.access is not None:
            return _access_payload(token.access)
        return _refresh_payload(token.refresh)


def _access_payload(claims: tokens.AccessClaims) -> dict[str, Any]:
    payload = {
        "active": True,
        "token_type": "Bearer",
        "scope": claims.scope,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": claims.claims.get("aud"),
        "iss": claims.claims.get("iss"),
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "aid": claims.account_id,
        "mode": claims.mode,
        "role": claims.role,
    }
    if claims.username is not None:  # read by the check: no second look at the user row
        payload["username"] = claims.username
    return payload


def _refresh_payload(token: RefreshToken | None) -> dict[str, Any]:
    holder = tokens.refresh_token_holder(token) if token and token.rotated_at is None else None
    if token is None or holder is None:
        return {"active": False}
    user = holder[0]
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": token.scope,
        "sub": user.id,
        "username": user.username,
        "exp": int(token.expires_at.timestamp()),
        "iat": int(token.issued_at.timestamp()),
        "aid": token.account_id,
        "mode": holder[1].mode if holder[1] is not None else "live",
    }
