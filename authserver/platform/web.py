"""Plain-HTTP endpoints and behaviour shared by every front door: health checks, headers
(`no_store`) and the dispatch of HTTP errors to the front door that owns the path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import text
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

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
    finally:
        db.session.rollback()
    try:
        store().ping()
        checks["redis"] = "ok"
    except ServiceUnavailable as exc:
        log.warning("readiness: %s", exc.detail)
        checks["redis"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


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


def _render_http_error(error: HTTPException) -> HTTPException | Response:
    renderers: list[tuple[PathTest, ErrorRenderer]] = current_app.extensions.get(
        "authserver.error_renderers", []
    )
    for matches, render in renderers:
        if matches(request.path):
            return render(error)
    return error  # Flask's default (the pages layer will render HTML errors)


PROXY_WARNING = (
    "requests carry X-Forwarded-For but PROXY_FIX is 0: every client looks like the proxy's "
    "address, so the per-IP login throttles lump all users behind it together. Set "
    "PROXY_FIX to the number of proxies in front of the server (README, Configuration)."
)


def _warn_of_untrusted_proxy() -> None:
    """Say once per process (not per request: a log flood helps nobody) that a proxy seems
    to be in front while none is trusted."""
    if "X-Forwarded-For" not in request.headers:
        return
    warned = current_app.extensions.setdefault("authserver.proxy_warning", [])
    if not warned:  # a check-then-append race only costs a second line, once
        warned.append(True)
        log.warning(PROXY_WARNING)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _render_http_error)
    if app.config["PROXY_FIX"]:
        n = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    else:
        app.before_request(_warn_of_untrusted_proxy)
    app.register_blueprint(bp)

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
