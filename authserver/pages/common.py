"""What every hosted page shares: which paths are pages, the account and language a page
is shown for, the safe `next` target, the signed-in check, form pages, rendering, HTML
errors (and which form field a domain error is about) and the extra headers.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, overload
from urllib.parse import parse_qs, urlsplit

from flask import (
    Response,
    current_app,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from authserver.identity import browser_login
from authserver.platform import logs
from authserver.platform.errors import DomainError, ServiceUnavailable, Throttled
from authserver.platform.extensions import db
from authserver.platform.i18n import best_request_locale, gettext
from authserver.platform.models import Account, AccountStatus, User
from authserver.platform.web import MalformedInput, no_store

# Paths that belong to other front doors (they render their own errors).
NOT_PAGES = ("/v1", "/oauth", "/.well-known")
NOT_PAGE_PATHS = ("/healthz", "/readyz")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NEXT_MAX = 4096  # an /oauth/authorize URL with a long state still fits
PENDING = "pending_login"  # the session key of a login waiting for its second factor
HSTS = "max-age=31536000"  # one year (RFC 9700 4.16 / ASVS 3.4.1)
# Domain fields whose form field has another name; the others share the domain's name.
FORM_FIELDS = {"otp": "code"}


def now() -> int:
    return int(time.time())


def owns_path(path: str) -> bool:
    """Every path that is not the API's, the OAuth endpoints' or a health check."""
    if path in NOT_PAGE_PATHS:
        return False
    return not any(path == p or path.startswith(p + "/") for p in NOT_PAGES)


def safe_next(value: object, default: str = "/account") -> str:
    """`value` if it is a path on this server, else `default` (no open redirect).

    Only an absolute path is taken: no scheme, no host, not `//host` or `/\\host` (which
    browsers read as another host), no control characters or backslashes at all.
    """
    if not isinstance(value, str) or not value or len(value) > NEXT_MAX:
        return default
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def next_query(name: str) -> str | None:
    """A parameter of the `next` target's query (the OIDC request the login serves)."""
    target = safe_next(request.values.get("next"), default="")
    if not target:
        return None
    values = parse_qs(urlsplit(target).query).get(name)
    return values[0] if values else None


def flow_client() -> Any:
    """The OAuth client whose authorization request sent the person here, if any."""
    client_id = next_query("client_id")
    if not client_id:
        return None
    cache = current_app.extensions.get("authserver.clients")
    return cache.get(client_id) if cache is not None else None


def _account(account_id: object) -> Account | None:
    if not isinstance(account_id, str) or not UUID_RE.match(account_id):
        return None
    account = db.session.get(Account, account_id)
    return account if account is not None and account.status == AccountStatus.ACTIVE else None


def requested_account_id() -> str | None:
    """The account a login is for: `aid`, else the flow's client's account; None: global."""
    aid = request.values.get("aid")
    if aid:
        return aid[:64]
    client = flow_client()
    return client.account_id if client is not None else None


def requested_account() -> Account | None:
    """The active account a login is for (`aid`, else the flow's client's); None: global."""
    return _account(requested_account_id())


def page_account() -> Account | None:
    """The account the page is shown for (its name at the top, its default language)."""
    if "page_account" not in g:
        candidates: list[object] = [requested_account_id()]
        pending = session.get(PENDING)
        if isinstance(pending, dict):
            candidates.append(pending.get("aid"))
        login = session.get("login")
        if isinstance(login, dict):
            candidates.append(login.get("aid"))
        g.page_account = next(
            (a for a in (_account(c) for c in candidates if c) if a is not None), None
        )
    account: Account | None = g.page_account
    return account


def choose_locale() -> None:
    """Before a page: `ui_locales` (here or in the OIDC request), Accept-Language, account."""
    ui_locales = request.args.get("ui_locales") or next_query("ui_locales")
    pending = session.get(PENDING)
    if not ui_locales and isinstance(pending, dict):
        ui_locales = pending.get("ui")
    account = page_account()
    g.locale = best_request_locale(
        ui_locales if isinstance(ui_locales, str) else None,
        account.default_locale if account else None,
    )


def render(template: str, status: int = 200, **context: Any) -> Response:
    """A page in the chosen language, with the account's name at the top."""
    account = page_account()
    html = render_template(
        template,
        account_name=account.name if account else None,
        page_locale=g.get("locale", "en"),
        notices=get_flashed_messages(),  # what the page before the redirect wants said
        **context,
    )
    return Response(html, status, mimetype="text/html")


def see_other(target: str) -> BaseResponse:
    # 303: the browser follows with GET and never re-sends the credentials (RFC 9700 4.12).
    return redirect(target, 303)


@dataclass
class Page:
    """A form page: its template and what it shows besides the form."""

    template: str
    form: Any
    context: dict[str, Any] = field(default_factory=dict)

    def show(self, status: int = 200) -> Response:
        return render(self.template, status, form=self.form, **self.context)

    def invalid(self) -> Response:
        """The form as first shown (GET), or with its field errors (422)."""
        return self.show(422 if request.method == "POST" else 200)

    def field_error(self, field: Any, message: str, status: int) -> Response:
        field.errors = [*field.errors, message]
        return self.show(status)

    def throttled(self, field: Any, error: Throttled) -> Response:
        message = gettext("Too many attempts. Please wait a few minutes and try again.")
        response = self.field_error(field, message, 429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response


@dataclass(frozen=True)
class SignedIn:
    """Who a signed-in page is for: the browser's login and its user."""

    login: browser_login.BrowserLogin
    user: User


P = ParamSpec("P")
SignedInView = Callable[Concatenate[SignedIn, P], BaseResponse]
View = Callable[P, BaseResponse]


@overload
def signed_in(view: SignedInView[P], /) -> View[P]: ...
@overload
def signed_in(*, back: str | None = None) -> Callable[[SignedInView[P]], View[P]]: ...
def signed_in(
    view: SignedInView[P] | None = None, /, *, back: str | None = None
) -> View[P] | Callable[[SignedInView[P]], View[P]]:
    """A page for the signed-in only: the view gets the SignedIn first; anyone else gets a
    303 to the login page that comes back afterwards to the `back` endpoint if given, else
    to this page after a GET and to the security overview after a POST (a form's POST
    cannot be replayed through a redirect).
    """

    def decorate(view: SignedInView[P]) -> View[P]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> BaseResponse:
            # Read before current_login clears a stale login: its account's sign-in page is
            # the one that can sign this person in again (a bare /login takes global users).
            aid = browser_login.account_of(session)
            login = browser_login.current_login(session, now())
            user = db.session.get(User, login.user_id) if login is not None else None
            if login is None or user is None:
                return see_other(login_url(aid, next=_come_back_to(back)))
            logs.identify(user_id=user.id)
            return view(SignedIn(login, user), *args, **kwargs)

        return wrapper

    return decorate if view is None else decorate(view)


def _come_back_to(back: str | None) -> str:
    if back is not None:
        return url_for(back)
    target = request.full_path if request.method == "GET" else url_for(".security")
    return target.rstrip("?")


def login_url(account_id: str | None, **params: Any) -> str:
    """The sign-in page of an account (`aid`), or the bare one of global users."""
    if account_id:
        params = {"aid": account_id, **params}
    return url_for("pages.login", **params)


def error_page(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # The account of the request or the session: its sign-in page, not the global one.
    account = page_account()
    response = render(
        "pages/error.html",
        status,
        message=message,
        status_code=status,
        login_url=login_url(account.id if account else None),
    )
    response.headers.update(headers or {})
    return response


def _without_database() -> None:
    # A dependency is down: the error page must not ask the database for the account's
    # name or language again (on a frozen one that costs another timeout, then fails).
    g.setdefault("locale", "en")
    g.setdefault("page_account", None)


def render_http_error(error: HTTPException) -> Response:
    """404, 405, 413, a refused CSRF token... on a page path: an HTML page, never a trace."""
    status = error.code or 500
    if status == 503:
        _without_database()
    elif "locale" not in g:
        try:
            choose_locale()
        except Exception:  # an error page must render even when the database is down
            g.locale = "en"
            g.page_account = None
    if isinstance(error, CSRFError):
        message = gettext(
            "This form expired or did not come from this site. Go back, reload the page"
            " and try again."
        )
    elif isinstance(error, MalformedInput):
        message = gettext(
            "What you sent holds characters that cannot be used (such as NUL) or a form"
            " part without a name. Go back and try again."
        )
    elif status == 404:
        message = gettext("This page does not exist.")
    elif status == 405:
        message = gettext("This page cannot be used that way.")
    elif status == 413:
        message = gettext("What you sent is too large.")
    elif status == 503:
        message = gettext("The service is unavailable for a moment. Please try again shortly.")
    elif status >= 500:
        status = 500
        message = gettext("Something went wrong on our side. Please try again later.")
    else:
        message = gettext("The request could not be understood.")
    retry = {k: v for k, v in error.get_headers() if k.lower() == "retry-after"}
    # No blueprint hook runs for a path no route matched: the page headers are set here.
    return page_headers(error_page(status, message, retry))


def render_domain_error(error: DomainError) -> Response:
    """A domain error no view handled: throttles and outages get their status and words."""
    if isinstance(error, Throttled):
        return error_page(
            429,
            gettext("Too many attempts. Please wait a few minutes and try again."),
            {"Retry-After": str(error.retry_after)},
        )
    if isinstance(error, ServiceUnavailable):
        _without_database()
        return error_page(
            503, gettext("The service is unavailable for a moment. Please try again shortly.")
        )
    return error_page(400, gettext("The request could not be understood."))


def form_field(form: Any, error: DomainError, default: Any) -> Any:
    """The field of `form` that shows `error` (the one its domain field names), else
    `default`."""
    name = FORM_FIELDS.get(error.field or "", error.field)
    return form[name] if name and name in form else default


def page_headers(response: Response) -> Response:
    """No caching of pages that hold codes and tokens; HSTS when the issuer is HTTPS."""
    if owns_path(request.path):
        no_store(response)
        response.headers.setdefault("Content-Language", g.get("locale", "en"))
        if current_app.config["ISSUER"].startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def current_page_locale() -> str:
    """The language chosen for this page (emails the page triggers use it too)."""
    return str(g.get("locale", "en"))
