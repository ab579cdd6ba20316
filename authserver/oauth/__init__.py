"""Authlib wiring: one AuthorizationServer per app with our grants, endpoints and tokens.

The server is built per app (not at module level) so test apps never share registrations.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from flask import Flask, current_app

from authserver.identity import tokens
from authserver.platform.extensions import csrf
from authserver.platform.web import add_error_renderer, guard_input, same_origin_posts

from . import authorize, logout, views
from .clients import ClientCache, ClientInfo
from .endpoints import Introspection, Revocation
from .grants import ClientCredentials, PasswordGrant, RefreshGrant
from .oidc import CodeGrant, IdToken, S256Challenge


class TokenGenerator:
    """Authlib's token generator: a JWT access token plus, for users, a refresh token."""

    def __call__(
        self,
        grant_type: str,
        client: ClientInfo,
        user: tokens.Principal | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        principal = user or tokens.Principal(
            user_id=None, account_id=client.account_id, mode=client.account_mode, role=client.role
        )
        # The last gate before a token leaves (issue 14): whatever a grant let through, no
        # token for an account or mode the client may not reach, and no refresh token
        # bound to an account it does not serve (a code issued before the fix, say).
        if not client.reaches(principal.account_id, principal.mode) or (
            principal.user_id is not None and not client.serves(principal.home_account_id)
        ):
            raise InvalidGrantError("The grant is not for this client's account.")
        lifetime = expires_in or current_app.config["ACCESS_TOKEN_LIFETIME"]
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": tokens.sign_access_token(
                client.client_id, principal, scope or "", lifetime
            ),
            "expires_in": lifetime,
        }
        if scope:
            token["scope"] = scope
        if include_refresh_token and principal.user_id and client.check_grant_type("refresh_token"):
            token["refresh_token"] = tokens.new_refresh_token_value()
        return token


def save_token(token: dict[str, Any], request: Any) -> None:
    """Only refresh tokens are stored: access tokens are self-contained JWTs."""
    if "refresh_token" in token:
        tokens.save_refresh_token(
            token["refresh_token"], request.client.pk, request.user, token.get("scope", "")
        )


def init_app(app: Flask) -> None:
    cache = ClientCache()
    server = AuthorizationServer(app, query_client=cache.get, save_token=save_token)
    server.register_token_generator("default", TokenGenerator())  # after init_app, see notes
    server.register_grant(PasswordGrant)
    server.register_grant(RefreshGrant)
    server.register_grant(ClientCredentials)
    server.register_grant(CodeGrant, [IdToken(require_nonce=False), S256Challenge(required=True)])
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    app.extensions["authserver.oauth"] = server
    app.extensions["authserver.clients"] = cache
    csrf.exempt(views.bp)
    # An app may POST an authorization request from its own site (OIDC Core 3.1.2.1); that
    # path never takes a consent decision. The consent path keeps its CSRF check.
    csrf.exempt(authorize.authorize)
    app.register_blueprint(views.bp)
    app.register_blueprint(authorize.bp)
    # The app's logout request comes from any site; the confirmation POST needs CSRF.
    csrf.exempt(logout.end_session)
    app.register_blueprint(logout.bp)
    add_error_renderer(app, authorize.owns_path, authorize.http_error)  # before views' /oauth/
    add_error_renderer(app, logout.owns_path, authorize.http_error)
    add_error_renderer(app, views.owns_path, views.http_error)
    # The consent and logout confirmations are CSRF-checked forms: a nameless multipart
    # part is a 400 page there (their views check NULs themselves).
    guard_input(app, authorize.owns_path, text=False)
    guard_input(app, logout.owns_path, text=False)
    # Their POSTs come from our own pages only (the app's requests go to PATH and
    # /oauth/logout): another site's, `Origin: null` included, is refused.
    same_origin_posts(app, lambda path: path in (authorize.CONSENT_PATH, logout.CONFIRM_PATH))
