"""CORS for /v1: a page on another origin reads /v1 when the account of the request's
access token lists that origin in `allowedOrigins`.

Preflights (OPTIONS with Access-Control-Request-Method) carry no token, so no account:
one is answered for an origin that some active account lists. That is no weaker than the
real gate: the preflight only lets the browser send the request, and its answer stays
unreadable unless the token's own account lists the origin; /v1 reads no cookies or
other ambient credentials, so a request the page may send but not read can do nothing
the page could not do with the token it already holds. An origin nobody lists gets no
CORS headers at all. Requests without an Origin header (servers, curl) cost nothing more.
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from sqlalchemy.exc import SQLAlchemyError

from authserver.identity import origins
from authserver.platform.cors import preflight_headers, response_headers
from authserver.platform.errors import DomainError

from .blueprint import bp

METHODS = ("GET", "POST", "PATCH", "DELETE")
HEADERS = ("Authorization", "Content-Type", "Accept")
EXPOSED = ("Location", "Retry-After", "WWW-Authenticate", "X-Request-Id")


def _ours() -> bool:
    """A request routed to the /v1 blueprint (not /v1/token, which OAuth answers)."""
    return request.blueprint == bp.name


def preflight() -> Response | None:
    """Answer a CORS preflight of a /v1 route before anything else runs."""
    if request.method != "OPTIONS" or not _ours():
        return None
    origin = request.headers.get("Origin")
    asked = request.headers.get("Access-Control-Request-Method")
    if origin is None or asked is None:
        return None  # a plain OPTIONS: Flask's answer (Allow)
    response = Response(status=204)
    response.vary.update(("Origin", "Access-Control-Request-Method"))
    if asked in METHODS and origins.listed_anywhere(origin):
        response.headers.update(preflight_headers(origin, methods=METHODS, headers=HEADERS))
    return response


def allow_reader(response: Response) -> Response:
    """Let the page read this answer if the token's account lists its origin."""
    if not _ours():
        return response
    response.vary.add("Origin")  # the CORS headers depend on it: caches must key on it
    origin = request.headers.get("Origin")
    claims = g.get("access_token")
    if origin is None or claims is None or claims.account_id is None:
        return response
    try:
        allowed = request.method != "OPTIONS" and origins.allowed_for(claims.account_id, origin)
    except (SQLAlchemyError, DomainError):  # the database failed this request already
        allowed = False
    if allowed:
        response.headers.update(response_headers(origin, expose=EXPOSED))
    return response


def init_app(app: Flask) -> None:
    # App-level, not blueprint hooks: the preflight must answer before negotiation, and
    # error answers rendered outside the blueprint pass through after_request too.
    app.before_request(preflight)
    app.after_request(allow_reader)
