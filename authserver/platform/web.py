"""Plain-HTTP endpoints and behaviour shared by every front door: health checks, headers
(`no_store`, Retry-After on every 503), the dispatch of HTTP errors to the front door that
owns the path (an unhandled outage becomes that front door's 503, not a 500), and the
guards a front door opts into for its paths: input no front door can store or parse
(`guard_input`) and cross-site POSTs to our own forms (`same_origin_posts`). The session
is read only when its cookie comes."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy.exc
from flask import Blueprint, Flask, Request, Response, current_app, g, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError
from werkzeug.exceptions import ServiceUnavailable as HTTPServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as BaseResponse

from authserver.platform import attempts, metrics
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


# PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8: either
# would fail deep inside a query or a background job instead of as a clear 400.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MULTIPART = "multipart/form-data"


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


def _pool_exhausted(cause: sqlalchemy.exc.TimeoutError) -> HTTPException | Response:
    metrics.counted_database_error()
    return _render_unavailable(cause)


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


class MalformedInput(BadRequest):
    """A form part without a name, or a NUL (or lone surrogate) in a parameter."""

    description = "The request holds a form part without a name or a character we cannot store."


def guard_input(app: Flask, matches: PathTest, *, text: bool = True) -> None:
    """Refuse, on the paths `matches` takes, multipart parts without a name (Flask-WTF's
    CSRF check and form code read form keys as strings) and, with `text`, NUL and lone
    surrogates in the query, form and path parameters (for a front door whose views do
    not check each value themselves)."""
    app.extensions.setdefault("authserver.input_guards", []).append((matches, text))


class CrossSitePost(CSRFError):
    """A form POST another site sent: a foreign or `null` Origin, or a browser's
    Sec-Fetch-Site saying cross-site or same-site (a 400, as a refused CSRF token)."""

    description = "The form was not sent from this site."


def same_origin_posts(app: Flask, matches: PathTest) -> None:
    """Refuse, on the paths `matches` takes, POSTs that another site sent (on top of the
    CSRF token): our own pages' forms only, never an app's cross-site request."""
    app.extensions.setdefault("authserver.same_origin_paths", []).append(matches)


def _cross_site_post() -> bool:
    """Whether this POST came from another site, as far as the browser tells.

    `Origin: null` is what a sandboxed frame, a data: URL or a page with
    `Referrer-Policy: no-referrer` sends, so it is refused; our HTML pages send
    `same-origin` (see security_headers), so browsers put our origin on our own forms. A
    POST with no Origin at all (no browser of the last years) is left to the CSRF token.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    ours = {request.host_url.rstrip("/"), _origin_of(current_app.config["ISSUER"])}
    return origin.rstrip("/") not in ours


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _unstorable(*texts: object) -> bool:
    return any(isinstance(t, str) and UNSTORABLE.search(t) is not None for t in texts)


def _refuse_bad_requests() -> None:
    """Before every other hook (the CSRF check reads the form first). Raises
    CrossSitePost or MalformedInput, which the path's front door renders as its own 400."""
    if request.method == "POST":
        same_origin: list[PathTest] = current_app.extensions.get("authserver.same_origin_paths", [])
        if any(matches(request.path) for matches in same_origin) and _cross_site_post():
            raise CrossSitePost()
    guards: list[tuple[PathTest, bool]] = current_app.extensions.get("authserver.input_guards", [])
    checks = [text for matches, text in guards if matches(request.path)]
    if not checks:
        return
    if request.mimetype == MULTIPART and (None in request.form or None in request.files):
        raise MalformedInput()
    if not any(checks):
        return
    sources: list[MultiDict[str, Any]] = [request.args, request.form, request.files]
    for source in sources:
        for key, values in source.lists():
            if _unstorable(key, *values, *(getattr(v, "filename", None) for v in values)):
                raise MalformedInput()
    if _unstorable(*(request.view_args or {}).values()):
        raise MalformedInput()


class LazySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, read only when the request carries its cookie.

    Flask opens the session on every request; the stock interface builds its signer each
    time even without a cookie. The token endpoint, /v1, the documents and the health
    checks never get one, so they now skip that work; a page that writes to a new
    session still gets its cookie as before."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


SYNC_CACHE_MAX = 512  # views, hooks and error handlers: registered once, a few hundred


def _remember_sync_functions(app: Flask) -> None:
    """Flask asks, for every hook, view and handler on every request, whether it is a
    coroutine function (`inspect.iscoroutinefunction`, about a microsecond each, some 15
    times a request). Ours never change: ask once per function."""
    plain = app.ensure_sync
    known: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(func: Callable[..., Any]) -> Callable[..., Any]:
        found = known.get(func)
        if found is None:
            found = plain(func)
            if len(known) < SYNC_CACHE_MAX:  # a per-request function is not kept forever
                known[func] = found
        return found

    app.ensure_sync = ensure_sync  # type: ignore[method-assign]


def init_app(app: Flask) -> None:
    _remember_sync_functions(app)
    app.session_interface = LazySessionInterface()
    app.register_error_handler(HTTPException, _render_http_error)
    # Every pooled connection busy for DATABASE_POOL_TIMEOUT: not a DBAPI error, so the
    # engine's fault hook never sees it (database.py); no view catches it either.
    app.register_error_handler(sqlalchemy.exc.TimeoutError, _pool_exhausted)
    # First of all before_request hooks, whichever extension registered earlier.
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_bad_requests)
    if app.config["PROXY_FIX"]:
        n = app.config["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    else:
        app.before_request(_warn_of_untrusted_proxy)
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
        # HTML pages: `same-origin`, so our own form POSTs carry a real Origin (under
        # no-referrer browsers send `Origin: null`, which the pages must refuse as it is
        # what a sandboxed or no-referrer attacker page sends) and no URL leaves the site.
        policy = "same-origin" if response.mimetype == "text/html" else "no-referrer"
        response.headers.setdefault("Referrer-Policy", policy)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " frame-ancestors 'none'; base-uri 'none'",
        )
        return response
