"""Bearer-token guard for /v1: every protected view runs `tokens.validate_access_token`.

Tokens are read from the Authorization header only (RFC 6750 2.1); a token in the query
string or body is ignored, so it is never logged or cached with a URL.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from authserver.identity import audit, tokens
from authserver.platform import logs
from authserver.platform.errors import Forbidden, Unauthenticated

F = TypeVar("F", bound=Callable[..., Any])


def current_token() -> tokens.AccessClaims:
    """The validated token of this request (inside a guarded view)."""
    return cast(tokens.AccessClaims, g.access_token)


def require_token(*roles: str) -> Callable[[F], F]:
    """Refuse with 401 unless a valid access token is given, 403 unless its role is listed.

    No roles listed: any valid token, guests (publishable tokens) and client tokens included.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthenticated("A bearer access token is required.")
            claims = tokens.validate_access_token(value.strip())
            logs.identify(user_id=claims.user_id, client_id=claims.client_id)
            if roles and claims.role not in roles:
                raise Forbidden(
                    f"A {claims.role or 'roleless'} token may not do this; it needs one of: "
                    f"{', '.join(roles)}."
                )
            g.access_token = claims
            # Who the audit log names for any change this request makes.
            actor = audit.Actor(
                "user" if claims.user_id else "client",
                claims.user_id or claims.client_id,
                request.remote_addr,
            )
            with audit.acting(actor):
                return view(*args, **kwargs)

        # The OpenAPI document and the role-table test read who may call the view here.
        guarded.required_roles = roles  # type: ignore[attr-defined]
        return cast(F, guarded)

    return decorate
