"""OAuth HTTP endpoints: token, revoke, introspect, userinfo, JWKS and the discovery documents.

Requests are checked for RFC 6749 framing before Authlib sees them (form encoding, UTF-8,
no repeated parameters), so bad input gets `invalid_request`, never a 500. Every answer
of the token, revocation and introspection endpoints carries `Cache-Control: no-store`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from authserver.identity import tokens
from authserver.identity.authorization import ACR_VALUES
from authserver.platform import cors
from authserver.platform.config import JWKS_MAX_AGE, SUPPORTED_LOCALES
from authserver.platform.errors import ServiceUnavailable, Unauthenticated
from authserver.platform.keys import ID_TOKEN_ALG, keyring
from authserver.platform.models import ROLES, AuthMethod
from authserver.platform.web import no_store

from .errors import TemporarilyUnavailableError
from .oidc import user_info

bp = Blueprint("oauth", __name__)

FORM = "application/x-www-form-urlencoded"
# Public endpoints: any origin may call them (the tokens, not the origin, authorize).
CORS = cors.response_headers(
    "*", expose=("X-OTP", "Retry-After", "X-Request-Id", "WWW-Authenticate")
)
# Discovery's scopes_supported: server-wide. An account's own API scopes (identity.apis)
# are not listed: the document is the same for every account and would reveal them.
SCOPES = ["openid", "profile", "email", "phone", "offline_access"]
GRANTS = [
    "authorization_code",
    "password",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",  # support login (grants.SupportLogin)
]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
PUBLIC_CACHE = f"public, max-age={JWKS_MAX_AGE}"
CLIENT_AUTH_FAILED = "Client authentication failed (unknown client, wrong secret or method)."


def _server() -> AuthorizationServer:
    return current_app.extensions["authserver.oauth"]


def _error(error: OAuth2Error, extra_headers: dict[str, str] | None = None) -> Response:
    response: Response = _server().handle_error_response(None, error)
    response.headers.update(extra_headers or {})
    return response


def _framing_error() -> OAuth2Error | None:
    """RFC 6749 3.2 / OAuth 2.1: form-encoded UTF-8, each parameter at most once."""
    if request.mimetype != FORM:
        return InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        return InvalidRequestError("The body must be UTF-8.")
    try:
        request.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError:
        return InvalidRequestError("The body is not valid UTF-8.")
    for key in request.form:
        if len(request.form.getlist(key)) > 1 or key in request.args:
            return InvalidRequestError("A parameter was repeated.")
    if any("\x00" in "".join([k, *vs]) for k, vs in request.values.lists()):
        # PostgreSQL text cannot hold NUL: refuse it here instead of failing in a query.
        return InvalidRequestError("A parameter holds a NUL character.")
    if len(request.args.getlist("grant_type")) > 1:
        return InvalidRequestError("A parameter was repeated.")
    return None


def _basic_auth_error() -> OAuth2Error | None:
    """A Basic header that is not base64 of UTF-8 `id:secret` fails client authentication
    (Authlib would raise on some of them, e.g. `Basic ` alone or non-UTF-8 bytes)."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if ":" not in decoded or "\x00" in decoded:
        return InvalidClientError(description="The Basic authorization header is malformed.")
    return None


def _endpoint(handler: Any) -> Response:
    error = _framing_error() or _basic_auth_error()
    try:
        response: Response = _error(error) if error is not None else handler()
    except ServiceUnavailable:
        return _error(TemporarilyUnavailableError())
    # Only error answers are looked at: a success is never parsed again (hot path).
    failed = response.status_code in (400, 401) and response.is_json
    code = (response.get_json(silent=True) or {}).get("error") if failed else None
    if code == "invalid_client":
        # RFC 6749 5.2: a failed client authentication is 401 with a challenge, however
        # the client tried (Authlib answers 400 for an unknown client_id).
        response.status_code = 401
        # Replaced, not kept: Authlib's challenge quotes its internal method list.
        response.headers["WWW-Authenticate"] = 'Basic realm="authserver", error="invalid_client"'
        # Authlib's text lists its internal method names; say what a client needs to know.
        response.set_data(
            json.dumps({"error": "invalid_client", "error_description": CLIENT_AUTH_FAILED})
        )
    elif code == "unsupported_grant_type":
        response.set_data(
            json.dumps(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Supported grant types: {', '.join(GRANTS)}.",
                }
            )
        )
    elif code == "unsupported_token_type":
        # RFC 7009 2.2.1 uses RFC 6749 5.2 errors: 400 (Authlib says 401, with no challenge).
        response.status_code = 400
    return response


def _token_response() -> Response:
    # RFC 6749 5.2: a missing parameter is invalid_request (Authlib says
    # unsupported_grant_type); the grant type belongs in the body (RFC 6749 4.3.2).
    if not request.form.get("grant_type"):
        return _error(InvalidRequestError("Missing 'grant_type' in the request body."))
    response: Response = _server().create_token_response()
    return response


# provide_automatic_options=False: the CORS preflight view below answers OPTIONS.
@bp.route("/oauth/token", methods=["POST"], provide_automatic_options=False)
@bp.route("/v1/token", methods=["POST"], endpoint="token_v1", provide_automatic_options=False)
def token() -> Response:
    """RFC 6749 token endpoint (also at /v1/token, where Freshcom clients look for it)."""
    response = _endpoint(_token_response)
    response.headers.update(CORS)
    return response


@bp.route("/oauth/revoke", methods=["POST"], provide_automatic_options=False)
def revoke() -> Response:
    """RFC 7009 token revocation."""
    response = _endpoint(lambda: _server().create_endpoint_response("revocation"))
    response.headers.update(CORS)
    return response


@bp.route("/oauth/introspect", methods=["POST"])
def introspect() -> Response:
    """RFC 7662 token introspection (confidential clients only)."""
    return _endpoint(lambda: _server().create_endpoint_response("introspection"))


def _bearer_error(status: int, error: str | None, description: str) -> Response:
    """RFC 6750 3.1: no error code when the request carried no token at all."""
    body = {"error": error, "error_description": description} if error else {}
    response = jsonify(body)
    response.status_code = status
    challenge = 'Bearer realm="authserver"'
    if error:
        challenge += f', error="{error}"'
    response.headers["WWW-Authenticate"] = challenge
    response.headers.update(CORS)
    return response


@bp.route("/oauth/userinfo", methods=["GET", "POST"], provide_automatic_options=False)
def userinfo() -> Response:
    """OIDC Core 5.3: the claims the access token's scopes allow, for its user."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    from_body = request.form.get("access_token") if request.method == "POST" else None
    if scheme.lower() == "bearer" and from_body is None:
        token = value.strip()
    elif not scheme and from_body:
        token = from_body  # RFC 6750 2.2, form-encoded body only
    elif not scheme and from_body is None:
        return _bearer_error(401, None, "")
    else:
        return _bearer_error(400, "invalid_request", "Send one bearer token, in one place.")
    try:
        claims = tokens.validate_access_token(token)
    except Unauthenticated as exc:
        return _bearer_error(401, "invalid_token", exc.detail)
    except ServiceUnavailable:
        return _error(TemporarilyUnavailableError())
    if claims.user_id is None:
        return _bearer_error(401, "invalid_token", "The access token is not for a user.")
    client = current_app.extensions["authserver.clients"].get(claims.client_id)
    if client is None or not client.reaches(claims.account_id, claims.mode):
        # A live token a test client got before issue 14 (or a gone client's token).
        return _bearer_error(401, "invalid_token", "The access token is not for its client.")
    if "openid" not in claims.scope.split():
        return _bearer_error(403, "insufficient_scope", "The access token lacks the openid scope.")
    info = user_info(claims.user_id, claims.scope, claims.account_id, claims.mode)
    response = jsonify(dict(info))
    response.headers.update(CORS)
    return response


@bp.route("/oauth/token", methods=["OPTIONS"], endpoint="token_preflight")
@bp.route("/v1/token", methods=["OPTIONS"], endpoint="token_v1_preflight")
@bp.route("/oauth/revoke", methods=["OPTIONS"], endpoint="revoke_preflight")
@bp.route("/oauth/userinfo", methods=["OPTIONS"], endpoint="userinfo_preflight")
def preflight() -> Response:
    """CORS preflight for browser apps using the token and revocation endpoints."""
    response = Response(status=204)
    response.headers.update(CORS)
    response.headers.update(
        cors.preflight_headers(
            "*", methods=("GET", "POST", "OPTIONS"), headers=("Authorization", "Content-Type")
        )
    )
    return response


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> Response:
    response = _error(InvalidRequestError("The request body is too large."))
    response.status_code = 413
    return response


@bp.after_request
def never_cached(response: Response) -> Response:
    if request.endpoint and not request.endpoint.endswith(
        ("jwks", "metadata", "openid_configuration")
    ):
        no_store(response, pragma=True)
    return response


def _published(body: bytes, etag: str) -> Response:
    """A public, cacheable JSON document from prebuilt bytes, with a strong ETag; a
    matching If-None-Match gets 304 and no body."""
    if "HTTP_IF_NONE_MATCH" in request.environ and request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    response.headers.update(CORS)
    response.headers["Cache-Control"] = PUBLIC_CACHE
    return response


@bp.get("/oauth/jwks")
def jwks() -> Response:
    """The public signing keys (current and those still verifying live tokens)."""
    try:
        published = keyring().published()
    except Exception:  # a broken key row or database must not leak details
        current_app.logger.exception("cannot read the signing keys")
        return _error(TemporarilyUnavailableError())
    return _published(published.body, published.etag)


def metadata_document() -> dict[str, Any]:
    issuer = current_app.config["ISSUER"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "jwks_uri": f"{issuer}/oauth/jwks",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "grant_types_supported": GRANTS,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": SCOPES,
        "prompt_values_supported": ["none", "login", "consent"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS[:2],
        "access_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "userinfo_signing_alg_values_supported": ["none"],
        "acr_values_supported": list(ACR_VALUES),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "ui_locales_supported": list(SUPPORTED_LOCALES),
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "at_hash",
            "name",
            "given_name",
            "family_name",
            "preferred_username",
            "locale",
            "updated_at",
            "email",
            "email_verified",
            "phone_number",
            "phone_number_verified",
            "jti",
            "client_id",
            "scope",
            "aid",
            "mode",
            "role",
        ],
        "roles_supported": [*ROLES, "guest"],
        "otp_methods_supported": [AuthMethod.TFA_EMAIL, AuthMethod.TFA_SMS, AuthMethod.TFA_TOTP],
    }


def _metadata_bytes() -> tuple[bytes, str]:
    """The metadata document's bytes and ETag, built once per app and issuer (the only
    setting it depends on that a running app could see change)."""
    issuer = current_app.config["ISSUER"]
    built: tuple[str, bytes, str] | None = current_app.extensions.get("authserver.metadata")
    if built is None or built[0] != issuer:
        body = json.dumps(metadata_document(), sort_keys=True, separators=(",", ":")).encode()
        built = (issuer, body, hashlib.sha256(body).hexdigest()[:32])
        current_app.extensions["authserver.metadata"] = built
    return built[1], built[2]


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    """RFC 8414 authorization server metadata."""
    return _published(*_metadata_bytes())


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """OpenID Connect discovery (the same facts as RFC 8414 metadata)."""
    return metadata()


def owns_path(path: str) -> bool:
    return path.startswith(("/oauth/", "/.well-known/")) or path in ("/oauth", "/v1/token")


def http_error(error: HTTPException) -> Response:
    """404/405/413... on OAuth paths as RFC 6749-style JSON, never an HTML page."""
    status = error.code or 500
    description = {404: "Not found.", 405: "Method not allowed."}.get(status, "Bad request.")
    code = "invalid_request" if status < 500 else "server_error"
    if status == 503:
        # The same answer as a ServiceUnavailable a view caught (TemporarilyUnavailableError).
        code, description = "temporarily_unavailable", TemporarilyUnavailableError().description
    elif status >= 500:
        description = "The server could not handle the request."
    response = jsonify(error=code, error_description=description)
    response.status_code = status
    for name, value in error.get_headers():
        if name.lower() in ("allow", "retry-after"):
            response.headers[name] = value
    return no_store(response, pragma=True)
