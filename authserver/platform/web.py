"""Plain-HTTP endpoints and behaviour shared by every front door: health checks, headers
(`no_store`, Retry-After on every 503) and the dispatch of HTTP errors to the front door
that owns the path (an unhandled outage becomes that front door's 503, not a 500)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.exceptions import ServiceUnavailable as HTTPServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from authserver.platform import attempts
from authserver.platform.database import is_unavailable
from authserver.platform.errors import ServiceUnavailable
from authserver.platform.extensions import db, store

bp = Blueprint("web", __name__)
log = logging.getLogger("authserver.web")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up; says nothing about its dependencies."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to serve: the database and Redis answer. 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready", and is logged
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        checks["database"] = "unavailable"
    # A dead connection was invalidated already: there is nothing left to end.
    with contextlib.suppress(Exception):
        db.session.rollback()
    try:
        store().ping()
        checks["redis"] = "ok"
    except ServiceUnavailable as exc:
        log.warning("readiness: %s", exc.detail)
        checks["redis"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


def _open_ledger() -> None:
    attempts.begin()


def _close_ledger(exc: BaseException | None) -> None:
    # No recorded status (an exception escaped even the error handlers) is a failure too.
    attempts.end(failed=exc is not None or g.get("authserver_failed", True))


R = TypeVar("R", bound=BaseResponse)


def no_store(response: R, *, pragma: bool = False) -> R:
    """Keep `response` out of every cache: it holds tokens, codes or personal data.

    `pragma` adds HTTP/1.0's `Pragma: no-cache` too, as RFC 6749 5.1 asks of token answers.
    """
    response.headers["Cache-Control"] = "no-store"
    if pragma:
        response.headers["Pragma"] = "no-cache"
    return response


ErrorRenderer = Callable[[HTTPException], Response]
PathTest = Callable[[str], bool]


def add_error_renderer(app: Flask, matches: PathTest, render: ErrorRenderer) -> None:
    """Let a front door render HTTP errors (404, 405, 413...) for the paths it owns.

    Unmatched URLs never reach a blueprint, so Flask would not call a blueprint's error
    handlers for them; one app-level handler dispatches on the path instead.
    """
    app.extensions.setdefault("authserver.error_renderers", []).append((matches, render))


def _render_unavailable(cause: BaseException) -> HTTPException | Response:
    """An outage no view handled (the pool's timeout, a query in a hook, a path no
    blueprint owns): the front door's 503, never a 500 that reads like a bug."""
    log.warning("dependency unavailable: %s", type(cause).__name__)
    return _render_http_error(HTTPServiceUnavailable(retry_after=ServiceUnavailable.retry_after))


def _render_http_error(error: HTTPException) -> HTTPException | Response:
    cause = error.original_exception if isinstance(error, InternalServerError) else None
    if cause is not None and (isinstance(cause, ServiceUnavailable) or is_unavailable(cause)):
        return _render_unavailable(cause)
    renderers: list[tuple[PathTest, ErrorRenderer]] = current_app.extensions.get(
        "authserver.error_renderers", []
    )
    for matches, render in renderers:
        if matches(request.path):
            return render(error)
    return error  # Flask's default (the pages layer will render HTML errors)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _render_http_error)
    # Every pooled connection busy for DATABASE_POOL_TIMEOUT: not a DBAPI error, so the
    # engine's fault hook never sees it (database.py); no view catches it either.
    app.register_error_handler(sqlalchemy.exc.TimeoutError, _render_unavailable)
    if app.config["PROXY_FIX"]:
        n = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    app.register_blueprint(bp)

    # Throttle counts made during a request that fails on our side are given back
    # (attempts.py). Opened first and closed last, around every other hook.
    app.before_request_funcs.setdefault(None, []).insert(0, _open_ledger)
    app.teardown_request(_close_ledger)

    @app.after_request
    def retry_after(response: Response) -> Response:
        # Every front door's 503 (a dependency down) tells clients when to retry, so a
        # retry storm is paced instead of hammering a database that is coming back.
        if response.status_code == 503:
            response.headers.setdefault("Retry-After", str(ServiceUnavailable.retry_after))
        return response

    @app.after_request
    def note_failure(response: Response) -> Response:
        g.authserver_failed = response.status_code >= 500
        return response

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " frame-ancestors 'none'; base-uri 'none'",
        )
        return response
